//! A throwaway PKI built with rcgen for the tests.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use std::sync::atomic::{AtomicU64, Ordering};
use time::{Duration, OffsetDateTime};

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1000);

fn next_serial() -> u64 {
    NEXT_SERIAL.fetch_add(1, Ordering::Relaxed)
}

fn name(cn: &str, ous: &[&str]) -> DistinguishedName {
    // rcgen keeps one value per attribute type, so a second OU goes in under
    // the OU OID spelled as a custom type; X.509 readers see two OUs.
    assert!(ous.len() <= 2, "tests use at most two OUs");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "org1.example.com");
    if let Some(ou) = ous.first() {
        dn.push(DnType::OrganizationalUnitName, *ou);
    }
    if let Some(ou) = ous.get(1) {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 11]), *ou);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA that can issue certificates and CRLs.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    pub serial: u64,
}

impl Ca {
    pub fn root(cn: &str) -> Ca {
        let (params, serial) = ca_params(cn);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, serial }
    }

    /// A root valid only from `not_before` to `not_after`.
    pub fn root_valid(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Ca {
        let (mut params, serial) = ca_params(cn);
        params.not_before = not_before;
        params.not_after = not_after;
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, serial }
    }

    pub fn intermediate(&self, cn: &str) -> Ca {
        let (params, serial) = ca_params(cn);
        let issuer =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.issuer).unwrap();
        Ca { issuer, serial }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A leaf valid from a day ago for ten years.
    pub fn leaf(&self, cn: &str, ous: &[&str]) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(cn, ous, now - Duration::days(1), now + Duration::days(3650))
    }

    pub fn leaf_valid(
        &self,
        cn: &str,
        ous: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let serial = next_serial();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn, ous);
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key,
            serial,
        }
    }

    /// A PEM CRL revoking the given serials.
    pub fn crl(&self, serials: &[u64]) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

fn ca_params(cn: &str) -> (CertificateParams, u64) {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let serial = next_serial();
    params.serial_number = Some(SerialNumber::from(serial));
    // Old enough that the tests' back-dated leaves were issued within it.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(400);
    params.not_after = now + Duration::days(7300);
    (params, serial)
}

/// An end-entity certificate and its key.
pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
    pub key: KeyPair,
    pub serial: u64,
}

impl Leaf {
    /// The key as PKCS#8 PEM, as Fabric writes `keystore/priv_sk`.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}
