//! Hostile requests, over plain TCP and over TLS: each gets its expected status (or a
//! closed connection), the ones refused never reach the backend, which counts every
//! request it receives, and the ones served reach it with the request line expected.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use std::io::Write;

use e2e::{
    connect, exchange, read_reply, read_until_close, wait_until, web_and_https_config, Certs,
    Gateway, Hello, Transport,
};

/// What a hostile request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Served by the backend (200), which received this request line.
    Served(&'static str),
    /// Refused by the gateway with this status, then the connection closed; the backend
    /// never sees it.
    Refused(u16),
    /// The connection closed without a response; the backend never sees it.
    Closed,
}
use Expect::*;

/// A gateway with the same routes on a plain and a TLS listener, tight limits so the
/// cases stay small: 8 KiB heads, 1 KiB targets, 1 KiB bodies. `header_timeout` counts
/// from the connection's start, TLS handshake included: 3 s leaves every other case
/// room on a loaded machine.
fn gateway(certs: &Certs, hello: &Hello) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let limits = r#"max_header_size = "8KiB"
max_uri_length = "1KiB"
header_timeout = "3s""#;
    Gateway::start(&web_and_https_config(&tls, hello.addr, limits, limits, ""))
}

/// `name`, the raw request, what it must get.
fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let get =
        |extra: &str| format!("GET / HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes();
    let post = |headers: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}").into_bytes()
    };
    let host = |h: &str| format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n").into_bytes();
    let target = |t: &str| format!("GET {t} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
    let big = "a".repeat(16 * 1024);
    let huge = "a".repeat(2 * 1024 * 1024);
    vec![
        ("plain GET", get(""), Served("GET / HTTP/1.1")),
        (
            "HTTP/1.0 without Host",
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            Served("GET / HTTP/1.1"),
        ),
        (
            "absolute-form target",
            b"GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Served("GET / HTTP/1.1"),
        ),
        (
            "absolute-form target with a path and a query",
            b"GET HTTP://localhost/a?b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Served("GET /a?b HTTP/1.1"),
        ),
        (
            "percent-encoded space, slash and backslash",
            target("/a%20b%2Fc%5Cd"),
            Served("GET /a%20b%2Fc%5Cd HTTP/1.1"),
        ),
        (
            "query with the characters browsers leave unencoded",
            target("/?a[]=1|2&b={3}"),
            Served("GET /?a[]=1|2&b={3} HTTP/1.1"),
        ),
        (
            "absolute-form target on HTTP/1.0 without Host",
            b"GET http://localhost/ HTTP/1.0\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "absolute-form target with another scheme",
            b"GET ftp://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "absolute-form target with userinfo",
            b"GET http://u@localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        ("target without a leading slash", target("x"), Refused(400)),
        ("relative target", target("x/y"), Refused(400)),
        ("asterisk-form target on GET", target("*"), Refused(400)),
        (
            "two spaces before the target",
            b"GET  /x HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        ("space inside the target", target("/a /b"), Refused(400)),
        (
            "text before the method",
            b"Extra lineGET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "tab between method and target",
            b"GET\t/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "space after the version",
            b"GET / HTTP/1.1 \r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "control byte before the path",
            target("\x01/"),
            Refused(400),
        ),
        ("ESC in the path", target("/a\x1bb"), Refused(400)),
        ("DEL in the path", target("/a\x7fb"), Refused(400)),
        ("broken percent-encoding", target("/%zz"), Refused(400)),
        ("truncated percent-encoding", target("/a%4"), Refused(400)),
        (
            "broken percent-encoding in the query",
            target("/?a=%g0"),
            Refused(400),
        ),
        ("fragment in the target", target("/a#b"), Refused(400)),
        ("raw UTF-8 in the path", target("/caf\u{e9}"), Refused(400)),
        ("backslash in the path", target("/a\\b"), Refused(400)),
        ("quote in the path", target("/a\"b"), Refused(400)),
        (
            "absolute-form target naming another host",
            b"GET http://other.test/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "HTTP/1.1 without Host",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "two Host headers",
            get("Host: other.test\r\n"),
            Refused(400),
        ),
        (
            "Host with a path",
            b"GET / HTTP/1.1\r\nHost: localhost/x\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "Host with a port that is not digits",
            host("localhost:abc"),
            Refused(400),
        ),
        ("Host with two colons", host("a:b:c"), Refused(400)),
        ("Host of a lone bracket", host("]"), Refused(400)),
        (
            "Host with an unclosed IPv6 literal",
            host("[::1"),
            Refused(400),
        ),
        (
            "Host with a bad percent-encoding",
            host("a%zz.test"),
            Refused(400),
        ),
        ("Host with userinfo", host("u@localhost"), Refused(400)),
        (
            "Host as an IPv6 literal",
            host("[::1]:8080"),
            Served("GET / HTTP/1.1"),
        ),
        (
            "CL.TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nG",
            ),
            Refused(400),
        ),
        (
            "TE.CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
            Refused(400),
        ),
        (
            "TE.TE: second Transfer-Encoding",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
                "0\r\n\r\n",
            ),
            Refused(400),
        ),
        (
            "TE.TE: xchunked",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "TE.TE: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "TE.TE: gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "TE.TE: identity",
            post("Transfer-Encoding: identity\r\n", ""),
            Refused(400),
        ),
        (
            "TE.TE: space before colon",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "TE.TE: folded",
            post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            Refused(400),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "repeated Content-Length",
            post("Content-Length: 2\r\nContent-Length: 2\r\n", "ab"),
            Refused(400),
        ),
        (
            "conflicting Content-Length",
            post("Content-Length: 2\r\nContent-Length: 3\r\n", "abc"),
            Refused(400),
        ),
        (
            "Content-Length list",
            post("Content-Length: 2, 2\r\n", "ab"),
            Refused(400),
        ),
        (
            "signed Content-Length",
            post("Content-Length: +2\r\n", "ab"),
            Refused(400),
        ),
        (
            "header over max_header_size",
            get(&format!("X-Big: {big}\r\n")),
            Refused(431),
        ),
        (
            "head over pingora's 1 MiB",
            get(&format!("X-Huge: {huge}\r\n")),
            Refused(400),
        ),
        (
            "target over max_uri_length",
            format!("GET /{big} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes(),
            Refused(414),
        ),
        (
            "space in a header name",
            get("Bad Header: x\r\n"),
            Refused(400),
        ),
        ("NUL in a header value", get("X-A: a\0b\r\n"), Refused(400)),
        ("obs-fold", get("X-A: a\r\n b\r\n"), Refused(400)),
        (
            "NUL in the target",
            b"GET /a\0b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "encoded NUL in the target",
            b"GET /a%00b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "CR in the target",
            b"GET /a\rb HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "LF in the target",
            b"GET /a\nb HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "encoded LF in the target",
            b"GET /a%0Ab HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "body over max_body_size",
            post("Content-Length: 2048\r\n", &"b".repeat(2048)),
            Refused(413),
        ),
        (
            "CONNECT",
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n".to_vec(),
            Refused(405),
        ),
        (
            "HTTP/2 preface on HTTP/1",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "not HTTP at all",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            Refused(400),
        ),
        (
            "head never finished (header_timeout)",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n".to_vec(),
            Closed,
        ),
    ]
}

#[test]
fn hostile_requests_get_their_status_and_never_reach_the_backend() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello);
    let mut failures = Vec::new();
    for transport in [Transport::Tcp, Transport::Tls] {
        let port = gw.port(if transport == Transport::Tcp {
            "web"
        } else {
            "https"
        });
        for (name, request, expect) in cases() {
            let before = hello.requests();
            println!("{transport:?} {name}: sending");
            let mut wire = connect(port, transport, &certs.ca());
            // The gateway may answer and close before reading everything: that is fine.
            let _ = wire.write_all(&request);
            let _ = wire.flush();
            let reply = read_reply(&mut *wire);
            // A refused request's connection is closed after the answer (nothing of the
            // request's rest is read as another request); a timeout fails the test.
            let after = match expect {
                Refused(_) if reply.status.is_some() => Some(read_until_close(&mut *wire)),
                _ => None,
            };
            drop(wire);
            let reached = hello.requests() - before;
            println!(
                "{transport:?} {name}: {:?}, reached {reached}",
                reply.status
            );
            let (status_ok, reached_ok) = match expect {
                Served(line) => (
                    reply.status == Some(200) && reply.header("x-hello-request-line") == Some(line),
                    reached == 1,
                ),
                Refused(code) => (reply.status == Some(code), reached == 0),
                Closed => (reply.status.is_none(), reached == 0),
            };
            if let Some(rest) = after.filter(|rest| !rest.is_empty()) {
                failures.push(format!(
                    "{transport:?} {name}: more after the refusal: {:?}",
                    String::from_utf8_lossy(&rest)
                ));
            }
            if !(status_ok && reached_ok) {
                let head = reply.text.lines().next().unwrap_or("").to_owned();
                let line = reply.header("x-hello-request-line");
                failures.push(format!(
                    "{transport:?} {name}: expected {expect:?}, got {:?} ({head:?}, backend saw {line:?}), {reached} reached the backend",
                    reply.status
                ));
            }
            if let Refused(code) = expect {
                // The gateway's own JSON, never internal error text.
                let body = reply.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let json = reply.header("content-type") == Some("application/json");
                if reply.status == Some(code) && !(json && body.starts_with("{\"error\":")) {
                    failures.push(format!("{transport:?} {name}: body {body:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Requests refused while their head is read (one that does not parse: 400; CONNECT:
/// 405) are answered like every other refusal: the client's X-Request-Id (a new one when
/// the head could not be parsed), the listener's HSTS, one access line, and a count in
/// gateway_requests_total.
#[test]
fn refusals_while_the_head_is_read_are_logged_counted_and_keep_their_id() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let tls = certs.server("tls", &["localhost"]);
    let hsts = "hsts = \"max-age=60\"";
    let gw = Gateway::start(&web_and_https_config(&tls, hello.addr, "", hsts, ""));
    let garbage = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n";
    let connect = b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nX-Request-Id: client-id-405\r\n\r\n";
    for (transport, listener) in [(Transport::Tcp, "web"), (Transport::Tls, "https")] {
        let port = gw.port(listener);
        let expected_hsts = (transport == Transport::Tls).then_some("max-age=60");
        let malformed = exchange(port, transport, &certs.ca(), garbage);
        assert_eq!(malformed.status, Some(400), "{}", malformed.text);
        let id = malformed.header("x-request-id").unwrap_or("").to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{listener}: a new request id: {}",
            malformed.text
        );
        assert_eq!(
            malformed.header("strict-transport-security"),
            expected_hsts,
            "{}",
            malformed.text
        );
        let refused = exchange(port, transport, &certs.ca(), connect);
        assert_eq!(refused.status, Some(405), "{}", refused.text);
        assert_eq!(refused.header("x-request-id"), Some("client-id-405"));
        assert_eq!(refused.header("strict-transport-security"), expected_hsts);
        for code in ["400", "405"] {
            let series = format!(
                "gateway_requests_total{{listener=\"{listener}\",route=\"-\",upstream=\"-\",code=\"{code}\"}}"
            );
            wait_until(Duration::from_secs(10), &series, || {
                (gw.metric(&series)? == 1.0).then_some(())
            });
        }
        let access = |log: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains(" access: ") && l.contains(&format!("listener={listener} ")))
                .map(str::to_owned)
                .collect()
        };
        let lines = wait_until(Duration::from_secs(10), "two access lines", || {
            let lines = access(&gw.log());
            (lines.len() >= 2).then_some(lines)
        });
        // One line per request (written by each connection's worker thread, so in
        // either order).
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let has = |fields: &[&str]| lines.iter().any(|l| fields.iter().all(|f| l.contains(f)));
        assert!(
            has(&[
                "method=- ",
                "host=\"-\"",
                "path=\"-\"",
                "status=400",
                &format!("request_id=\"{id}\"")
            ]),
            "{lines:#?}"
        );
        assert!(
            has(&[
                "method=CONNECT",
                "status=405",
                "request_id=\"client-id-405\""
            ]),
            "{lines:#?}"
        );
    }
    assert_eq!(hello.requests(), 0);
}
