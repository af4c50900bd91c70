//! `_lifecycle` approvals are endorsed by the approving org alone; other
//! `_lifecycle` writes need the channel's LifecycleEndorsement.

use twill_peer::lifecycle::approval_key;
use twill_peer::validation::lifecycle::LIFECYCLE_NAMESPACE;
use twill_peer::validation::testkit::{write, TxBuilder, CHANNEL};
use twill_protos::peer::TxValidationCode as Code;

use crate::{codes, fx};

fn lifecycle_tx(
    key: &str,
    endorsers: &[&twill_msp::SigningIdentity],
) -> twill_protos::common::Envelope {
    let f = fx();
    let mut tx = TxBuilder::new(&f.client1, CHANNEL, LIFECYCLE_NAMESPACE)
        .writes(LIFECYCLE_NAMESPACE, vec![write(key, b"approval")]);
    for e in endorsers {
        tx = tx.endorsed_by(e);
    }
    tx.build().unwrap().1
}

#[test]
fn an_org_approves_alone_but_not_for_another_org() {
    let f = fx();
    let own = lifecycle_tx(&approval_key("Org1MSP", "basic"), &[&f.peer1]);
    let foreign = lifecycle_tx(&approval_key("Org2MSP", "basic"), &[&f.peer1]);
    let other_key = lifecycle_tx("namespaces/metadata/basic", &[&f.peer1]);
    let both = lifecycle_tx("namespaces/metadata/basic2", &[&f.peer1, &f.peer2]);
    assert_eq!(
        codes(&[own, foreign, other_key, both]),
        [
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::Valid
        ]
    );
}
