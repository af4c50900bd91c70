//! Go-style duration strings (`2s`, `250ms`, `1m30s`) as Fabric writes them.

use std::time::Duration;

/// Parses a Go-style duration. Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`;
/// decimal fractions allowed (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{t}' is missing a unit (e.g. 2s, 250ms)"))?;
        let (num, after) = rest.split_at(num_end);
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(format!("'{t}' is not a duration (e.g. 2s, 250ms)"));
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("'{t}' has unknown unit '{unit}'")),
        };
        let too_long = || format!("'{t}' is too long a duration");
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        let mut part = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
        // Fractions: digits beyond nanosecond precision are dropped.
        let mut scale = unit_nanos;
        for digit in frac.chars().filter_map(|c| c.to_digit(10)) {
            scale /= 10;
            part += u128::from(digit) * scale;
        }
        total_nanos = total_nanos.checked_add(part).ok_or_else(too_long)?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| format!("'{t}' is too long a duration"))?;
    // The remainder is below 10^9, so it fits.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration as Go's `time.Duration.String` does (`2s`, `250ms`,
/// `1m30s`, `1h0m0s`), the form Fabric stores in configs.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = decimal(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{secs}s"));
    out
}

/// `value / div` with the fraction written out and trailing zeros dropped.
fn decimal(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2 days").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5ms").unwrap(), Duration::from_micros(500));
        // Overflow is an error, not a panic.
        assert!(parse_duration("99999999999999999999999999999999999999h").is_err());
        assert!(parse_duration("9999999999999999999h").is_err());
    }

    #[test]
    fn go_formatting() {
        for (d, s) in [
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_go_duration(d), s);
            assert_eq!(parse_duration(s).unwrap(), d);
        }
    }
}
