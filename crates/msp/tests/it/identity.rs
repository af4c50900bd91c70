use crate::pki::Ca;
use crate::{identity, Org, ORG1};
use prost::Message;
use twill_msp::{deserialize_serialized_identity, Identity, MspError, SigningIdentity};
use twill_protos::msp::SerializedIdentity;

#[test]
fn serialized_identity_roundtrip() {
    let org = Org::generate();
    let id = identity(&org.peer);
    assert_eq!(id.mspid(), ORG1);
    assert_eq!(id.cert_pem(), org.peer.pem.as_bytes());
    assert_eq!(id.cert_der(), org.peer.der.as_slice());
    assert_eq!(id.common_name(), "peer0.org1.example.com");
    assert_eq!(id.organizational_units(), ["peer".to_owned()]);

    let bytes = id.serialize();
    let sid = SerializedIdentity::decode(bytes.as_slice()).unwrap();
    assert_eq!(sid.mspid, ORG1);
    assert_eq!(sid.id_bytes, org.peer.pem.as_bytes());

    let (mspid, id_bytes) = deserialize_serialized_identity(&bytes).unwrap();
    assert_eq!(mspid, ORG1);
    assert_eq!(id_bytes, org.peer.pem.as_bytes());

    let back = org.msp().deserialize_identity(&bytes).unwrap();
    assert_eq!(back, id);
    assert_eq!(back.serialize(), bytes);
}

#[test]
fn two_ous_are_both_reported() {
    let root = Ca::root("ca");
    let id = identity(&root.leaf("x", &["peer", "department1"]));
    assert_eq!(id.organizational_units(), ["peer", "department1"]);
}

#[test]
fn deserialize_checks_mspid() {
    let org = Org::generate();
    let other = Identity::from_pem("Org2MSP", org.peer.pem.as_bytes()).unwrap();
    assert!(matches!(
        org.msp().deserialize_identity(&other.serialize()),
        Err(MspError::MspIdMismatch { .. })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let org = Org::generate();
    let msp = org.msp();
    for bytes in [
        &b""[..],
        b"\xff\xff\xff",
        b"\x0a\x07Org1MSP\x12\x03abc",
        b"\x0a\x07Org1MSP\x12\x40-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(msp.deserialize_identity(bytes).is_err());
    }
    assert!(matches!(
        Identity::from_pem(ORG1, b"not pem"),
        Err(MspError::NoCertificate { .. })
    ));
    assert!(matches!(
        Identity::from_pem(ORG1, b"\xff\xfe"),
        Err(MspError::NoCertificate { .. })
    ));
    assert!(Identity::from_pem(
        ORG1,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    .is_err());
}

#[test]
fn verify_is_the_signature_seam() {
    let org = Org::generate();
    let key = twill_crypto::SigningKey::from_pem(&org.peer.key_pem()).unwrap();
    let signer = SigningIdentity::try_new(identity(&org.peer), key).unwrap();
    let sig = signer.sign(b"proposal").unwrap();
    let id = identity(&org.peer);
    id.verify(b"proposal", &sig).unwrap();
    assert!(matches!(
        id.verify(b"tampered", &sig),
        Err(MspError::Signature(twill_crypto::CryptoError::BadSignature))
    ));
    assert!(matches!(
        identity(&org.client).verify(b"proposal", &sig),
        Err(MspError::Signature(_))
    ));

    let wrong_key = twill_crypto::SigningKey::from_pem(&org.client.key_pem()).unwrap();
    assert!(matches!(
        SigningIdentity::try_new(identity(&org.peer), wrong_key),
        Err(MspError::KeyMismatch { .. })
    ));
}

#[test]
fn only_the_first_pem_block_of_id_bytes_counts() {
    let org = Org::generate();
    // A certificate followed by anything, even a broken block: the certificate.
    let trailing = format!(
        "{}-----BEGIN GARBAGE-----\n*\n-----END GARBAGE-----\n",
        org.peer.pem
    );
    let id = Identity::from_pem(ORG1, trailing.as_bytes()).unwrap();
    assert_eq!(id.cert_der(), org.peer.der.as_slice());
    // Junk bytes before the block do not matter.
    let junk = [b"\xff\xfe junk\n".as_slice(), org.peer.pem.as_bytes()].concat();
    assert_eq!(
        Identity::from_pem(ORG1, &junk).unwrap().cert_der(),
        org.peer.der.as_slice()
    );
    // A key block first is not skipped to reach the certificate (Fabric
    // parses the first block as the certificate and fails).
    let key_first = format!("{}{}", org.peer.key_pem(), org.peer.pem);
    assert!(matches!(
        Identity::from_pem(ORG1, key_first.as_bytes()),
        Err(MspError::InvalidDer { .. })
    ));
    // The label is not looked at, as in Fabric.
    let relabelled = org.peer.pem.replace("CERTIFICATE", "X509 CERTIFICATE");
    assert_eq!(
        Identity::from_pem(ORG1, relabelled.as_bytes())
            .unwrap()
            .cert_der(),
        org.peer.der.as_slice()
    );
}
