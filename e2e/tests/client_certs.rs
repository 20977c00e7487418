//! Client certificates (mTLS) with certificates made by Debian's openssl: a valid one,
//! one of another CA, an expired one and none, on a `required` and an `optional`
//! listener; the verified subject and SANs reach the backend in
//! `X-Forwarded-Client-Cert` (a client's own is dropped); a new CA applies on reload.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{curl, openssl, wait_until, Certs, Curled, Gateway, Hello};

/// A CA in `dir` (`ca.crt`, `ca.key`), as a Secret with a `ca.crt` key mounts it.
fn ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("test setup");
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            &subj,
            "-days",
            "2",
        ],
    );
}

/// A client certificate `name.crt`/`name.key` in `dir` signed by the CA in `ca_dir`,
/// valid for `days` (-1: expired since yesterday).
fn client(dir: &Path, ca_dir: &Path, name: &str, days: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.crt")),
    );
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.test/ns/shop,DNS:shop.example.test\n",
    )
    .expect("test setup");
    let p = |p: &Path| p.display().to_string();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
            "-subj",
            "/O=Example/CN=shop client",
        ],
    );
    let (ca_crt, ca_key) = (ca_dir.join("ca.crt"), ca_dir.join("ca.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca_crt),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &p(&ext),
            "-out",
            &p(&crt),
        ],
    );
    (crt, key)
}

struct Setup {
    _dir: tempfile::TempDir,
    _certs: Certs,
    gw: Gateway,
    _hello: Hello,
    ca_dir: PathBuf,
    other_ca: PathBuf,
    valid: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("test setup");
    let (ca_dir, other_ca) = (dir.path().join("client-ca"), dir.path().join("other-ca"));
    ca(&ca_dir, "client CA");
    ca(&other_ca, "another CA");
    let valid = client(dir.path(), &ca_dir, "valid", "1");
    let stranger = client(dir.path(), &other_ca, "stranger", "1");
    let expired = client(dir.path(), &ca_dir, "expired", "-1");
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("a");
    let listener = |name: &str, mode: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{{{{port:{name}}}}}\"\ntls = {{ certs = [\"{}\"], client_ca = \"{}\", client_auth = \"{mode}\" }}\n\n",
            tls.display(),
            ca_dir.display()
        )
    };
    let gw = Gateway::start(&format!(
        "{}{}[upstream.hello]\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"hello\"\n",
        listener("required", "required"),
        listener("optional", "optional"),
        hello.addr
    ));
    Setup {
        _dir: dir,
        _certs: certs,
        gw,
        _hello: hello,
        ca_dir,
        other_ca,
        valid,
        stranger,
        expired,
    }
}

impl Setup {
    /// GET `/?echo_headers=1` on `listener` with `cert` (none: no certificate) and
    /// `extra` curl arguments.
    fn get(&self, listener: &str, cert: Option<&(PathBuf, PathBuf)>, extra: &[&str]) -> Curled {
        let port = self.gw.port(listener);
        let resolve = format!("localhost:{port}:127.0.0.1");
        let mut args = vec!["--resolve".to_owned(), resolve];
        if let Some((crt, key)) = cert {
            for (flag, path) in [("--cert", crt), ("--key", key)] {
                args.extend([flag.to_owned(), path.display().to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(
            "127.0.0.1",
            &format!("https://localhost:{port}/?echo_headers=1"),
            &args,
        )
    }
}

const FORWARDED_SUBJECT: &str =
    ";Subject=\"CN=shop client,O=Example\";URI=spiffe://example.test/ns/shop;DNS=shop.example.test";

#[test]
fn required_and_optional_client_certificates() {
    let s = setup();
    for proto in ["--http1.1", "--http2"] {
        for listener in ["required", "optional"] {
            let g = s.get(listener, Some(&s.valid), &[proto]);
            assert_eq!(g.status, "200", "{listener} {proto}: {}", g.body);
            let xfcc = g.echoed("x-forwarded-client-cert").unwrap_or_default();
            assert!(xfcc.starts_with("Hash="), "{listener} {proto}: {xfcc:?}");
            assert!(
                xfcc.ends_with(FORWARDED_SUBJECT),
                "{listener} {proto}: {xfcc:?}"
            );
            assert_eq!(xfcc.len(), "Hash=".len() + 64 + FORWARDED_SUBJECT.len());
        }
    }
    // Another CA's and an expired certificate: no connection on either listener.
    for listener in ["required", "optional"] {
        for (what, cert) in [("another CA's", &s.stranger), ("expired", &s.expired)] {
            let g = s.get(listener, Some(cert), &[]);
            assert_eq!(g.status, "000", "{listener}: {what} certificate admitted");
        }
    }
    // None: refused where required; served as without client auth where optional,
    // and a client's own X-Forwarded-Client-Cert does not reach the backend.
    assert_eq!(s.get("required", None, &[]).status, "000");
    let forged = [
        "-H",
        "X-Forwarded-Client-Cert: Hash=forged;Subject=\"CN=admin\"",
    ];
    let g = s.get("optional", None, &forged);
    assert_eq!(g.status, "200", "{}", g.body);
    assert_eq!(g.echoed("x-forwarded-client-cert"), None, "{}", g.body);
    let g = s.get("optional", Some(&s.valid), &forged);
    let xfcc = g.echoed("x-forwarded-client-cert").unwrap_or_default();
    assert!(!xfcc.contains("forged"), "{xfcc:?}");
}

#[test]
fn a_new_client_ca_applies_to_the_next_handshakes() {
    let s = setup();
    assert_eq!(s.get("required", Some(&s.valid), &[]).status, "200");
    assert_eq!(s.get("required", Some(&s.stranger), &[]).status, "000");
    // The Secret now holds the other CA (written whole, then moved in).
    let next = s.ca_dir.join("ca.crt.next");
    std::fs::copy(s.other_ca.join("ca.crt"), &next).unwrap();
    std::fs::rename(&next, s.ca_dir.join("ca.crt")).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the other CA's client admitted",
        || (s.get("required", Some(&s.stranger), &[]).status == "200").then_some(()),
    );
    assert_eq!(s.get("required", Some(&s.valid), &[]).status, "000");
}

#[test]
fn a_client_ca_without_ca_crt_is_a_located_error() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let empty = tempfile::tempdir().unwrap();
    let out = Gateway::check(&format!(
        "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"], client_ca = \"{}\" }}\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n",
        tls.display(),
        empty.path().display()
    ));
    assert_ne!(out.code, Some(0));
    // `tls = { certs = ["<dir>"], client_ca = "<dir>" }`: the column of client_ca's value.
    let column = r#"tls = { certs = [""#.len()
        + tls.display().to_string().len()
        + r#""], client_ca = "#.len()
        + 1;
    let want = format!(":4:{column}: ");
    let file = format!("cannot read {}/ca.crt", empty.path().display());
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&want) && l.contains(&file)),
        "{want:?} and {file:?} not on one line of {}",
        out.stderr
    );
}

#[test]
fn no_ca_names_are_sent_in_the_request() {
    let s = setup();
    for version in ["-tls1_2", "-tls1_3"] {
        let out = Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", s.gw.port("optional")))
            .args(["-servername", "localhost", version])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout);
        // A certificate request came (its signature algorithms), without CA names.
        assert!(
            text.contains("Requested Signature Algorithms")
                && text.contains("No client certificate CA names sent"),
            "{version}: {text}"
        );
    }
}
