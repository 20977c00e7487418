//! Route filters through real clients on HTTP/1.1 and HTTP/2: request and response
//! header modifiers, path and Host rewrites, redirects answered by the gateway, and CORS
//! (a preflight answered here and never sent upstream, an actual request's headers, an
//! origin outside the policy getting none). What the backend saw is read off hello's
//! echo (`?echo_headers=1`) and its `x-hello-request-line`: a filter that did not run,
//! or ran on the wrong side, shows there.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use e2e::{request_to, Certs, Client, Gateway, Hello, Proto, Response};
use http::Method;

const ROUTES: &str = r#"
[[route]]
path_prefix = "/hdr"
upstream = "app"
request_headers = { set = { "x-env" = "prod" }, add = { "x-tag" = "b" }, remove = ["x-debug"] }
response_headers = { set = { "cache-control" = "no-store" }, add = { "x-frame" = "deny" }, remove = ["x-hello-connection"] }

[[route]]
path_prefix = "/old"
upstream = "app"
rewrite = { path_prefix = "/new" }

[[route]]
path = { exact = "/fixed" }
upstream = "app"
rewrite = { path = "/elsewhere", host = "internal.example" }

[[route]]
path_prefix = "/moved"
redirect = { scheme = "https", host = "new.example.com", port = 8443, path_prefix = "/fresh", status = 301 }

[[route]]
path_prefix = "/go"
redirect = { host = "other.example" }

[[route]]
path_prefix = "/api"
upstream = "app"
cors = { allow_origins = ["https://app.example.com", "https://*.example.com"], allow_methods = ["GET", "POST"], allow_headers = ["content-type"], expose_headers = ["x-request-id"], allow_credentials = true, max_age = "1h" }

[[route]]
upstream = "app"
"#;

struct Setup {
    _certs: Certs,
    hello: Hello,
    gw: Gateway,
    client: Client,
}

fn setup() -> Setup {
    let certs = Certs::new();
    let hello = Hello::spawn("app");
    let gw = Gateway::start(&format!(
        "{}[upstream.app]\nservers = [\"{}\"]\n{ROUTES}",
        e2e::https_listener(&certs.server("filters", &["localhost"])),
        hello.addr
    ));
    let client = Client::new(&certs.ca());
    Setup {
        _certs: certs,
        hello,
        gw,
        client,
    }
}

async fn send(
    s: &Setup,
    proto: Proto,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut conn = s
        .client
        .connect(s.gw.addr("https"), Some("localhost"), proto)
        .await
        .unwrap();
    conn.send(request_to(proto, &method, "shop.test", target, headers))
        .await
        .unwrap()
}

/// The values of `name` in hello's echo of the request headers it got.
fn echoed(resp: &Response, name: &str) -> Vec<String> {
    resp.text()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_owned)
        .collect()
}

fn all(resp: &Response, name: &str) -> Vec<String> {
    resp.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn header_modifiers_change_what_the_backend_and_the_client_see() {
    let s = setup();
    for proto in [Proto::H1, Proto::H2] {
        let resp = send(
            &s,
            proto,
            Method::GET,
            "/hdr?echo_headers=1",
            &[("x-env", "dev"), ("x-tag", "a"), ("x-debug", "1")],
        )
        .await;
        assert_eq!(resp.status, 200, "{proto:?}");
        assert_eq!(echoed(&resp, "x-env"), ["prod"], "set replaces: {proto:?}");
        assert_eq!(echoed(&resp, "x-tag"), ["a", "b"], "add appends: {proto:?}");
        assert!(echoed(&resp, "x-debug").is_empty(), "removed: {proto:?}");
        assert_eq!(all(&resp, "cache-control"), ["no-store"], "{proto:?}");
        assert_eq!(all(&resp, "x-frame"), ["deny"], "{proto:?}");
        assert!(all(&resp, "x-hello-connection").is_empty(), "{proto:?}");
        // Another route's requests are not touched.
        let other = send(
            &s,
            proto,
            Method::GET,
            "/plain?echo_headers=1",
            &[("x-debug", "1")],
        )
        .await;
        assert_eq!(echoed(&other, "x-debug"), ["1"], "{proto:?}");
        assert!(all(&other, "cache-control").is_empty(), "{proto:?}");
    }
}

#[tokio::test]
async fn rewrites_change_the_path_and_host_the_backend_gets() {
    let s = setup();
    for proto in [Proto::H1, Proto::H2] {
        let resp = send(&s, proto, Method::GET, "/old/a/b?echo_headers=1&x=1", &[]).await;
        assert_eq!(resp.status, 200, "{proto:?}");
        assert_eq!(
            resp.header("x-hello-request-line"),
            "GET /new/a/b?echo_headers=1&x=1 HTTP/1.1",
            "the prefix is replaced, the query kept: {proto:?}"
        );
        assert_eq!(echoed(&resp, "host"), ["shop.test"], "{proto:?}");
        let fixed = send(&s, proto, Method::GET, "/fixed?echo_headers=1", &[]).await;
        assert_eq!(
            fixed.header("x-hello-request-line"),
            "GET /elsewhere?echo_headers=1 HTTP/1.1",
            "{proto:?}"
        );
        assert_eq!(echoed(&fixed, "host"), ["internal.example"], "{proto:?}");
        assert_eq!(
            echoed(&fixed, "x-forwarded-host"),
            ["shop.test"],
            "the client's host stays in X-Forwarded-Host: {proto:?}"
        );
    }
}

#[tokio::test]
async fn redirects_are_answered_by_the_gateway() {
    let s = setup();
    for proto in [Proto::H1, Proto::H2] {
        let before = s.hello.requests();
        let moved = send(&s, proto, Method::GET, "/moved/x?y=1", &[]).await;
        assert_eq!(moved.status, 301, "{proto:?}");
        assert_eq!(
            moved.header("location"),
            "https://new.example.com:8443/fresh/x?y=1",
            "{proto:?}"
        );
        let go = send(&s, proto, Method::GET, "/go/z", &[]).await;
        assert_eq!(go.status, 302, "the default status: {proto:?}");
        assert_eq!(
            go.header("location"),
            "https://other.example/go/z",
            "the request's scheme and path: {proto:?}"
        );
        assert!(go.body.is_empty(), "{proto:?}");
        assert_eq!(
            s.hello.requests(),
            before,
            "nothing went upstream: {proto:?}"
        );
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_and_actual_requests_get_the_headers() {
    let s = setup();
    let preflight = [
        ("origin", "https://shop.example.com"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    for proto in [Proto::H1, Proto::H2] {
        let before = s.hello.requests();
        let resp = send(&s, proto, Method::OPTIONS, "/api/items", &preflight).await;
        assert_eq!(resp.status, 204, "{proto:?}");
        assert_eq!(s.hello.requests(), before, "never sent upstream: {proto:?}");
        let h = |name| resp.header(name).to_owned();
        assert_eq!(h("access-control-allow-origin"), "https://shop.example.com");
        assert_eq!(h("access-control-allow-methods"), "GET, POST");
        assert_eq!(h("access-control-allow-headers"), "content-type");
        assert_eq!(h("access-control-allow-credentials"), "true");
        assert_eq!(h("access-control-max-age"), "3600");
        assert!(resp.headers.get("content-length").is_none_or(|v| v == "0"));

        let actual = send(
            &s,
            proto,
            Method::GET,
            "/api/items",
            &[("origin", "https://app.example.com")],
        )
        .await;
        assert_eq!(actual.status, 200, "{proto:?}");
        assert_eq!(
            actual.header("access-control-allow-origin"),
            "https://app.example.com",
            "the origin itself, never * with credentials: {proto:?}"
        );
        assert_eq!(
            actual.header("access-control-expose-headers"),
            "x-request-id"
        );
        assert!(
            all(&actual, "vary").iter().any(|v| v.contains("origin")),
            "{proto:?}"
        );

        let outside = send(
            &s,
            proto,
            Method::OPTIONS,
            "/api/items",
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
        assert!(
            outside.headers.get("access-control-allow-origin").is_none(),
            "{proto:?}"
        );
        assert_eq!(
            s.hello.requests(),
            before + 2,
            "an origin outside the policy is an ordinary request: {proto:?}"
        );
    }
}
