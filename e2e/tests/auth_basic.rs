//! Basic auth on a route, with htpasswd files written by Apache's `htpasswd -B`
//! (Debian's apache2-utils): missing, wrong and right credentials, the `Authorization`
//! header passed on, the users file changed live the way a Secret is, non-bcrypt entries
//! refused at load with their line, and auth counted before the route's rate limit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{curl, wait_until, Gateway, Hello};

/// `htpasswd -B -b [-c] FILE USER PASSWORD` (bcrypt), or with `scheme` (`-m`: MD5).
fn htpasswd(file: &Path, create: bool, scheme: &str, user: &str, password: &str) {
    let mut cmd = Command::new("htpasswd");
    cmd.arg(scheme).arg("-b");
    if create {
        cmd.arg("-c");
    }
    let out = cmd
        .arg(file)
        .args([user, password])
        .output()
        .expect("run htpasswd (e2e/setup.sh installs apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gateway(hello: &Hello, users: &Path, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.hello]\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ basic = {{ users = \"{}\", realm = \"admin\" }} }}\n{extra}\n",
        hello.addr,
        users.display()
    ))
}

fn get(gw: &Gateway, user: Option<&str>) -> e2e::Curled {
    let url = format!("http://127.0.0.1:{}/?echo_headers=1", gw.port("http"));
    let mut extra = vec!["-D", "-"];
    if let Some(user) = user {
        extra.extend(["-u", user]);
    }
    curl("127.0.0.1", &url, &extra)
}

#[test]
fn only_listed_users_with_their_password_pass() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("auth");
    htpasswd(&users, true, "-B", "ann", "correct horse");
    let gw = gateway(&hello, &users, "");
    let challenge = "www-authenticate: Basic realm=\"admin\", charset=\"UTF-8\"";
    for user in [None, Some("ann:wrong"), Some("bo:correct horse")] {
        let got = get(&gw, user);
        assert_eq!(got.status, "401", "{user:?}: {}", got.body);
        assert!(
            got.body
                .to_ascii_lowercase()
                .contains(&challenge.to_ascii_lowercase()),
            "{}",
            got.body
        );
        assert!(
            got.body.ends_with(r#"{"error":"unauthorized"}"#),
            "{}",
            got.body
        );
    }
    let got = get(&gw, Some("ann:correct horse"));
    assert_eq!(got.status, "200", "{}", got.body);
    // The header reaches the backend unchanged.
    assert!(
        got.body
            .contains("authorization: Basic YW5uOmNvcnJlY3QgaG9yc2U="),
        "{}",
        got.body
    );
    assert_eq!(hello.requests(), 1, "refused requests never reached hello");
}

#[test]
fn a_changed_users_file_applies_live() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("auth");
    htpasswd(&users, true, "-B", "ann", "one");
    let gw = gateway(&hello, &users, "");
    assert_eq!(get(&gw, Some("ann:one")).status, "200");
    assert_eq!(get(&gw, Some("bo:two")).status, "401");
    // The Secret's new content, written whole and moved in.
    let next = dir.path().join("auth.next");
    std::fs::copy(&users, &next).expect("copy");
    htpasswd(&next, false, "-B", "bo", "two");
    htpasswd(&next, false, "-B", "ann", "changed");
    std::fs::rename(&next, &users).expect("rename");
    wait_until(Duration::from_secs(10), "bo admitted", || {
        (get(&gw, Some("bo:two")).status == "200").then_some(())
    });
    assert_eq!(
        get(&gw, Some("ann:one")).status,
        "401",
        "the old password, cached before, is gone"
    );
    assert_eq!(get(&gw, Some("ann:changed")).status, "200");
}

#[test]
fn other_schemes_are_refused_at_load_with_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("auth");
    htpasswd(&users, true, "-B", "ann", "one");
    htpasswd(&users, false, "-m", "bo", "two");
    let out = Gateway::check(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n\
         [[route]]\nupstream = \"u\"\nauth = {{ basic = {{ users = \"{}\" }} }}\n",
        users.display()
    ));
    assert_ne!(out.code, Some(0));
    let want = format!(
        ":10:28: bad auth users file: {}:2: user \"bo\" has a MD5 ($apr1$) password; only bcrypt",
        users.display()
    );
    assert!(out.stderr.contains(&want), "{}", out.stderr);
}

#[test]
fn requests_refused_by_auth_do_not_count_against_the_rate_limit() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("auth");
    htpasswd(&users, true, "-B", "ann", "one");
    let limit =
        "rate_limit = { requests = 1, per = \"1m\", burst = 0, key = \"header:authorization\" }";
    let gw = gateway(&hello, &users, limit);
    for _ in 0..3 {
        assert_eq!(get(&gw, Some("ann:wrong")).status, "401");
    }
    assert_eq!(get(&gw, Some("ann:one")).status, "200");
    assert_eq!(get(&gw, Some("ann:one")).status, "429");
}

#[test]
fn the_challenge_holds_over_https_on_http1_and_http2() {
    let hello = Hello::spawn("h");
    let certs = e2e::Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("auth");
    htpasswd(&users, true, "-B", "ann", "one");
    let gw = Gateway::start(&format!(
        "{}\n[upstream.hello]\nservers = [\"{}\"]\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ basic = {{ users = \"{}\", realm = \"admin\" }} }}\n",
        e2e::https_listener(&tls),
        hello.addr,
        users.display()
    ));
    let url = format!("https://127.0.0.1:{}/", gw.port("https"));
    for version in ["--http1.1", "--http2"] {
        let refused = curl("127.0.0.1", &url, &[version, "-D", "-"]);
        assert_eq!(refused.status, "401", "{version}: {}", refused.body);
        assert!(
            refused
                .body
                .to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"admin\""),
            "{version}: {}",
            refused.body
        );
        let wanted = if version == "--http2" {
            "HTTP/2 401"
        } else {
            "HTTP/1.1 401"
        };
        assert!(
            refused.body.starts_with(wanted),
            "{version}: {}",
            refused.body
        );
        let admitted = curl("127.0.0.1", &url, &[version, "-u", "ann:one"]);
        assert_eq!(admitted.status, "200", "{version}: {}", admitted.body);
    }
}
