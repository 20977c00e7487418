use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

use super::*;

/// A CA written as `dir/ca.crt`.
fn write_ca(dir: &Path) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join(CA_FILE), ca.pem()).unwrap();
    ca
}

/// A client certificate signed by `ca`, with a common name and an organization (in
/// that order: rcgen's parameters start with a CN), a URI and a DNS subjectAltName.
fn client_cert(ca: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example, Inc.");
    params
        .distinguished_name
        .push(DnType::CommonName, "client one");
    params.subject_alt_names = vec![
        SanType::URI("spiffe://example.test/ns/a".try_into().unwrap()),
        SanType::DnsName("a.example.test".try_into().unwrap()),
    ];
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, ca).unwrap().der().clone()
}

#[test]
fn a_ca_dir_gives_a_verifier_that_accepts_its_clients_only() {
    super::super::install_crypto_provider();
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = write_ca(dir.path());
    let stranger = write_ca(other.path());
    let (policy, pem) = client_auth(dir.path(), true).unwrap();
    assert!(!pem.is_empty());
    let v = &policy.verifier;
    assert!(v.offer_client_auth() && v.client_auth_mandatory());
    let now = UnixTime::now();
    assert!(v.verify_client_cert(&client_cert(&ca), &[], now).is_ok());
    assert!(v
        .verify_client_cert(&client_cert(&stranger), &[], now)
        .is_err());
    let (optional, _) = client_auth(dir.path(), false).unwrap();
    assert!(optional.verifier.offer_client_auth());
    assert!(!optional.verifier.client_auth_mandatory());
}

#[test]
fn a_bad_ca_dir_is_a_located_error() {
    super::super::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let err = client_auth(dir.path(), true).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    assert!(err.to_string().ends_with("ca.crt"), "{err}");
    std::fs::write(dir.path().join(CA_FILE), "not a certificate\n").unwrap();
    let err = client_auth(dir.path(), true).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
}

#[test]
fn the_forwarded_field_names_the_certificate_as_envoy_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path());
    let leaf = client_cert(&ca);
    let value = forwarded_client_cert(&leaf).unwrap();
    let value = value.to_str().unwrap();
    let hash: String = pingora::tls::hash_certificate(&leaf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        value,
        format!(
            "Hash={hash};Subject=\"O=Example\\\\, Inc.,CN=client one\";URI=spiffe://example.test/ns/a;DNS=a.example.test"
        )
    );
    assert_eq!(hash.len(), 64);
    assert!(forwarded_client_cert(b"garbage").is_none());
}
