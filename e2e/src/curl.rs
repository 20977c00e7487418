//! Requests with Debian's curl: from a chosen loopback source address (`--interface`),
//! with its TLS, HTTP/2 and PROXY protocol options, as a real client sends them.

use std::process::{Command, Output, Stdio};

/// What curl got: the status ("000" when there was no response) and the body.
#[derive(Debug)]
pub struct Curled {
    pub status: String,
    pub body: String,
}

impl Curled {
    /// The value of line `name: value` in a body of `name: value` lines (hello's
    /// `?echo_headers=1`), if there is one.
    pub fn echoed(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    }
}

/// The curl command for `url` from source address `from` (`-k`: the tests' servers
/// use test certificates; a 10 s bound), with `extra` arguments.
pub fn curl_command(from: &str, url: &str, extra: &[&str]) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sk", "--max-time", "10", "--interface", from])
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// What a finished [`curl_command`] got.
pub fn curled(out: Output) -> Curled {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curled {
        status: status.to_owned(),
        body: body.to_owned(),
    }
}

/// One request with curl from source address `from`.
pub fn curl(from: &str, url: &str, extra: &[&str]) -> Curled {
    curled(
        curl_command(from, url, extra)
            .output()
            .expect("run curl (e2e/setup.sh installs it)"),
    )
}
