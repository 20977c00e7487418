//! Unit tests for certificate loading and SNI selection.

use std::path::Path;
use std::sync::Arc;

use super::*;

/// Reads and checks `dir/tls.crt` and `dir/tls.key`, as a load does.
fn load_dir(dir: &Path) -> Result<LoadedCert, TlsError> {
    parse(&read_files(dir)?)
}

/// Writes a self-signed ECDSA certificate for `names` and its key into `dir`.
fn write_cert(dir: &Path, names: &[&str]) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    std::fs::create_dir_all(dir).unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join(CERT_FILE), ck.cert.pem()).unwrap();
    std::fs::write(dir.join(KEY_FILE), ck.signing_key.serialize_pem()).unwrap();
    ck
}

#[test]
fn loads_a_secret_dir_and_reads_its_names() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    write_cert(tmp.path(), &["a.test", "*.b.test"]);
    let cert = load_dir(tmp.path()).unwrap();
    assert_eq!(cert.names, vec!["a.test", "*.b.test"]);
    assert!(cert.not_before < cert.not_after);
    assert_eq!(cert.validity_problem(cert.not_before + 1), None);
    let expired = cert.validity_problem(cert.not_after + 10).unwrap();
    assert_eq!(expired, NotValid::Expired { secs_ago: 10 });
    assert_eq!(expired.to_string(), "certificate expired 10 s ago");
    let early = cert.validity_problem(cert.not_before - 5).unwrap();
    assert_eq!(early, NotValid::Yet { secs_ahead: 5 });
    assert!(early.to_string().contains("not valid yet"), "{early}");
}

#[test]
fn mismatched_key_is_rejected() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_cert(&a, &["a.test"]);
    write_cert(&b, &["b.test"]);
    std::fs::copy(b.join(KEY_FILE), a.join(KEY_FILE)).unwrap();
    let err = load_dir(&a).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn missing_and_garbage_files_are_named() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let err = load_dir(tmp.path()).unwrap_err();
    assert!(err.to_string().ends_with("tls.crt"), "{err}");
    write_cert(tmp.path(), &["a.test"]);
    std::fs::write(tmp.path().join(KEY_FILE), "not a key\n").unwrap();
    let err = load_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    std::fs::write(tmp.path().join(CERT_FILE), "").unwrap();
    let err = load_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
}

#[test]
fn an_unparsable_certificate_carries_the_parser_error() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    write_cert(tmp.path(), &["a.test"]);
    // Valid PEM whose DER is no certificate ("not DER" in base64).
    std::fs::write(
        tmp.path().join(CERT_FILE),
        "-----BEGIN CERTIFICATE-----\nbm90IERFUg==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, TlsError::BadCertificate { .. }), "{err:?}");
    let chain = crate::error_chain(&err);
    assert!(
        chain.contains("tls.crt: cannot parse the leaf certificate: Parsing"),
        "{chain}"
    );
}

#[test]
fn sni_selects_by_exact_then_wildcard_then_default() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ["d", "a", "w"].map(|d| tmp.path().join(d));
    write_cert(&dirs[0], &["default.test"]);
    write_cert(&dirs[1], &["a.test"]);
    write_cert(&dirs[2], &["*.w.test", "a.test"]);
    let loaded: Vec<LoadedCert> = dirs.iter().map(|d| load_dir(d).unwrap()).collect();
    let set = CertSet::new(&loaded).unwrap();
    let pick = |sni| set.select(sni).key.clone();
    assert!(Arc::ptr_eq(&pick(None), &loaded[0].key));
    assert!(
        Arc::ptr_eq(&pick(Some("A.Test")), &loaded[1].key),
        "earlier dir wins"
    );
    assert!(Arc::ptr_eq(&pick(Some("x.w.test")), &loaded[2].key));
    assert!(
        Arc::ptr_eq(&pick(Some("y.x.w.test")), &loaded[0].key),
        "one label only"
    );
    assert!(Arc::ptr_eq(&pick(Some("w.test")), &loaded[0].key));
    assert!(Arc::ptr_eq(&pick(Some("other.test")), &loaded[0].key));
    assert!(CertSet::new(&[]).is_none());
    let wildcard = set.select(Some("x.w.test"));
    assert!(
        wildcard.covers("x.w.test") && wildcard.covers("a.test") && wildcard.covers("Y.W.test")
    );
    assert!(
        !wildcard.covers("w.test") && !wildcard.covers("y.x.w.test") && !wildcard.covers(".w.test")
    );
}

/// A certificate source the test swaps, as a reload swaps the snapshot.
#[derive(Debug)]
struct Swapped(Arc<arc_swap::ArcSwapOption<CertSet>>);

impl CertSource for Swapped {
    fn certs(&self) -> Option<Arc<CertSet>> {
        self.0.load_full()
    }
}

#[test]
fn the_resolver_serves_what_its_source_holds_at_each_handshake() {
    install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_cert(&a, &["a.test"]);
    write_cert(&b, &["a.test"]);
    let (a, b) = (load_dir(&a).unwrap(), load_dir(&b).unwrap());
    let live = Arc::new(arc_swap::ArcSwapOption::empty());
    let resolver = SniResolver::new(Swapped(live.clone()));
    assert!(resolver.served(Some("a.test")).is_none(), "no certificates");
    live.store(CertSet::new(std::slice::from_ref(&a)).map(Arc::new));
    let served = resolver.served(Some("a.test")).unwrap();
    assert!(Arc::ptr_eq(&served.key, &a.key));
    live.store(CertSet::new(std::slice::from_ref(&b)).map(Arc::new));
    let served = resolver.served(Some("a.test")).unwrap();
    assert!(Arc::ptr_eq(&served.key, &b.key), "the swapped-in set");
}
