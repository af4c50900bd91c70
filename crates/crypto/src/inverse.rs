//! Inverse modulo the P-256 group order `n`, in variable time, by the
//! Bernstein–Yang "divsteps" iteration (<https://eprint.iacr.org/2019/266>).
//!
//! Verification needs `1/s`, and `s` is public, so the time may depend on
//! it. `p256`'s `invert_vartime` is a bit-at-a-time binary GCD on full
//! 256-bit numbers, about a quarter of a table-based verification; this
//! one runs the divsteps 62 at a time on the low 64 bits of `f` and `g`
//! only, collects their effect as a 2×2 integer matrix, and applies the
//! matrix to the full numbers once per 62 steps.
//!
//! # The iteration
//!
//! Start with `f = n` (odd), `g = x`, `eta = -1`. One divstep is:
//!
//! - `g` even: `g ← g/2`, `eta ← eta - 1`;
//! - `g` odd, `eta ≥ 0`: `g ← (g + f)/2`, `eta ← eta - 1`;
//! - `g` odd, `eta < 0`: `(f, g) ← (g, (g - f)/2)`, `eta ← -eta - 1`.
//!
//! `f` stays odd, and after finitely many steps `g = 0` and `f = ±gcd(n, x)
//! = ±1`. Alongside, `d` and `e` are kept with `d·x ≡ f` and `e·x ≡ g`
//! (mod n), updated by the same linear maps (a halving mod n is exact
//! division after adding the right multiple of `n`); at the end `1/x` is
//! `±d`.
//!
//! Numbers are held as five signed 62-bit limbs (`Σ limb_i·2^(62·i)`, limbs
//! 0–3 in `0..2^62`, the top one signed), so a matrix entry (at most `2^62`
//! in size) times a limb fits an `i128` with room for the sums.

/// Bits per limb.
const LIMB_BITS: u32 = 62;

/// The low 62 bits.
const LIMB_MASK: i128 = (1 << LIMB_BITS) - 1;

/// Divsteps per batch: the most whose matrix entries fit an `i64`.
const STEPS: u32 = 62;

/// Batches after which a computation that has not converged is abandoned.
/// 256-bit inputs need at most 741 divsteps (Bernstein–Yang, theorem 11.2),
/// that is 12 batches; this bound only guards against a logic error.
const MAX_BATCHES: usize = 24;

/// A number in signed 62-bit limbs.
type Limbs = [i64; 5];

/// The P-256 group order, big-endian.
const ORDER_BE: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The effect of one batch of divsteps: `2^62·(f', g') = (u·f + v·g, q·f + r·g)`.
#[derive(Debug, Clone, Copy)]
struct Matrix {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// Runs [`STEPS`] divsteps on the low 64 bits of `f` and `g` (which decide
/// them all) and returns the new `eta` and the batch's matrix.
fn divsteps(mut eta: i64, mut f: u64, mut g: u64) -> (i64, Matrix) {
    let (mut u, mut v, mut q, mut r) = (1i64, 0i64, 0i64, 1i64);
    let mut left = STEPS;
    loop {
        // All the even steps at once: the set bit at `left` caps the count.
        let zeros = (g | (1u64 << left)).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= i64::from(zeros);
        left -= zeros;
        if left == 0 {
            break;
        }
        // `g` is odd now (and `f` always is).
        if eta < 0 {
            let old_f = f;
            f = g;
            g = g.wrapping_sub(old_f) >> 1;
            let (old_u, old_v) = (u, v);
            u = q << 1;
            v = r << 1;
            q = q.wrapping_sub(old_u);
            r = r.wrapping_sub(old_v);
            eta = -eta - 1;
        } else {
            g = g.wrapping_add(f) >> 1;
            q = q.wrapping_add(u);
            r = r.wrapping_add(v);
            u <<= 1;
            v <<= 1;
            eta -= 1;
        }
        left -= 1;
    }
    (eta, Matrix { u, v, q, r })
}

/// `(a·x + b·y + c·n) / 2^62` for the caller's choice of `c` (zero for the
/// plain integers `f`, `g`) that makes the division exact.
fn combine(a: i64, x: &Limbs, b: i64, y: &Limbs, c: i64, n: &Limbs) -> Limbs {
    let term = |i: usize| {
        i128::from(a) * i128::from(x[i])
            + i128::from(b) * i128::from(y[i])
            + i128::from(c) * i128::from(n[i])
    };
    let mut acc = term(0);
    debug_assert_eq!(acc & LIMB_MASK, 0, "the division by 2^62 must be exact");
    acc >>= LIMB_BITS;
    let mut out = [0i64; 5];
    for i in 1..5 {
        acc += term(i);
        out[i - 1] = (acc & LIMB_MASK) as i64;
        acc >>= LIMB_BITS;
    }
    out[4] = acc as i64;
    out
}

/// `f`, `g` after a batch: exact integer division.
fn update_fg(m: &Matrix, f: &Limbs, g: &Limbs) -> (Limbs, Limbs) {
    const ZERO: Limbs = [0; 5];
    (
        combine(m.u, f, m.v, g, 0, &ZERO),
        combine(m.q, f, m.r, g, 0, &ZERO),
    )
}

/// `d`, `e` (both in `0..n`) after a batch, again in `0..n`: the multiple of
/// `n` added makes the low 62 bits zero; the sum is below `2^62·2n` in size,
/// so one correction brings the quotient back into range.
fn update_de(m: &Matrix, d: &Limbs, e: &Limbs, n: &Limbs, n_inv: u64) -> (Limbs, Limbs) {
    let fix = |a: i64, b: i64| -> i64 {
        let low = (a as u64)
            .wrapping_mul(d[0] as u64)
            .wrapping_add((b as u64).wrapping_mul(e[0] as u64));
        (low.wrapping_mul(n_inv).wrapping_neg() & (LIMB_MASK as u64)) as i64
    };
    let cd = fix(m.u, m.v);
    let ce = fix(m.q, m.r);
    let mut d2 = combine(m.u, d, m.v, e, cd, n);
    let mut e2 = combine(m.q, d, m.r, e, ce, n);
    reduce_once(&mut d2, n);
    reduce_once(&mut e2, n);
    (d2, e2)
}

/// Brings `a` from `-n..2n` into `0..n`.
fn reduce_once(a: &mut Limbs, n: &Limbs) {
    if a[4] < 0 {
        add_signed(a, n, 1);
    } else if !less_than(a, n) {
        add_signed(a, n, -1);
    }
}

/// `a += sign·b`, limbs renormalised.
fn add_signed(a: &mut Limbs, b: &Limbs, sign: i64) {
    let mut carry: i128 = 0;
    for i in 0..4 {
        carry += i128::from(a[i]) + i128::from(sign) * i128::from(b[i]);
        a[i] = (carry & LIMB_MASK) as i64;
        carry >>= LIMB_BITS;
    }
    a[4] = (carry + i128::from(a[4]) + i128::from(sign) * i128::from(b[4])) as i64;
}

/// `a < b` for normalised limbs with `a` non-negative.
fn less_than(a: &Limbs, b: &Limbs) -> bool {
    for i in (0..5).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

/// Big-endian 256-bit number to limbs.
fn from_be(bytes: &[u8; 32]) -> Limbs {
    let mut words = [0u64; 4];
    for (i, word) in words.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[start..start + 8]);
        *word = u64::from_be_bytes(w);
    }
    let mask = (1u64 << LIMB_BITS) - 1;
    [
        (words[0] & mask) as i64,
        ((words[0] >> 62 | words[1] << 2) & mask) as i64,
        ((words[1] >> 60 | words[2] << 4) & mask) as i64,
        ((words[2] >> 58 | words[3] << 6) & mask) as i64,
        (words[3] >> 56) as i64,
    ]
}

/// Limbs of a number in `0..2^256` back to big-endian bytes.
fn to_be(a: &Limbs) -> [u8; 32] {
    let l = a.map(|x| x as u64);
    let words = [
        l[0] | l[1] << 62,
        l[1] >> 2 | l[2] << 60,
        l[2] >> 4 | l[3] << 58,
        l[3] >> 6 | l[4] << 56,
    ];
    let mut out = [0u8; 32];
    for (i, word) in words.iter().enumerate() {
        let start = 32 - 8 * (i + 1);
        out[start..start + 8].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// `n^-1 mod 2^64` by Newton's iteration (each round doubles the correct
/// low bits, starting from 3 because `n·n ≡ 1 mod 8` for odd `n`).
fn inverse_mod_2_64(n0: u64) -> u64 {
    let mut inv = n0;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv
}

/// `1/x mod n` for `x` (big-endian) in `1..n`; `None` for zero or a value
/// not below `n`.
pub(crate) fn invert_mod_order(x: &[u8; 32]) -> Option<[u8; 32]> {
    if x.iter().all(|&b| b == 0) || x >= &ORDER_BE {
        return None;
    }
    let n = from_be(&ORDER_BE);
    let n_inv = inverse_mod_2_64(n[0] as u64);
    let (mut f, mut g) = (n, from_be(x));
    let (mut d, mut e): (Limbs, Limbs) = ([0; 5], [1, 0, 0, 0, 0]);
    let mut eta = -1i64;
    for _ in 0..MAX_BATCHES {
        let low = |a: &Limbs| (a[0] as u64) | (a[1] as u64) << LIMB_BITS;
        let (next_eta, m) = divsteps(eta, low(&f), low(&g));
        eta = next_eta;
        (f, g) = update_fg(&m, &f, &g);
        (d, e) = update_de(&m, &d, &e, &n, n_inv);
        if g == [0; 5] {
            // f = ±1 (x and the prime n are coprime), so 1/x = ±d.
            if f[4] < 0 {
                let mut neg = n;
                add_signed(&mut neg, &d, -1);
                return Some(to_be(&neg));
            }
            return Some(to_be(&d));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ops::Invert;
    use p256::elliptic_curve::PrimeField;
    use p256::{FieldBytes, Scalar};

    fn p256_inverse(x: &[u8; 32]) -> [u8; 32] {
        let s = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(*x))).unwrap();
        let inv = Option::<Scalar>::from(s.invert_vartime()).unwrap();
        inv.to_repr().into()
    }

    fn order_minus(k: u8) -> [u8; 32] {
        let mut x = ORDER_BE;
        x[31] -= k;
        x
    }

    #[test]
    fn limbs_round_trip() {
        for x in [ORDER_BE, [0xff; 32], [0x5a; 32], order_minus(1)] {
            assert_eq!(to_be(&from_be(&x)), x);
        }
    }

    #[test]
    fn agrees_with_p256_on_edge_values() {
        let mut cases = vec![order_minus(1), order_minus(2), [0x7f; 32]];
        for bit in 0..256 {
            let mut x = [0u8; 32];
            x[31 - bit / 8] = 1 << (bit % 8);
            if x < ORDER_BE {
                cases.push(x);
            }
        }
        for x in cases {
            assert_eq!(invert_mod_order(&x), Some(p256_inverse(&x)), "x = {x:02x?}");
        }
    }

    #[test]
    fn agrees_with_p256_on_random_values() {
        for _ in 0..5000 {
            let x: [u8; 32] = crate::random::random_bytes(32).try_into().unwrap();
            if x == [0; 32] || x >= ORDER_BE {
                continue;
            }
            assert_eq!(invert_mod_order(&x), Some(p256_inverse(&x)), "x = {x:02x?}");
        }
    }

    #[test]
    fn refuses_zero_and_values_not_below_the_order() {
        assert_eq!(invert_mod_order(&[0; 32]), None);
        assert_eq!(invert_mod_order(&ORDER_BE), None);
        assert_eq!(invert_mod_order(&[0xff; 32]), None);
    }
}
