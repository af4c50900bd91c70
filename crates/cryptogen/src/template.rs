//! The `{{.Field}}` substitutions allowed in hostnames, common names and SANs.
//!
//! Fabric evaluates these strings as Go templates. Real configs only ever use
//! plain field references, so that is all we support: `{{.Name}}` (spaces
//! inside the braces allowed) is replaced by the value bound to `Name`, and
//! anything else inside braces is an error rather than being passed through.

/// Replaces every `{{.Name}}` in `input` with the value bound to `Name` in
/// `vars`.
///
/// On failure returns a message suitable for a config error's `reason`.
pub(crate) fn render(input: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            return Err(format!("unterminated `{{{{` in {input:?}"));
        };
        let action = after_open[..close].trim();
        let Some(name) = action.strip_prefix('.') else {
            return Err(format!(
                "unsupported template action `{{{{{action}}}}}` in {input:?}; only field references such as `{{{{.Hostname}}}}` are supported"
            ));
        };
        let Some((_, value)) = vars.iter().find(|(key, _)| *key == name) else {
            let known: Vec<String> = vars.iter().map(|(key, _)| format!(".{key}")).collect();
            return Err(format!(
                "unknown template field `{{{{.{name}}}}}` in {input:?}; available here: {}",
                known.join(", ")
            ));
        };
        out.push_str(value);
        rest = &after_open[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_fields() {
        let vars = [("Prefix", "peer"), ("Index", "3")];
        assert_eq!(
            render("{{.Prefix}}{{.Index}}", &vars).as_deref(),
            Ok("peer3")
        );
        assert_eq!(render("x-{{ .Index }}-y", &vars).as_deref(), Ok("x-3-y"));
        assert_eq!(render("plain", &vars).as_deref(), Ok("plain"));
    }

    #[test]
    fn rejects_unknown_fields_and_actions() {
        let vars = [("Hostname", "peer0")];
        let err = render("{{.Domain}}", &vars).unwrap_err();
        assert!(err.contains("{{.Domain}}"), "{err}");
        assert!(err.contains(".Hostname"), "{err}");
        let err = render("{{printf \"x\"}}", &vars).unwrap_err();
        assert!(err.contains("unsupported"), "{err}");
        let err = render("a{{.Hostname", &vars).unwrap_err();
        assert!(err.contains("unterminated"), "{err}");
    }
}
