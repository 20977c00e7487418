//! Certificate selection by SNI, key formats and TLS versions.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use e2e::{Certs, Client, Gateway, Hello, KeyFormat, KeyType, Proto};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

fn leaf(dir: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join("tls.crt")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sni_gets_its_certificate_and_unknown_sni_gets_the_default() {
    let certs = Certs::new();
    // RSA with a PKCS#1 key for a.test; ECDSA with a SEC1 key for b.test and *.c.test.
    let a = certs.server_with("a", &["a.test"], KeyType::Rsa, KeyFormat::Pkcs1);
    let b = certs.server_with(
        "b",
        &["b.test", "*.c.test"],
        KeyType::Ecdsa,
        KeyFormat::Sec1,
    );
    let hello = Hello::spawn("h");
    let gw = Gateway::start(&e2e::https_config(&[&a, &b], &[hello.addr], ""));
    let client = Client::new(&certs.ca());
    let addr = gw.addr("https");
    for (sni, dir) in [("a.test", &a), ("b.test", &b), ("x.c.test", &b)] {
        for proto in [Proto::H1, Proto::H2] {
            let mut conn = client.connect(addr, Some(sni), proto).await.unwrap();
            assert_eq!(conn.peer_cert, leaf(dir), "{sni} {proto:?}");
            assert_eq!(conn.get("/").await.unwrap().status, 200);
        }
    }
    // Unknown name and no SNI at all: the first directory's certificate. The client
    // cannot verify it for that name, so read what was offered with openssl.
    for sni in [Some("unknown.test"), None] {
        let err = client.connect(addr, sni, Proto::H1).await.err().unwrap();
        assert!(
            err.contains("certificate") || err.contains("Certificate"),
            "{err}"
        );
        let served = served_cert(addr, sni);
        assert_eq!(served, leaf(&a), "{sni:?}");
    }
}

/// The leaf certificate the server offers for `sni`, read with `openssl s_client`.
fn served_cert(addr: std::net::SocketAddr, sni: Option<&str>) -> CertificateDer<'static> {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    CertificateDer::from_pem_slice(&out.stdout).expect("a certificate in s_client's output")
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_2_and_1_3_are_served_and_older_versions_refused() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("h");
    let gw = Gateway::start(&e2e::https_config(&[&tls], &[hello.addr], ""));
    let addr = gw.addr("https");
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let client = Client::new(&certs.ca()).with_versions(&[version]);
        let mut conn = client
            .connect(addr, Some("localhost"), Proto::H2)
            .await
            .unwrap();
        assert_eq!(conn.tls_version, expect);
        assert_eq!(conn.get("/").await.unwrap().status, 200);
    }
    // OpenSSL's own default security level refuses TLS 1.0 and 1.1 before sending
    // anything: level 0 lets the client offer them, so what is tested is the server's
    // refusal. A control server that accepts them proves the client really offers them.
    let control = OldTlsServer::start(&tls);
    for old in ["-tls1", "-tls1_1"] {
        let (ok, stdout) = old_tls_handshake(control.addr, old);
        assert!(
            ok && stdout.contains("BEGIN CERTIFICATE"),
            "the control server refused {old}: the client does not offer it:\n{stdout}"
        );
        let (ok, stdout) = old_tls_handshake(addr, old);
        assert!(
            !ok && !stdout.contains("BEGIN CERTIFICATE"),
            "{old} handshake succeeded:\n{stdout}"
        );
    }
}

/// An `openssl s_client` handshake offering only `version` (`-tls1`, `-tls1_1`) at
/// security level 0: whether it succeeded, and what it printed.
fn old_tls_handshake(addr: std::net::SocketAddr, version: &str) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), version])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

/// `openssl s_server` accepting TLS 1.0 to 1.3 at security level 0; killed on drop.
struct OldTlsServer {
    addr: std::net::SocketAddr,
    child: std::process::Child,
}

impl OldTlsServer {
    fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-accept", &addr.to_string()])
            .arg("-cert")
            .arg(dir.join("tls.crt"))
            .arg("-key")
            .arg(dir.join("tls.key"))
            .args(["-cipher", "DEFAULT@SECLEVEL=0", "-min_protocol", "TLSv1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run openssl s_server");
        e2e::wait_until(
            std::time::Duration::from_secs(20),
            "openssl s_server to listen",
            || std::net::TcpStream::connect(addr).ok(),
        );
        Self { addr, child }
    }
}

impl Drop for OldTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
