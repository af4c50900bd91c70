//! Data-file driven evaluation cases, from `testdata/evaluation.txt`.

use crate::fixture::{msps, Org, Signer};
use std::collections::HashMap;
use twill_policy::{parse_policy, Policy, SignaturePolicyEvaluator, SignedData};

const DATA: &[u8] = b"signed bytes";

struct World {
    orgs: HashMap<String, Org>,
    signers: HashMap<String, Signer>,
}

impl World {
    /// The signature of the signer named `name` (e.g. `A.peer#2`).
    fn sign(&mut self, token: &str) -> SignedData {
        let (name, bad) = match token.strip_suffix('!') {
            Some(n) => (n, true),
            None => (token, false),
        };
        let (kind, _) = name.split_once('#').unwrap_or((name, ""));
        let (msp, role) = kind.split_once('.').expect("MSP.role");
        let orgs = &mut self.orgs;
        let signer = self.signers.entry(name.to_owned()).or_insert_with(|| {
            let org = orgs.entry(msp.to_owned()).or_insert_with(|| Org::new(msp));
            org.signer(&format!("{name}.cn"), role)
        });
        let mut sd = signer.sign(DATA);
        if bad {
            sd.data = b"not what was signed".to_vec();
        }
        sd
    }
}

#[test]
fn evaluation_cases_from_data_file() {
    let text = include_str!("testdata/evaluation.txt");
    let mut world = World {
        orgs: ["A", "B", "C"]
            .into_iter()
            .map(|m| (m.to_owned(), Org::new(m)))
            .collect(),
        signers: HashMap::new(),
    };
    let channel: Vec<&Org> = ["A", "B", "C"].iter().map(|m| &world.orgs[*m]).collect();
    let channel_msps = msps(&channel);

    let mut cases = 0;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [policy, signers, outcome] = parts.as_slice() else {
            panic!("line {}: expected three fields", lineno + 1);
        };
        let evaluator = SignaturePolicyEvaluator::new(
            parse_policy(policy).expect(policy),
            channel_msps.clone(),
        )
        .expect(policy);
        let signed: Vec<SignedData> = signers.split_whitespace().map(|t| world.sign(t)).collect();
        let result = evaluator.evaluate(&signed);
        let want_pass = match *outcome {
            "pass" => true,
            "fail" => false,
            other => panic!("line {}: outcome {other:?}", lineno + 1),
        };
        assert_eq!(
            result.is_ok(),
            want_pass,
            "line {}: {policy} with [{signers}]: {result:?}",
            lineno + 1
        );
        cases += 1;
    }
    assert!(cases >= 20);
}
