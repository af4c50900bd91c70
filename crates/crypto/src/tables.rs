//! ECDSA P-256 verification with precomputed multiples of the public key.
//!
//! A network verifies the same few keys over and over: each client's, each
//! peer's. Verification computes `u1·G + u2·Q` and compares its x-coordinate
//! with `r`. `ring` does the `u2·Q` half with a constant-time ladder of 256
//! doublings, most of its cost; but nothing in a verification is secret, so
//! once a key has been seen [`WARM_AFTER`] times this module builds a table
//! of its multiples and verifies with additions alone:
//!
//! - a scalar is recoded into signed digits of `w` bits, `d_i` in
//!   `-2^(w-1)..2^(w-1)`, plus a last carry digit of 0 or 1, with
//!   `k = Σ d_i·2^(w·i)`;
//! - the table holds `j·2^(w·i)·Q` for `j` in `1..=2^(w-1)` in affine form,
//!   one 64-byte cache line each, so `k·Q` is at most one mixed addition
//!   of a table entry (negated for a negative digit) per digit;
//! - a key's table has 10-bit windows (26 digits and the carry: 13,313
//!   points, 832 KiB); the generator's, built once per process, has 12-bit
//!   windows (22 digits: 45,057 points, 2.75 MiB). A verification is thus
//!   at most 49 additions;
//! - the sum stays in Jacobian coordinates and the final check compares
//!   `X` with `r·Z²` (and `(r+n)·Z²` when that is below `p`), so no field
//!   inversion is needed; one scalar inversion (`1/s`) remains, done by
//!   [`crate::inverse`] (Bernstein–Yang divsteps, variable time).
//!
//! At most [`MAX_TABLES`] keys get a table (53 MiB at worst),
//! and the counting of keys that are not yet warm is bounded, so a flood of
//! distinct keys costs bounded memory and the usual `ring` verification.
//! The field arithmetic is RustCrypto's `p256` (`FieldElement`); the point
//! formulas are the textbook Jacobian ones for `a = -3`, with the special
//! cases (a point plus itself or its negation, the point at infinity)
//! checked explicitly, which is fine here because every input is public.
//! The tests compare the arithmetic with `p256`'s complete formulas and
//! every verification result with `ring`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use p256::elliptic_curve::bigint::Encoding as _;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::elliptic_curve::{Curve as _, PrimeField};
use p256::{FieldBytes, FieldElement, NistP256, Scalar, U256};

use crate::sig::Scalars;

/// Uses of a key before it gets a table.
pub const WARM_AFTER: u32 = 16;

/// Keys with a table at most (832 KiB each).
pub const MAX_TABLES: usize = 64;

/// Keys counted towards [`WARM_AFTER`] at most; the counts start over when
/// this many distinct keys have been seen without getting warm.
const MAX_COUNTED: usize = 4096;

/// Window width (bits per signed digit) of a key's table.
const KEY_WINDOW_BITS: u32 = 10;

/// Window width of the generator's table, built once per process.
const GENERATOR_WINDOW_BITS: u32 = 12;

/// Most digits a recoded scalar has: 32 windows of 8 bits and a carry.
const MAX_DIGITS: usize = 33;

/// A point in affine coordinates, one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Affine {
    x: FieldElement,
    y: FieldElement,
}

/// A point in Jacobian coordinates: `(X/Z², Y/Z³)`; `Z = 0` is infinity.
#[derive(Clone, Copy, Debug)]
struct Jacobian {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian {
        x: FieldElement::ONE,
        y: FieldElement::ONE,
        z: FieldElement::ZERO,
    };

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: FieldElement::ONE,
        }
    }

    fn is_infinity(&self) -> bool {
        bool::from(self.z.is_zero())
    }

    /// `2·self` (dbl-2001-b, for `a = -3`).
    fn double(&self) -> Jacobian {
        if self.is_infinity() || bool::from(self.y.is_zero()) {
            return Jacobian::INFINITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.multiply(&gamma);
        let t = self.x.sub(&delta).multiply(&self.x.add(&delta));
        let alpha = t.double().add(&t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2_8 = gamma.square().double().double().double();
        let y3 = alpha.multiply(&beta4.sub(&x3)).sub(&gamma2_8);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `self + q` for an affine `q` (madd, 8M + 3S), with the cases the
    /// formula does not cover handled first.
    fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.multiply(&z1z1);
        let s2 = q.y.multiply(&self.z).multiply(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y);
        if bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let hhh = h.multiply(&hh);
        let v = self.x.multiply(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.double());
        let y3 = r.multiply(&v.sub(&x3)).sub(&self.y.multiply(&hhh));
        let z3 = self.z.multiply(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

/// Affine forms of `points` with one field inversion (Montgomery's trick);
/// `None` if any of them is infinity.
fn normalize(points: &[Jacobian]) -> Option<Vec<Affine>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = FieldElement::ONE;
    for p in points {
        if p.is_infinity() {
            return None;
        }
        prefix.push(acc);
        acc = acc.multiply(&p.z);
    }
    let mut inv = Option::<FieldElement>::from(acc.invert())?;
    let mut out = vec![
        Affine {
            x: FieldElement::ZERO,
            y: FieldElement::ZERO,
        };
        points.len()
    ];
    for (i, p) in points.iter().enumerate().rev() {
        // inv = 1/(z_0·…·z_i); prefix[i] = z_0·…·z_{i-1}.
        let z_inv = inv.multiply(&prefix[i]);
        inv = inv.multiply(&p.z);
        let z_inv2 = z_inv.square();
        out[i] = Affine {
            x: p.x.multiply(&z_inv2),
            y: p.y.multiply(&z_inv2).multiply(&z_inv),
        };
    }
    Some(out)
}

/// Multiples `j·2^(w·i)·P` for each window `i` and `j` in `1..=2^(w-1)`,
/// then `2^(w·windows)·P` (the only multiple the carry digit needs), for a
/// window width `w`.
pub(crate) struct Table {
    points: Vec<Affine>,
    bits: u32,
}

impl Table {
    /// The table of `point` with `bits`-wide windows (8 to 16); `None` only
    /// for a point whose small multiples hit infinity, which no point of the
    /// P-256 group does.
    fn new(point: Affine, bits: u32) -> Option<Table> {
        let windows = windows(bits);
        let per_window = per_window(bits);
        let mut points = Vec::with_capacity(windows * per_window + 1);
        let mut base = point;
        for _ in 0..windows {
            let mut window = Vec::with_capacity(per_window + 1);
            let mut acc = Jacobian::from_affine(&base);
            window.push(acc);
            for _ in 1..per_window {
                acc = acc.add_affine(&base);
                window.push(acc);
            }
            // The next window's base: 2^w·base = 2·(2^(w-1)·base).
            window.push(acc.double());
            let mut affine = normalize(&window)?;
            base = affine.pop()?;
            points.extend_from_slice(&affine);
        }
        points.push(base);
        Some(Table { points, bits })
    }

    /// Appends to `terms` the table entries whose sum is `k·P` (`P` this
    /// table's point), each with whether it is to be negated.
    ///
    /// The entries are copied out before any addition: their addresses are
    /// known up front, so the processor fetches them all at once instead of
    /// stalling on one cache miss per addition (the tables do not fit the
    /// cache of a busy node; this load was most of the time spent outside
    /// the field arithmetic).
    fn gather(&self, k: &Scalar, terms: &mut Terms) {
        let per_window = per_window(self.bits);
        let (digits, count) = recode(&k.to_bytes(), self.bits);
        for (i, &d) in digits[..count].iter().enumerate() {
            if d != 0 {
                let entry = self.points[i * per_window + d.unsigned_abs() as usize - 1];
                terms.push(entry, d < 0);
            }
        }
    }

    /// Adds `k·P` to `acc`, where `P` is this table's point.
    #[cfg(test)]
    fn add_multiple(&self, acc: &mut Jacobian, k: &Scalar) {
        let mut terms = Terms::new();
        self.gather(k, &mut terms);
        terms.add_to(acc);
    }
}

/// Table entries to add up: at most two scalars' worth of digits.
struct Terms {
    points: [Affine; 2 * MAX_DIGITS],
    negate: [bool; 2 * MAX_DIGITS],
    len: usize,
}

impl Terms {
    fn new() -> Terms {
        let zero = Affine {
            x: FieldElement::ZERO,
            y: FieldElement::ZERO,
        };
        Terms {
            points: [zero; 2 * MAX_DIGITS],
            negate: [false; 2 * MAX_DIGITS],
            len: 0,
        }
    }

    fn push(&mut self, point: Affine, negate: bool) {
        if let (Some(slot), Some(flag)) =
            (self.points.get_mut(self.len), self.negate.get_mut(self.len))
        {
            *slot = point;
            *flag = negate;
            self.len += 1;
        }
    }

    /// Adds every term to `acc`.
    fn add_to(&self, acc: &mut Jacobian) {
        for (point, &negate) in self.points[..self.len].iter().zip(&self.negate) {
            *acc = if negate {
                acc.add_affine(&Affine {
                    x: point.x,
                    y: point.y.neg(),
                })
            } else {
                acc.add_affine(point)
            };
        }
    }
}

/// Windows of `bits` bits covering 256 bits.
fn windows(bits: u32) -> usize {
    256usize.div_ceil(bits as usize)
}

/// Table entries per window: the multiples `1..=2^(bits-1)`.
fn per_window(bits: u32) -> usize {
    1 << (bits - 1)
}

/// Recodes a big-endian 256-bit scalar into little-endian signed digits of
/// `bits` bits, each in `-2^(bits-1)..2^(bits-1)`, plus a last carry digit
/// of 0 or 1, with `k = Σ d_i·2^(bits·i)`. Returns the digits and how many
/// there are (the windows and the carry).
fn recode(be: &FieldBytes, bits: u32) -> ([i32; MAX_DIGITS], usize) {
    let mut words = [0u64; 4];
    for (i, word) in words.iter_mut().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&be[32 - 8 * (i + 1)..32 - 8 * i]);
        *word = u64::from_be_bytes(w);
    }
    // Bits `start..start + bits` of the scalar (zero past bit 255).
    let chunk = |start: usize| -> u64 {
        let (index, shift) = (start / 64, start % 64);
        let mut value = words.get(index).map_or(0, |w| w >> shift);
        if shift > 0 && shift + bits as usize > 64 {
            value |= words.get(index + 1).map_or(0, |w| w << (64 - shift));
        }
        value & ((1u64 << bits) - 1)
    };
    let windows = windows(bits);
    let half = 1i32 << (bits - 1);
    let mut digits = [0i32; MAX_DIGITS];
    let mut carry = 0i32;
    for (i, digit) in digits.iter_mut().enumerate().take(windows) {
        let d = chunk(i * bits as usize) as i32 + carry;
        if d >= half {
            *digit = d - 2 * half;
            carry = 1;
        } else {
            *digit = d;
            carry = 0;
        }
    }
    digits[windows] = carry;
    (digits, windows + 1)
}

/// The affine point of an uncompressed SEC1 encoding (already checked to
/// be on the curve by whoever built the key).
fn affine_from_sec1(point: &[u8; 65]) -> Option<Affine> {
    let mut x = FieldBytes::default();
    let mut y = FieldBytes::default();
    x.copy_from_slice(&point[1..33]);
    y.copy_from_slice(&point[33..65]);
    Some(Affine {
        x: Option::from(FieldElement::from_bytes(&x))?,
        y: Option::from(FieldElement::from_bytes(&y))?,
    })
}

fn generator() -> Option<&'static Table> {
    static GENERATOR: OnceLock<Option<Table>> = OnceLock::new();
    GENERATOR
        .get_or_init(|| {
            let encoded = p256::AffinePoint::GENERATOR.to_encoded_point(false);
            let point: [u8; 65] = encoded.as_bytes().try_into().ok()?;
            Table::new(affine_from_sec1(&point)?, GENERATOR_WINDOW_BITS)
        })
        .as_ref()
}

#[derive(Default)]
struct Registry {
    tables: RwLock<HashMap<[u8; 65], Arc<Table>>>,
    counts: Mutex<HashMap<[u8; 65], u32>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// The table of `point` (uncompressed SEC1), if it has one or has just
/// become warm; `None` means: verify the ordinary way.
pub(crate) fn table_for(point: &[u8; 65]) -> Option<Arc<Table>> {
    let registry = registry();
    {
        let tables = registry.tables.read().ok()?;
        if let Some(table) = tables.get(point) {
            return Some(Arc::clone(table));
        }
        if tables.len() >= MAX_TABLES {
            return None;
        }
    }
    {
        let mut counts = registry.counts.lock().ok()?;
        if counts.len() >= MAX_COUNTED && !counts.contains_key(point) {
            counts.clear();
        }
        let count = counts.entry(*point).or_insert(0);
        *count += 1;
        if *count < WARM_AFTER {
            return None;
        }
        counts.remove(point);
    }
    let table = Arc::new(Table::new(affine_from_sec1(point)?, KEY_WINDOW_BITS)?);
    let mut tables = registry.tables.write().ok()?;
    if tables.len() >= MAX_TABLES {
        return None;
    }
    Some(Arc::clone(tables.entry(*point).or_insert(table)))
}

/// Whether the affine x-coordinate of the Jacobian point `(x, _, z)`,
/// reduced mod n, equals `r` (`1 <= r < n`): `x/z² = r` or, when `r + n`
/// is still below `p`, `x/z² = r + n`.
fn x_matches(x: &FieldElement, z: &FieldElement, r: &[u8; 32]) -> bool {
    let z2 = z.square();
    let r_uint = U256::from_be_bytes(*r);
    let candidates = [Some(r_uint), {
        let (sum, carry) = r_uint.adc(&NistP256::ORDER, p256::elliptic_curve::bigint::Limb::ZERO);
        (carry.0 == 0).then_some(sum)
    }];
    candidates.into_iter().flatten().any(|c| {
        Option::<FieldElement>::from(FieldElement::from_uint(c))
            .is_some_and(|fe| fe.multiply(&z2) == *x)
    })
}

/// Verifies an ECDSA signature whose scalars were already parsed and range-
/// checked (`1 <= r, s < n`, low-S) against the key of `table`: `true` when
/// the x-coordinate of `(e/s)·G + (r/s)·Q`, reduced mod n, equals `r`.
pub(crate) fn verify_prehash(table: &Table, digest: &[u8; 32], scalars: &Scalars) -> bool {
    let Some(generator) = generator() else {
        return false;
    };
    let Some(r) = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(scalars.r))) else {
        return false;
    };
    let Some(w) = crate::inverse::invert_mod_order(&scalars.s)
        .and_then(|w| Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(w))))
    else {
        return false;
    };
    let e = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(*digest));
    let mut terms = Terms::new();
    generator.gather(&(e * w), &mut terms);
    table.gather(&(r * w), &mut terms);
    let mut acc = Jacobian::INFINITY;
    terms.add_to(&mut acc);
    !acc.is_infinity() && x_matches(&acc.x, &acc.z, &scalars.r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;
    use crate::keys::SigningKey;
    use p256::elliptic_curve::group::Group as _;
    use p256::elliptic_curve::ops::MulByGenerator as _;
    use p256::ProjectivePoint;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

    fn scalar(seed: &str) -> Scalar {
        <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(sha256(seed.as_bytes())))
    }

    fn sec1_point(key: &SigningKey) -> [u8; 65] {
        key.verifying_key()
            .to_sec1_uncompressed()
            .try_into()
            .unwrap()
    }

    fn sec1(p: &ProjectivePoint) -> Vec<u8> {
        p.to_affine().to_encoded_point(false).as_bytes().to_vec()
    }

    fn affine(p: &ProjectivePoint) -> Affine {
        let bytes: [u8; 65] = sec1(p).try_into().unwrap();
        affine_from_sec1(&bytes).unwrap()
    }

    /// Our Jacobian point as SEC1 bytes (`[0]` for infinity).
    fn jacobian_sec1(p: &Jacobian) -> Vec<u8> {
        if p.is_infinity() {
            return vec![0];
        }
        let a = normalize(&[*p]).unwrap()[0];
        let mut out = vec![4];
        out.extend_from_slice(&a.x.to_bytes());
        out.extend_from_slice(&a.y.to_bytes());
        out
    }

    fn expected(p: &ProjectivePoint) -> Vec<u8> {
        if bool::from(p.is_identity()) {
            vec![0]
        } else {
            sec1(p)
        }
    }

    #[test]
    fn point_formulas_agree_with_complete_ones() {
        for i in 0..8 {
            let p = ProjectivePoint::mul_by_generator(&scalar(&format!("p{i}")));
            let q = ProjectivePoint::mul_by_generator(&scalar(&format!("q{i}")));
            // A Jacobian P with Z ≠ 1: P = (P - Q) + Q.
            let pj = Jacobian::from_affine(&affine(&(p - q))).add_affine(&affine(&q));
            assert_eq!(jacobian_sec1(&pj), sec1(&p));
            assert_eq!(
                jacobian_sec1(&pj.add_affine(&affine(&q))),
                expected(&(p + q))
            );
            assert_eq!(
                jacobian_sec1(&pj.add_affine(&affine(&p))),
                expected(&p.double())
            );
            assert_eq!(jacobian_sec1(&pj.add_affine(&affine(&-p))), vec![0]);
            assert_eq!(jacobian_sec1(&pj.double()), expected(&p.double()));
            assert_eq!(
                jacobian_sec1(&Jacobian::INFINITY.add_affine(&affine(&q))),
                sec1(&q)
            );
            assert_eq!(jacobian_sec1(&Jacobian::INFINITY.double()), vec![0]);
        }
    }

    #[test]
    fn recoding_sums_back_to_the_scalar() {
        let mut alternating = [0x7f; 32];
        alternating[31] = 0x80;
        for bits in [8, 10, 12, 16] {
            let half = 1i32 << (bits - 1);
            for be in [[0; 32], [0xff; 32], [0x80; 32], alternating, sha256(b"a")] {
                let (digits, count) = recode(&FieldBytes::from(be), bits);
                assert_eq!(count, windows(bits) + 1);
                assert!(digits[..count - 1]
                    .iter()
                    .all(|d| (-half..half).contains(d)));
                assert!(digits[count - 1] == 0 || digits[count - 1] == 1);
                let mut sum = Scalar::ZERO;
                for d in digits[..count].iter().rev() {
                    let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
                    sum = sum * Scalar::from(1u64 << bits)
                        + if *d < 0 { -magnitude } else { magnitude };
                }
                assert_eq!(
                    sum,
                    <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(be)),
                    "{bits}-bit windows"
                );
            }
        }
    }

    #[test]
    fn table_multiples_match_scalar_multiplication() {
        let q = ProjectivePoint::mul_by_generator(&scalar("q"));
        let mut ks: Vec<Scalar> = [0u64, 1, 2, 127, 128, 129, 255, 256, 65_535, u64::MAX]
            .into_iter()
            .map(Scalar::from)
            .collect();
        ks.push(-Scalar::ONE);
        ks.push(-Scalar::from(128u64));
        ks.extend((0..8).map(|i| scalar(&format!("k{i}"))));
        for bits in [8, KEY_WINDOW_BITS, GENERATOR_WINDOW_BITS] {
            let table = Table::new(affine(&q), bits).unwrap();
            for k in &ks {
                let mut acc = Jacobian::INFINITY;
                table.add_multiple(&mut acc, k);
                assert_eq!(
                    jacobian_sec1(&acc),
                    expected(&(q * k)),
                    "k = {k:?}, {bits} bits"
                );
            }
        }
    }

    #[test]
    fn x_comparison_covers_r_plus_n() {
        let z = FieldElement::from_u64(7);
        let z2 = z.square();
        let mut r = [0u8; 32];
        r[31] = 5;
        // Affine x = 5 and x = 5 + n (below p) both reduce to r = 5.
        let x5 = FieldElement::from_u64(5).multiply(&z2);
        assert!(x_matches(&x5, &z, &r));
        let n_plus_5 = NistP256::ORDER.wrapping_add(&U256::from_u64(5));
        let x = Option::<FieldElement>::from(FieldElement::from_uint(n_plus_5))
            .unwrap()
            .multiply(&z2);
        assert!(x_matches(&x, &z, &r));
        r[31] = 6;
        assert!(!x_matches(&x, &z, &r));
        assert!(!x_matches(&x5, &z, &r));
    }

    #[test]
    fn agrees_with_ring_on_good_and_bad_signatures() {
        for round in 0..3 {
            let key = SigningKey::generate().unwrap();
            let point = sec1_point(&key);
            let table = Table::new(affine_from_sec1(&point).unwrap(), KEY_WINDOW_BITS).unwrap();
            let other = SigningKey::generate().unwrap();
            let ring_ok = |m: &[u8], s: &[u8]| {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
                    .verify(m, s)
                    .is_ok()
            };
            for i in 0..100u32 {
                let msg = format!("message {round} {i}").into_bytes();
                let sig = key.sign(&msg).unwrap();
                let scalars = Scalars::parse_for_verify(&sig).unwrap();
                assert!(ring_ok(&msg, &sig));
                assert!(verify_prehash(&table, &sha256(&msg), &scalars));
                assert!(!verify_prehash(&table, &sha256(b"tampered"), &scalars));
                let foreign = other.sign(&msg).unwrap();
                let foreign_scalars = Scalars::parse_for_verify(&foreign).unwrap();
                assert!(!ring_ok(&msg, &foreign));
                assert!(!verify_prehash(&table, &sha256(&msg), &foreign_scalars));
                let mut altered = Scalars::parse_for_verify(&sig).unwrap();
                altered.r[31] ^= 1;
                assert!(!verify_prehash(&table, &sha256(&msg), &altered));
                let mut altered = Scalars::parse_for_verify(&sig).unwrap();
                altered.s[20] ^= 0x10;
                assert!(!verify_prehash(&table, &sha256(&msg), &altered));
            }
        }
    }

    #[test]
    fn keys_get_a_table_after_warming_up() {
        let key = SigningKey::generate().unwrap();
        let point = sec1_point(&key);
        for _ in 1..WARM_AFTER {
            assert!(table_for(&point).is_none());
        }
        assert!(table_for(&point).is_some());
        assert!(table_for(&point).is_some());
        // And verify() goes through it with the same answers.
        let public = key.verifying_key();
        let sig = key.sign(b"m").unwrap();
        assert!(public.verify(b"m", &sig).is_ok());
        assert!(public.verify(b"n", &sig).is_err());
    }
}
