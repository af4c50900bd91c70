//! Policy language: parsing, errors and printing.

use prost::Message;
use twill_policy::builder::{n_out_of, signed_by};
use twill_policy::{msp_role_principal, parse_policy, policy_to_string, PolicyError};
use twill_protos::common::msp_role::MspRoleType::{self, Admin, Client, Member, Orderer, Peer};
use twill_protos::common::{SignaturePolicy, SignaturePolicyEnvelope};

fn env(rule: SignaturePolicy, ids: &[(&str, MspRoleType)]) -> SignaturePolicyEnvelope {
    SignaturePolicyEnvelope {
        version: 0,
        rule: Some(rule),
        identities: ids.iter().map(|(m, r)| msp_role_principal(m, *r)).collect(),
    }
}

fn s(i: i32) -> SignaturePolicy {
    signed_by(i)
}

#[test]
fn valid_policies_build_fabric_envelopes() {
    let cases: Vec<(&str, SignaturePolicyEnvelope)> = vec![
        (
            "OutOf(1, 'A.member', 'B.member')",
            env(
                n_out_of(1, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "OutOf(2, 'A.member', 'B.member')",
            env(
                n_out_of(2, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "AND('A.member', 'B.member')",
            env(
                n_out_of(2, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "and('A.client', \"B.peer\")",
            env(n_out_of(2, vec![s(0), s(1)]), &[("A", Client), ("B", Peer)]),
        ),
        (
            "OR('A.member', 'B.member')",
            env(
                n_out_of(1, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "or('A.peer', 'B.admin', 'C.orderer', 'D.client')",
            env(
                n_out_of(1, vec![s(0), s(1), s(2), s(3)]),
                &[("A", Peer), ("B", Admin), ("C", Orderer), ("D", Client)],
            ),
        ),
        // Nested gates number their principals before the enclosing gate's own.
        (
            "OR('A.member', AND('B.member', 'C.member'))",
            env(
                n_out_of(1, vec![s(2), n_out_of(2, vec![s(0), s(1)])]),
                &[("B", Member), ("C", Member), ("A", Member)],
            ),
        ),
        (
            "OR(AND('A.member', 'B.member'), OR('C.admin', 'D.member'))",
            env(
                n_out_of(
                    1,
                    vec![n_out_of(2, vec![s(0), s(1)]), n_out_of(1, vec![s(2), s(3)])],
                ),
                &[("A", Member), ("B", Member), ("C", Admin), ("D", Member)],
            ),
        ),
        (
            "AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))",
            env(
                n_out_of(2, vec![s(2), n_out_of(1, vec![s(0), s(1)])]),
                &[("Org2MSP", Member), ("Org3MSP", Admin), ("Org1MSP", Peer)],
            ),
        ),
        (
            "OutOf(2, 'A.member', 'B.member', 'C.member')",
            env(
                n_out_of(2, vec![s(0), s(1), s(2)]),
                &[("A", Member), ("B", Member), ("C", Member)],
            ),
        ),
        // Repeated principals are not merged (Fabric does not merge them).
        (
            "AND('A.member', 'A.member')",
            env(
                n_out_of(2, vec![s(0), s(1)]),
                &[("A", Member), ("A", Member)],
            ),
        ),
        (
            "OR('MSP.member', 'MSP.WITH.DOTS.member', 'MSP-WITH-DASHES.member')",
            env(
                n_out_of(1, vec![s(0), s(1), s(2)]),
                &[
                    ("MSP", Member),
                    ("MSP.WITH.DOTS", Member),
                    ("MSP-WITH-DASHES", Member),
                ],
            ),
        ),
        // Quoted threshold, as Fabric allows.
        (
            "OutOf('1', 'A.member', 'B.member')",
            env(
                n_out_of(1, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        // Threshold bounds: 0 (always satisfied) and n + 1 (never).
        (
            "OutOf(0, 'A.member', 'B.member')",
            env(
                n_out_of(0, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "OUTOF(3, 'A.member', 'B.member')",
            env(
                n_out_of(3, vec![s(0), s(1)]),
                &[("A", Member), ("B", Member)],
            ),
        ),
        (
            "AND('A.member')",
            env(n_out_of(1, vec![s(0)]), &[("A", Member)]),
        ),
        (
            "  OutOf ( 1 ,\n\t'A.member' ) ",
            env(n_out_of(1, vec![s(0)]), &[("A", Member)]),
        ),
        (
            "oR('A.member', OutOf(2, 'B.peer', AND('C.admin', 'D.admin'), 'E.client'))",
            env(
                n_out_of(
                    1,
                    vec![
                        s(4),
                        n_out_of(2, vec![s(2), n_out_of(2, vec![s(0), s(1)]), s(3)]),
                    ],
                ),
                &[
                    ("C", Admin),
                    ("D", Admin),
                    ("B", Peer),
                    ("E", Client),
                    ("A", Member),
                ],
            ),
        ),
    ];
    for (input, want) in cases {
        let got = parse_policy(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got, want, "{input}");
        assert_eq!(got.encode_to_vec(), want.encode_to_vec(), "{input}");
    }
}

#[test]
fn invalid_policies_report_position_and_token() {
    let cases: &[(&str, &str)] = &[
        ("", "empty policy expression"),
        ("   \n", "empty policy expression"),
        (
            "AND('A.member',)",
            "at position 16: unexpected token ')' (expected a principal or AND/OR/OutOf)",
        ),
        (
            "AND()",
            "at position 5: unexpected token ')' (expected a principal or AND/OR/OutOf)",
        ),
        ("AND('A.member'", "at position 15: unexpected end of input (expected ',' or ')')"),
        ("AND 'A.member')", "at position 5: unexpected string 'A.member' (expected '(' after the gate name)"),
        ("XOR('A.member')", "at position 1: unknown gate 'XOR' (expected AND, OR or OutOf)"),
        (
            "OR('A.member', Bmember)",
            "at position 16: unexpected identifier 'Bmember' (expected a quoted principal such as 'Org1MSP.member', or AND/OR/OutOf)",
        ),
        (
            "'A.member'",
            "at position 1: unexpected string 'A.member' (expected AND, OR or OutOf; wrap a single principal, e.g. OR('Org1MSP.member'))",
        ),
        (
            "OR('A.member', 'Bmember')",
            "at position 16: invalid principal 'Bmember': expected the form 'MSPID.role'",
        ),
        (
            "OR('.member')",
            "at position 4: invalid principal '.member': the MSP ID is empty",
        ),
        (
            "OR('Org 1.member')",
            "at position 4: invalid principal 'Org 1.member': the MSP ID may contain only ASCII letters, digits, '.' and '-'",
        ),
        (
            "OR('A.Member')",
            "at position 4: unknown role 'Member' in principal 'A.Member' (expected member, admin, client, peer or orderer)",
        ),
        (
            "OR('A.auditor')",
            "at position 4: unknown role 'auditor' in principal 'A.auditor'",
        ),
        (
            "OutOf(3, 'A.member')",
            "at position 7: OutOf threshold 3 is out of range for 1 rule(s) (allowed 0 to 2)",
        ),
        (
            "OutOf(4, 'A.member', 'B.member')",
            "at position 7: OutOf threshold 4 is out of range for 2 rule(s) (allowed 0 to 3)",
        ),
        (
            "OutOf(-1, 'A.member', 'B.member')",
            "at position 7: OutOf threshold -1 is out of range for 2 rule(s)",
        ),
        ("OutOf(x, 'A.member')", "at position 7: OutOf threshold must be an integer, found identifier 'x'"),
        ("OutOf(1.5, 'A.member')", "at position 7: OutOf threshold must be an integer, found number 1.5"),
        ("OutOf('two', 'A.member')", "at position 7: OutOf threshold must be an integer, found string 'two'"),
        (
            "OutOf(1)",
            "at position 8: unexpected token ')' (expected ',' and at least one rule after the OutOf threshold)",
        ),
        ("OutOf()", "at position 7: unexpected token ')' (expected the OutOf threshold (an integer))"),
        (
            "OR('A.member') 'B.member'",
            "at position 16: unexpected string 'B.member' after the end of the policy",
        ),
        ("OR('A.member'))", "at position 15: unexpected token ')' after the end of the policy"),
        ("OR('A.member)", "at position 4: string is not terminated (missing closing ')"),
        ("OR('A.member' & 'B.member')", "at position 15: unexpected character '&'"),
    ];
    for (input, want) in cases {
        let err = parse_policy(input).expect_err(input);
        let text = err.to_string();
        assert!(text.contains(want), "{input}: got {text:?}, want {want:?}");
    }
}

#[test]
fn nesting_is_limited() {
    let depth = twill_policy::MAX_NESTING;
    let ok = format!("{}'A.member'{}", "OR(".repeat(depth), ")".repeat(depth));
    assert!(parse_policy(&ok).is_ok());
    let deep = format!(
        "{}'A.member'{}",
        "OR(".repeat(depth + 1),
        ")".repeat(depth + 1)
    );
    let err = parse_policy(&deep).expect_err("too deep");
    assert!(matches!(err, PolicyError::TooDeep { .. }), "{err}");
    assert_eq!(err.code(), "POLICY_SYNTAX");
}

#[test]
fn print_round_trips() {
    let cases = [
        (
            "AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))",
            None,
        ),
        ("OutOf(2, 'A.member', 'B.member', 'C.member')", None),
        ("OR('A.member', AND('B.member', 'C.member'))", None),
        (
            "OR(AND('A.member', 'B.member'), OR('C.admin', 'D.member'))",
            None,
        ),
        ("OutOf(0, 'A.member', 'B.member')", None),
        ("OutOf(3, 'A.member', 'B.member')", None),
        (
            "and('A.member', 'A.member')",
            Some("AND('A.member', 'A.member')"),
        ),
        ("AND('A.member')", Some("OR('A.member')")),
        (
            "outof(1, 'A.member', \"B.orderer\")",
            Some("OR('A.member', 'B.orderer')"),
        ),
        (
            "OutOf(2, 'A.client', 'B.peer')",
            Some("AND('A.client', 'B.peer')"),
        ),
    ];
    for (input, printed) in cases {
        let env = parse_policy(input).expect(input);
        let text = policy_to_string(&env).expect(input);
        assert_eq!(text, printed.unwrap_or(input), "{input}");
        assert_eq!(parse_policy(&text).expect(&text), env, "{input}");
    }
}

#[test]
fn builders_print_and_match_parser() {
    let any = twill_policy::builder::signed_by_any_member(&["Org2MSP", "Org1MSP"]);
    assert_eq!(
        policy_to_string(&any).expect("print"),
        "OR('Org1MSP.member', 'Org2MSP.member')"
    );
    assert_eq!(
        parse_policy("OR('Org1MSP.member', 'Org2MSP.member')").expect("parse"),
        any
    );
    let admin = twill_policy::builder::signed_by_msp_admin("Org1MSP");
    assert_eq!(
        policy_to_string(&admin).expect("print"),
        "OR('Org1MSP.admin')"
    );
}

#[test]
fn unprintable_envelopes_are_errors() {
    let mut env = parse_policy("OR('A.member', 'B.member')").expect("parse");
    env.identities[1].principal_classification = 2; // IDENTITY
    let err = policy_to_string(&env).expect_err("identity principal");
    assert!(err.to_string().contains("not an MSP role"), "{err}");

    let out_of_range = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(1, vec![s(3)])),
        identities: vec![msp_role_principal("A", Member)],
    };
    let err = policy_to_string(&out_of_range).expect_err("index");
    assert!(err.to_string().contains("index 3"), "{err}");

    let err =
        policy_to_string(&twill_policy::builder::accept_all_policy()).expect_err("empty gate");
    assert!(err.to_string().contains("no rules"), "{err}");

    let no_rule = SignaturePolicyEnvelope::default();
    assert!(policy_to_string(&no_rule).is_err());

    let bad_msp = twill_policy::builder::signed_by_msp_member("Org 1");
    assert!(policy_to_string(&bad_msp).is_err());
}

#[test]
fn implicit_meta_text() {
    use twill_policy::builder::parse_implicit_meta;
    let p = parse_implicit_meta("MAJORITY Admins").expect("parse");
    assert_eq!(p.sub_policy, "Admins");
    assert_eq!(p.rule, 2);
    assert_eq!(parse_implicit_meta("ANY Readers").expect("parse").rule, 0);
    assert_eq!(parse_implicit_meta("ALL Writers").expect("parse").rule, 1);
    for bad in [
        "MAJORITY",
        "majority Admins",
        "ANY  Readers",
        "SOME Admins",
        "",
    ] {
        assert!(parse_implicit_meta(bad).is_err(), "{bad}");
    }
}

/// Deterministic xorshift, so the generated cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A random valid policy, in random spellings and spacing.
    fn policy(&mut self, depth: usize) -> String {
        let rules = 1 + self.below(4);
        let args: Vec<String> = (0..rules)
            .map(|_| {
                if depth < 4 && self.below(3) == 0 {
                    self.policy(depth + 1)
                } else {
                    let msp = self.pick(&["A", "Org1MSP", "org-2.example", "B"]);
                    let role = self.pick(&["member", "admin", "client", "peer", "orderer"]);
                    let q = self.pick(&["'", "\""]);
                    format!("{q}{msp}.{role}{q}")
                }
            })
            .collect();
        let sep = self.pick(&[",", ", ", " ,\n "]);
        let body = args.join(sep);
        match self.below(3) {
            0 => format!("{}({body})", self.pick(&["AND", "and", "And", "aNd"])),
            1 => format!("{}( {body} )", self.pick(&["OR", "or", "Or"])),
            _ => {
                let n = self.below(rules + 2);
                let n = if self.below(4) == 0 {
                    format!("'{n}'")
                } else {
                    n.to_string()
                };
                format!("{}({n}, {body})", self.pick(&["OutOf", "outof", "OUTOF"]))
            }
        }
    }
}

/// Parses `text`; whenever it parses, printing and parsing again must give
/// the same envelope.
fn check_round_trip(text: &str) -> bool {
    let Ok(env) = parse_policy(text) else {
        return false;
    };
    let printed = policy_to_string(&env).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(
        parse_policy(&printed).as_ref(),
        Ok(&env),
        "{text} -> {printed}"
    );
    true
}

#[test]
fn generated_inputs_never_panic_and_round_trip() {
    const PIECES: &[&str] = &[
        "AND(",
        "OR(",
        "OutOf(",
        "(",
        ")",
        ",",
        " ",
        "'",
        "\"",
        "2",
        "-1",
        "1.5",
        "é",
        "Foo",
        "'A.member'",
        "'A.Member'",
        "'.peer'",
        "",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut still_valid = 0;
    for _ in 0..3_000 {
        let text = rng.policy(0);
        assert!(
            check_round_trip(&text),
            "generated policy should parse: {text}"
        );
        // Splice a random piece in at a random place.
        let mut cut = rng.below(text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let end = (cut + rng.below(4)).min(text.len());
        let end = if text.is_char_boundary(end) { end } else { cut };
        let mutated = format!("{}{}{}", &text[..cut], rng.pick(PIECES), &text[end..]);
        if check_round_trip(&mutated) {
            still_valid += 1;
        }
    }
    assert!(still_valid > 0);
}
