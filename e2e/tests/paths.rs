//! Paths are normalized before routing (RFC 3986 §6.2.2, repeated slashes merged by
//! default): routes match, and backends receive, the same normalized path with the
//! query as it came, over HTTP/1.1 (plain and TLS) and HTTP/2; a `..` above the root
//! is refused.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use e2e::{exchange, Certs, Client, Gateway, Hello, Proto, Transport};

/// `/public` and `/admin` go to two replicas; `server` is the `[server]` table's body.
fn gateway(certs: &Certs, public: &Hello, admin: &Hello, server: &str) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    Gateway::start(&format!(
        r#"
[server]
{server}

[[listener]]
name = "web"
listen = "127.0.0.1:{{{{port:web}}}}"

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}

[upstream.public]
servers = ["{public}"]

[upstream.admin]
servers = ["{admin}"]

[[route]]
path_prefix = "/public"
upstream = "public"

[[route]]
path_prefix = "/admin"
upstream = "admin"
"#,
        tls = tls.display(),
        public = public.addr,
        admin = admin.addr,
    ))
}

/// What a request for a path must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Served by this replica, which received this request line.
    Served(&'static str, &'static str),
    /// This status from the gateway itself.
    Status(u16),
}
use Expect::*;

/// Sends GET `path` over HTTP/1.1 on TCP and TLS and over HTTP/2, and checks each
/// answer against `expect`; returns the failures.
async fn check(gw: &Gateway, certs: &Certs, path: &str, expect: Expect) -> Vec<String> {
    let mut got = Vec::new();
    for transport in [Transport::Tcp, Transport::Tls] {
        let port = gw.port(if transport == Transport::Tcp {
            "web"
        } else {
            "https"
        });
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let ca = certs.ca();
        let reply =
            tokio::task::spawn_blocking(move || exchange(port, transport, &ca, request.as_bytes()))
                .await
                .unwrap();
        let seen = (
            reply.status.unwrap_or(0),
            reply.header("x-hello-instance").unwrap_or("").to_owned(),
            reply
                .header("x-hello-request-line")
                .unwrap_or("")
                .to_owned(),
        );
        got.push((format!("{transport:?}"), seen));
    }
    let h2 = Client::new(&certs.ca())
        .get(gw.addr("https"), "localhost", path, Proto::H2)
        .await;
    let seen = (
        h2.status,
        h2.header("x-hello-instance").to_owned(),
        h2.header("x-hello-request-line").to_owned(),
    );
    got.push(("H2".to_owned(), seen));
    got.into_iter()
        .filter(|(_, (status, instance, line))| match expect {
            Served(want_instance, want_line) => {
                (*status, instance.as_str(), line.as_str()) != (200, want_instance, want_line)
            }
            Status(code) => *status != code || !instance.is_empty(),
        })
        .map(|(how, seen)| format!("{how} {path}: expected {expect:?}, got {seen:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_backends_see_the_normalized_path() {
    let (public, admin) = (Hello::spawn("public"), Hello::spawn("admin"));
    let certs = Certs::new();
    let gw = gateway(&certs, &public, &admin, "");
    let mut failures = Vec::new();
    for (path, expect) in [
        ("/public/x", Served("public", "GET /public/x HTTP/1.1")),
        ("/public/../admin", Served("admin", "GET /admin HTTP/1.1")),
        (
            "/public/%2e%2E/admin",
            Served("admin", "GET /admin HTTP/1.1"),
        ),
        (
            "/public/./.././admin/",
            Served("admin", "GET /admin/ HTTP/1.1"),
        ),
        (
            "/%70ublic/%7Eu",
            Served("public", "GET /public/~u HTTP/1.1"),
        ),
        ("//admin//x", Served("admin", "GET /admin/x HTTP/1.1")),
        (
            "/public/..%2Fadmin",
            Served("public", "GET /public/..%2Fadmin HTTP/1.1"),
        ),
        (
            "/public/%2fadmin%5c",
            Served("public", "GET /public/%2Fadmin%5C HTTP/1.1"),
        ),
        (
            "/public/./x?next=/../admin//%7e",
            Served("public", "GET /public/x?next=/../admin//%7e HTTP/1.1"),
        ),
        ("/public/x/..", Served("public", "GET /public/ HTTP/1.1")),
        ("/..", Status(400)),
        ("/../admin", Status(400)),
        ("/public/../../admin", Status(400)),
        ("/public/%2e%2e/%2e%2e/admin", Status(400)),
    ] {
        failures.extend(check(&gw, &certs, path, expect).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_slashes_off_keeps_empty_segments() {
    let (public, admin) = (Hello::spawn("public"), Hello::spawn("admin"));
    let certs = Certs::new();
    let gw = gateway(&certs, &public, &admin, "merge_slashes = false");
    let mut failures = Vec::new();
    for (path, expect) in [
        ("//admin", Status(404)),
        ("/admin//x", Served("admin", "GET /admin//x HTTP/1.1")),
        ("/admin//../x", Served("admin", "GET /admin/x HTTP/1.1")),
        ("/public/./%7e", Served("public", "GET /public/~ HTTP/1.1")),
    ] {
        failures.extend(check(&gw, &certs, path, expect).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
