//! Response compression through real clients on HTTP/1.1 and HTTP/2, decoded by real
//! decoders (Debian's `gzip`, `brotli` and `zstd` commands, and curl `--compressed`)
//! and compared byte for byte with hello's body: the coding negotiated from
//! `Accept-Encoding` with q-values, `Vary`, no `Content-Length` on a compressed body,
//! a 10 MiB body streamed (the gateway's peak memory does not grow by its size), and the responses that are never compressed (a client that
//! accepts nothing, `q=0`, `HEAD`, a small body, a type not listed, a route with
//! `compression = false`).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Stdio};

use e2e::{request_to, Certs, Client, Gateway, Hello, Proto, Response};
use http::Method;

const ROUTES: &str = r#"
[[route]]
path_prefix = "/raw"
upstream = "app"
compression = false

[[route]]
upstream = "app"
"#;

struct Setup {
    certs: Certs,
    _hello: Hello,
    gw: Gateway,
    client: Client,
}

fn setup() -> Setup {
    let certs = Certs::new();
    let hello = Hello::spawn("app");
    let gw = Gateway::start(&format!(
        "{}[upstream.app]\nservers = [\"{}\"]\n{ROUTES}",
        e2e::https_listener(&certs.server("compression", &["localhost"])),
        hello.addr
    ));
    let client = Client::new(&certs.ca());
    Setup {
        certs,
        _hello: hello,
        gw,
        client,
    }
}

async fn send(
    s: &Setup,
    proto: Proto,
    method: Method,
    target: &str,
    accept: Option<&str>,
) -> Response {
    let mut conn = s
        .client
        .connect(s.gw.addr("https"), Some("localhost"), proto)
        .await
        .unwrap();
    let accept: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
    conn.send(request_to(proto, &method, "localhost", target, &accept))
        .await
        .unwrap()
}

/// `body` decoded by Debian's decoder for `coding`.
fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let tool = match coding {
        "gzip" => "gzip",
        "br" => "brotli",
        "zstd" => "zstd",
        other => panic!("no decoder for {other:?}"),
    };
    let mut child = Command::new(tool)
        .args(["-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool} (e2e/setup.sh installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} -d failed on the body");
    out.stdout
}

fn vary(resp: &Response) -> String {
    resp.headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn each_coding_decodes_to_the_backends_body() {
    let s = setup();
    let plain = send(&s, Proto::H1, Method::GET, "/t?text=65536", None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body.len(), 65536);
    assert!(
        plain.headers.get("content-encoding").is_none(),
        "none asked for"
    );
    assert!(
        vary(&plain).contains("accept-encoding"),
        "{:?}",
        plain.headers
    );
    for proto in [Proto::H1, Proto::H2] {
        // (Accept-Encoding, the coding chosen)
        for (accept, want) in [
            ("gzip", "gzip"),
            ("br", "br"),
            ("zstd", "zstd"),
            ("gzip, deflate, br, zstd", "zstd"),
            ("gzip;q=1, br;q=0.5", "gzip"),
            ("br;q=0.2, gzip;q=0.1", "br"),
            ("*", "zstd"),
            ("zstd;q=0, *;q=0.5", "br"),
            ("GZIP", "gzip"),
        ] {
            let resp = send(&s, proto, Method::GET, "/t?text=65536", Some(accept)).await;
            let what = format!("{proto:?} accept-encoding: {accept}");
            assert_eq!(resp.status, 200, "{what}");
            assert_eq!(resp.header("content-encoding"), want, "{what}");
            assert!(resp.headers.get("content-length").is_none(), "{what}");
            assert!(vary(&resp).contains("accept-encoding"), "{what}");
            assert!(
                resp.body.len() < 65536 / 4,
                "{what}: {} bytes",
                resp.body.len()
            );
            assert!(
                decode(want, &resp.body) == plain.body,
                "{what}: decodes to hello's body"
            );
        }
    }
}

#[tokio::test]
async fn what_is_never_compressed() {
    let s = setup();
    for proto in [Proto::H1, Proto::H2] {
        let cases: [(Method, &str, Option<&str>, &str); 6] = [
            (
                Method::GET,
                "/t?text=65536",
                Some("identity"),
                "only identity accepted",
            ),
            (
                Method::GET,
                "/t?text=65536",
                Some("gzip;q=0, br;q=0, zstd;q=0"),
                "q=0",
            ),
            (Method::GET, "/t?text=65536", Some("*;q=0"), "*;q=0"),
            (
                Method::GET,
                "/t?text=1000",
                Some("gzip"),
                "under min_size (1 KiB)",
            ),
            (
                Method::GET,
                "/t?size=65536",
                Some("gzip"),
                "application/octet-stream",
            ),
            (
                Method::GET,
                "/raw?text=65536",
                Some("gzip"),
                "compression = false",
            ),
        ];
        for (method, target, accept, why) in cases {
            let resp = send(&s, proto, method, target, accept).await;
            assert_eq!(resp.status, 200, "{proto:?} {why}");
            assert!(
                resp.headers.get("content-encoding").is_none(),
                "{proto:?} {why}: {:?}",
                resp.headers
            );
        }
        let head = send(&s, proto, Method::HEAD, "/t?text=65536", Some("gzip")).await;
        assert!(
            head.headers.get("content-encoding").is_none(),
            "{proto:?} HEAD"
        );
        assert_eq!(head.header("content-length"), "65536", "{proto:?} HEAD");
    }
}

#[tokio::test]
async fn a_10_mib_body_is_streamed_compressed() {
    let s = setup();
    const SIZE: usize = 10 << 20;
    let target = format!("/t?text={SIZE}");
    let plain = send(&s, Proto::H1, Method::GET, &target, None).await;
    assert_eq!(plain.body.len(), SIZE);
    let before = peak_rss_kib(s.gw.pid());
    for proto in [Proto::H1, Proto::H2] {
        let resp = send(&s, proto, Method::GET, &target, Some("gzip")).await;
        assert_eq!(resp.header("content-encoding"), "gzip", "{proto:?}");
        if proto == Proto::H1 {
            assert_eq!(resp.header("transfer-encoding"), "chunked");
        }
        assert!(decode("gzip", &resp.body) == plain.body, "{proto:?}");
    }
    // Held whole, the body alone would add 10 MiB to the gateway's peak.
    let grown = peak_rss_kib(s.gw.pid()) - before;
    assert!(grown < 7 * 1024, "the gateway's peak RSS grew {grown} KiB");
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn curl_compressed_gets_the_same_body() {
    let s = setup();
    let url = format!("https://localhost:{}/t?text=100000", s.gw.port("https"));
    let curl = |compressed: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--cacert"])
            .arg(s.certs.ca())
            .args(["-D", "-", "-o", "-"]);
        if compressed {
            cmd.arg("--compressed");
        }
        let out = cmd.arg(&url).output().expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let split = |out: &[u8]| {
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&out[..at]).to_ascii_lowercase(),
            out[at + 4..].to_vec(),
        )
    };
    let (head, body) = split(&curl(true));
    assert!(head.contains("content-encoding: "), "{head}");
    let (_, plain) = split(&curl(false));
    assert_eq!(plain.len(), 100_000);
    assert!(body == plain, "curl --compressed decodes to the same body");
}
