//! Test certificates: a CA and server certificate dirs laid out like TLS Secrets,
//! made with the repository's own `certs/dev-certs.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Server key algorithm.
#[derive(Debug, Clone, Copy)]
pub enum KeyType {
    Ecdsa,
    Rsa,
}

/// Private key encoding in `tls.key`.
#[derive(Debug, Clone, Copy)]
pub enum KeyFormat {
    /// `PRIVATE KEY`
    Pkcs8,
    /// `RSA PRIVATE KEY`
    Pkcs1,
    /// `EC PRIVATE KEY`
    Sec1,
}

/// A temporary directory holding one dev CA and any number of server cert dirs.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Default for Certs {
    fn default() -> Self {
        Self::new()
    }
}

impl Certs {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The CA certificate (PEM) that signs every server cert made here.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    /// `<tmp>/<name>`, where [`Certs::server`] puts a cert dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An ECDSA P-256 certificate for `sans` with a PKCS#8 key, in dir `name`.
    pub fn server(&self, name: &str, sans: &[&str]) -> PathBuf {
        self.server_with(name, sans, KeyType::Ecdsa, KeyFormat::Pkcs8)
    }

    /// A certificate for `sans` with the given key, in dir `name`.
    pub fn server_with(
        &self,
        name: &str,
        sans: &[&str],
        key: KeyType,
        format: KeyFormat,
    ) -> PathBuf {
        let out = self.path(name);
        dev_certs(&out, &self.dir.path().join("ca"), sans, key, format);
        out
    }

    /// [`Certs::server_with`], valid for `days` days from now (the default is 30).
    pub fn server_for_days(
        &self,
        name: &str,
        sans: &[&str],
        key: KeyType,
        format: KeyFormat,
        days: u32,
    ) -> PathBuf {
        let out = self.path(name);
        run_dev_certs(
            &out,
            &self.dir.path().join("ca"),
            sans,
            key,
            format,
            Some(days),
        );
        out
    }

    /// A client certificate (ECDSA P-256, `clientAuth`, PKCS#8 key) with the subject
    /// `/CN=cn`, signed by this CA, in dir `name`: `tls.crt`, `tls.key`, and the CA's
    /// `ca.crt`.
    pub fn client(&self, name: &str, cn: &str) -> PathBuf {
        let ca = self.dir.path().join("ca");
        if !ca.join("ca.key").exists() {
            // dev-certs.sh makes the CA along with a first (here unused) server cert.
            self.server(".ca", &["localhost"]);
        }
        let out = self.path(name);
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::write(
            out.join("client.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("write client.ext");
        let subject = format!("/CN={cn}");
        let (ca_crt, ca_key, ca_srl) = (ca.join("ca.crt"), ca.join("ca.key"), ca.join("ca.srl"));
        openssl(
            &out,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "tls.key",
                "-out",
                "client.csr",
                "-subj",
                &subject,
            ],
        );
        openssl(
            &out,
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                &ca_crt.display().to_string(),
                "-CAkey",
                &ca_key.display().to_string(),
                "-CAserial",
                &ca_srl.display().to_string(),
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "client.ext",
                "-out",
                "tls.crt",
            ],
        );
        std::fs::copy(&ca_crt, out.join("ca.crt")).expect("copy ca.crt");
        out
    }

    /// A self-signed ECDSA certificate valid only from `not_before` to `not_after`
    /// (`(year, month, day)`), in dir `name`.
    pub fn server_valid(
        &self,
        name: &str,
        sans: &[&str],
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> PathBuf {
        self.self_signed(name, sans, |params| {
            params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
            params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        })
    }

    /// A self-signed ECDSA certificate for `sans`, valid from a day ago until `left`
    /// from now, in dir `name`.
    pub fn server_expiring_in(&self, name: &str, sans: &[&str], left: Duration) -> PathBuf {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        self.self_signed(name, sans, |params| {
            let epoch = rcgen::date_time_ymd(1970, 1, 1);
            params.not_before = epoch + now.saturating_sub(Duration::from_secs(86_400));
            params.not_after = epoch + now + left;
        })
    }

    /// A self-signed ECDSA certificate for `sans` whose validity `validity` sets, in dir
    /// `name`.
    fn self_signed(
        &self,
        name: &str,
        sans: &[&str],
        validity: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> PathBuf {
        let out = self.path(name);
        std::fs::create_dir_all(&out).expect("mkdir");
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        validity(&mut params);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-sign");
        std::fs::write(out.join("tls.crt"), cert.pem()).expect("write crt");
        std::fs::write(out.join("tls.key"), key.serialize_pem()).expect("write key");
        out
    }
}

/// Runs `certs/dev-certs.sh` from this repository.
pub fn dev_certs(out: &Path, ca: &Path, sans: &[&str], key: KeyType, format: KeyFormat) {
    run_dev_certs(out, ca, sans, key, format, None);
}

/// Runs `certs/dev-certs.sh`, with `--days` when `days` is given.
fn run_dev_certs(
    out: &Path,
    ca: &Path,
    sans: &[&str],
    key: KeyType,
    format: KeyFormat,
    days: Option<u32>,
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs/dev-certs.sh");
    let key = match key {
        KeyType::Ecdsa => "ecdsa",
        KeyType::Rsa => "rsa",
    };
    let format = match format {
        KeyFormat::Pkcs8 => "pkcs8",
        KeyFormat::Pkcs1 => "pkcs1",
        KeyFormat::Sec1 => "sec1",
    };
    let output = Command::new("bash")
        .arg(&script)
        .arg("--out")
        .arg(out)
        .arg("--ca")
        .arg(ca)
        .args([
            "--names",
            &sans.join(","),
            "--key",
            key,
            "--key-format",
            format,
        ])
        .args(
            days.map(|d| ["--days".to_owned(), d.to_string()])
                .iter()
                .flatten(),
        )
        .output()
        .expect("run certs/dev-certs.sh");
    assert!(
        output.status.success(),
        "dev-certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs Debian's `openssl` with `args` in `dir` and returns its stdout; panics with its
/// stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (e2e/setup.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
