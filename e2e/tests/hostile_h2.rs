//! The HTTP/2 twins of the hostile table (hostile.rs): every HTTP/1 refusal rule, sent
//! as an HTTP/2 request on the TLS listener, is refused (the status the table names, or
//! the stream reset by the HTTP/2 layer) and never reaches the backend; the served ones
//! reach it with the request line expected.
//!
//! What the `h2` crate will send goes through it (large headers, bodies, `CONNECT`, and
//! the served cases, whose response headers it decodes). What it refuses to send
//! (connection-specific or malformed headers, control bytes in `:path`, a missing
//! `:authority`, duplicate `content-length`) goes out as hand-made frames: the HPACK
//! literals are written without Huffman coding, and of the answer only the stream's
//! first HEADERS (its `:status`) or RST_STREAM is read.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2e::{web_and_https_config, Certs, Gateway, Hello};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A safety net for any one step (connect, request, answer): not a measured bound.
const STEP: Duration = Duration::from_secs(20);

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Served by the backend (200), which received this request line.
    Served(&'static str),
    /// This status from the gateway; the backend never sees it.
    Refused(u16),
    /// This status from the gateway for a body cut off while it streamed: the backend may
    /// have seen the request's start, never its answer.
    CutOff(u16),
    /// The stream (or the connection) reset by the HTTP/2 layer; the backend never sees it.
    Reset,
    /// The connection ended by the HTTP/2 layer before the request was all sent (a
    /// GOAWAY, or a close); the backend never sees it.
    Cut,
}
use Expect::*;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// A response: its status and the backend's `x-hello-request-line` (when decoded).
    Status(u16, Option<String>),
    /// RST_STREAM on the request's stream, or GOAWAY, with its error code.
    Reset(u32),
    /// The connection closed while the request was being written.
    Closed,
    /// Anything else (the connection closed, an error of the client itself).
    Other(String),
}

/// A gateway like hostile.rs's: 8 KiB heads, 1 KiB targets, 1 KiB bodies.
fn gateway(certs: &Certs, hello: &Hello) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let limits = r#"max_header_size = "8KiB"
max_uri_length = "1KiB""#;
    Gateway::start(&web_and_https_config(&tls, hello.addr, limits, limits, ""))
}

async fn tls(addr: SocketAddr, ca: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN");
    tls
}

/// A request the `h2` crate sends: method, `:path` (with `:authority` localhost),
/// extra headers and a body.
struct Crate {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

async fn send_with_crate(addr: SocketAddr, ca: &Path, req: Crate) -> Got {
    let io = tls(addr, ca).await;
    let (mut client, conn) = h2::client::Builder::new()
        .max_send_buffer_size(4 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let uri = if req.method == "CONNECT" {
        "localhost:443".to_owned()
    } else {
        format!("https://localhost{}", req.path)
    };
    let mut request = http::Request::builder().method(req.method).uri(uri);
    for (name, value) in &req.headers {
        request = request.header(*name, value);
    }
    let request = request.body(()).unwrap();
    let end = req.body.is_none();
    let (response, mut stream) = match client.send_request(request, end) {
        Ok(sent) => sent,
        Err(e) => return Got::Other(format!("h2 would not send it: {e}")),
    };
    if let Some(body) = req.body {
        stream.reserve_capacity(body.len());
        let _ = stream.send_data(body.into(), true);
    }
    match response.await {
        Ok(resp) => {
            let line = resp
                .headers()
                .get("x-hello-request-line")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Got::Status(resp.status().as_u16(), line)
        }
        Err(e) => match e.reason() {
            Some(reason) if e.is_reset() || e.is_go_away() => Got::Reset(reason.into()),
            _ => Got::Other(e.to_string()),
        },
    }
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push(value as u8 & 0x7f | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A header block of literals without indexing, names and values as they are (no
/// Huffman coding, no validation).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        hpack_int(&mut block, 0, 7, name.len());
        block.extend_from_slice(name.as_bytes());
        hpack_int(&mut block, 0, 7, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// Sends stream 1 with `fields` (pseudo-headers included, in order) and `body` as
/// hand-made frames; reads until that stream's status or reset.
async fn send_raw(addr: SocketAddr, ca: &Path, fields: &[(&str, &str)], body: &[u8]) -> Got {
    let mut io = tls(addr, ca).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let block = header_block(fields);
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let mut flags = if last { END_HEADERS } else { 0 };
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        if i == 0 && body.is_empty() {
            flags |= END_STREAM;
        }
        frame(&mut out, kind, flags, 1, chunk);
    }
    if !body.is_empty() {
        frame(&mut out, DATA, END_STREAM, 1, body);
    }
    // A server that ends the connection while the request is still being written may
    // have sent its GOAWAY first: read on either way.
    let written = io.write_all(&out).await.is_ok();
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = io.read_exact(&mut head).await {
            return match written {
                true => Got::Other(format!("connection ended: {e}")),
                false => Got::Closed,
            };
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if let Err(e) = io.read_exact(&mut payload).await {
            return Got::Other(format!("connection ended: {e}"));
        }
        match (kind, stream) {
            (SETTINGS, 0) if flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                let _ = io.write_all(&ack).await;
            }
            (HEADERS, 1) => {
                return match status(&payload, flags) {
                    Some(code) => Got::Status(code, None),
                    None => Got::Other(format!("undecoded HEADERS {payload:02x?}")),
                }
            }
            (RST_STREAM, 1) if len == 4 => {
                return Got::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            (GOAWAY, 0) if len >= 8 => {
                return Got::Reset(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
            }
            _ => {}
        }
    }
}

/// The `:status` of a response HEADERS payload: its first field, as h2 encodes it (the
/// static table's statuses indexed, others a literal with `:status`'s name index and a
/// Huffman-coded or plain value). A fresh connection has nothing in its dynamic table.
fn status(payload: &[u8], flags: u8) -> Option<u16> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut block = payload;
    if flags & PADDED != 0 {
        let pad = usize::from(*block.first()?);
        block = block.get(1..block.len().checked_sub(pad)?)?;
    }
    if flags & PRIORITY != 0 {
        block = block.get(5..)?;
    }
    let first = *block.first()?;
    if first & 0x80 != 0 {
        let indexed = [200, 204, 206, 304, 400, 404, 500];
        return indexed
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    // A literal whose name is static entry 8..14 (`:status`): with incremental
    // indexing (6-bit prefix), or without / never indexed (4-bit prefix).
    let name = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&name) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let value = block.get(2..2 + usize::from(len_byte & 0x7f))?;
    let digits = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        std::str::from_utf8(value).ok()?.to_owned()
    };
    digits.parse().ok()
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 Appendix B: `0`-`2` are
/// 5-bit codes 0-2, `3`-`9` 6-bit codes 25-31); stops at the padding.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
        .collect();
    let mut out = String::new();
    let mut at = 0;
    while bits.len() - at >= 5 {
        let five = bits[at..at + 5].iter().fold(0u8, |n, b| n << 1 | b);
        if five <= 2 {
            out.push(char::from(b'0' + five));
            at += 5;
            continue;
        }
        let six = five << 1 | *bits.get(at + 5)?;
        if (25..=31).contains(&six) {
            out.push(char::from(b'0' + 3 + six - 25));
            at += 6;
            continue;
        }
        break; // padding (all ones)
    }
    Some(out)
}

/// Header fields of a hand-made request, pseudo-headers first.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// The pseudo-headers of a GET for `path` on localhost, then `extra`.
fn get<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Fields<'a> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    fields
}

fn post<'a>(extra: &[(&'a str, &'a str)]) -> Fields<'a> {
    let mut fields = get("/", extra);
    fields[0].1 = "POST";
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_over_http2_are_refused_like_their_http1_twins() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello);
    let (addr, ca) = (gw.addr("https"), certs.ca());
    let big = "a".repeat(16 * 1024);
    let huge = "a".repeat(2 * 1024 * 1024);
    let authority_only = |authority: &'static str| {
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", "/"),
        ]
    };

    // name, fields and body of a hand-made request, what it must get.
    let raw: Vec<(&str, Fields<'_>, &[u8], Expect)> = vec![
        ("plain GET", get("/", &[]), b"", Served("GET / HTTP/1.1")),
        (
            "absolute-form target naming another host: :authority and Host differ",
            get("/", &[("host", "other.test")]),
            b"",
            Refused(400),
        ),
        (
            "HTTP/1.1 without Host: neither :authority nor Host",
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/")],
            b"",
            Refused(400),
        ),
        (
            "two Host headers",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("host", "localhost"),
                ("host", "other.test"),
            ],
            b"",
            Refused(400),
        ),
        (
            "Host with a path",
            authority_only("localhost/x"),
            b"",
            Reset,
        ),
        (
            "Host with a path, as a host header",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("host", "localhost/x"),
            ],
            b"",
            Refused(400),
        ),
        (
            "Host with a port that is not digits",
            authority_only("localhost:abc"),
            b"",
            Refused(400),
        ),
        ("Host with two colons", authority_only("a:b:c"), b"", Reset),
        ("Host of a lone bracket", authority_only("]"), b"", Reset),
        (
            "CL.TE, TE.CL, TE.TE, TE on HTTP/1.0: any Transfer-Encoding",
            post(&[("transfer-encoding", "chunked")]),
            b"0\r\n\r\n",
            Reset,
        ),
        (
            "repeated Content-Length",
            post(&[("content-length", "2"), ("content-length", "2")]),
            b"ab",
            Refused(400),
        ),
        (
            "conflicting Content-Length",
            post(&[("content-length", "2"), ("content-length", "3")]),
            b"abc",
            Reset,
        ),
        (
            "Content-Length list",
            post(&[("content-length", "2, 2")]),
            b"ab",
            Reset,
        ),
        (
            "signed Content-Length",
            post(&[("content-length", "+2")]),
            b"ab",
            Reset,
        ),
        (
            "space in a header name",
            get("/", &[("bad header", "x")]),
            b"",
            Reset,
        ),
        (
            "upper case in a header name",
            get("/", &[("X-Upper", "x")]),
            b"",
            Reset,
        ),
        (
            "NUL in a header value",
            get("/", &[("x-a", "a\0b")]),
            b"",
            Reset,
        ),
        (
            "obs-fold: CR LF in a header value",
            get("/", &[("x-a", "a\r\n b")]),
            b"",
            Reset,
        ),
        (
            "connection-specific header",
            get("/", &[("connection", "keep-alive")]),
            b"",
            Reset,
        ),
        ("NUL in the target", get("/a\0b", &[]), b"", Reset),
        ("CR in the target", get("/a\rb", &[]), b"", Reset),
        ("LF in the target", get("/a\nb", &[]), b"", Reset),
        ("ESC in the path", get("/a\x1bb", &[]), b"", Reset),
        ("DEL in the path", get("/a\x7fb", &[]), b"", Reset),
        ("space inside the target", get("/a /b", &[]), b"", Reset),
        ("target without a leading slash", get("x", &[]), b"", Reset),
        ("query-only target", get("?x", &[]), b"", Refused(400)),
        ("empty target", get("", &[]), b"", Reset),
        (
            "asterisk-form target on GET",
            get("*", &[]),
            b"",
            Refused(400),
        ),
        (
            "absolute-form target in :path",
            get("https://localhost/", &[]),
            b"",
            Reset,
        ),
        (
            "backslash in the path",
            get("/a\\b", &[]),
            b"",
            Refused(400),
        ),
        ("quote in the path", get("/a\"b", &[]), b"", Refused(400)),
        (
            "raw UTF-8 in the path",
            get("/caf\u{e9}", &[]),
            b"",
            Refused(400),
        ),
        (
            "encoded NUL in the target",
            get("/a%00b", &[]),
            b"",
            Refused(400),
        ),
        (
            "encoded LF in the target",
            get("/a%0Ab", &[]),
            b"",
            Refused(400),
        ),
        (
            "broken percent-encoding",
            get("/%zz", &[]),
            b"",
            Refused(400),
        ),
        (
            "truncated percent-encoding",
            get("/a%4", &[]),
            b"",
            Refused(400),
        ),
        (
            "broken percent-encoding in the query",
            get("/?a=%g0", &[]),
            b"",
            Refused(400),
        ),
        (
            "\"..\" above the root",
            get("/a/../..", &[]),
            b"",
            Refused(400),
        ),
        (
            "head over pingora's 1 MiB",
            get("/", &[("x-huge", &huge)]),
            b"",
            Cut,
        ),
    ];

    // name, a request the h2 crate sends, what it must get.
    let with_crate: Vec<(&str, Crate, Expect)> = vec![
        (
            "plain GET",
            Crate {
                method: "GET",
                path: "/".into(),
                headers: vec![],
                body: None,
            },
            Served("GET / HTTP/1.1"),
        ),
        (
            "percent-encoded space, slash and backslash",
            Crate {
                method: "GET",
                path: "/a%20b%2Fc%5Cd".into(),
                headers: vec![],
                body: None,
            },
            Served("GET /a%20b%2Fc%5Cd HTTP/1.1"),
        ),
        (
            "dot segments",
            Crate {
                method: "GET",
                path: "/a/./b/../c?d=/../e".into(),
                headers: vec![],
                body: None,
            },
            Served("GET /a/c?d=/../e HTTP/1.1"),
        ),
        (
            "header over max_header_size",
            Crate {
                method: "GET",
                path: "/".into(),
                headers: vec![("x-big", big.clone())],
                body: None,
            },
            Refused(431),
        ),
        (
            // Over max_uri_length (1 KiB) but not over max_header_size (8 KiB), which
            // HTTP/2 connections advertise as SETTINGS_MAX_HEADER_LIST_SIZE: h2 itself
            // answers a larger header list 431.
            "target over max_uri_length",
            Crate {
                method: "GET",
                path: format!("/{}", "a".repeat(2 * 1024)),
                headers: vec![],
                body: None,
            },
            Refused(414),
        ),
        (
            "body over max_body_size",
            Crate {
                method: "POST",
                path: "/".into(),
                headers: vec![("content-length", "2048".into())],
                body: Some(vec![b'b'; 2048]),
            },
            Refused(413),
        ),
        (
            // No content-length: the body grows past the limit as its DATA frames arrive.
            "body over max_body_size, without a length",
            Crate {
                method: "POST",
                path: "/".into(),
                headers: vec![],
                body: Some(vec![b'b'; 2048]),
            },
            CutOff(413),
        ),
        (
            "CONNECT",
            Crate {
                method: "CONNECT",
                path: String::new(),
                headers: vec![],
                body: None,
            },
            Refused(405),
        ),
    ];

    let mut failures = Vec::new();
    // `decoded`: the response headers were decoded (the h2 crate's requests), so the
    // backend's request line must be there; hand-made requests read only `:status`.
    let mut check = |name: &str, expect: Expect, got: Got, reached: u64, decoded: bool| {
        println!("{name}: {got:?}, reached {reached}");
        let ok = match (expect, &got) {
            (Served(line), Got::Status(200, seen)) => {
                reached == 1 && (seen.as_deref() == Some(line) || !decoded && seen.is_none())
            }
            (Refused(code), Got::Status(status, _)) => *status == code && reached == 0,
            (CutOff(code), Got::Status(status, line)) => {
                *status == code && reached <= 1 && line.is_none()
            }
            (Reset | Cut, Got::Reset(_)) | (Cut, Got::Closed) => reached == 0,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{name}: expected {expect:?}, got {got:?}, {reached} reached the backend"
            ));
        }
    };
    for (name, fields, body, expect) in raw {
        let before = hello.requests();
        let got = tokio::time::timeout(STEP, send_raw(addr, &ca, &fields, body))
            .await
            .unwrap_or_else(|_| Got::Other("no answer in time".into()));
        check(name, expect, got, hello.requests() - before, false);
    }
    for (name, request, expect) in with_crate {
        let before = hello.requests();
        let got = tokio::time::timeout(STEP, send_with_crate(addr, &ca, request))
            .await
            .unwrap_or_else(|_| Got::Other("no answer in time".into()));
        check(name, expect, got, hello.requests() - before, true);
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn status_decoding() {
    assert_eq!(status(&[0x88], 0), Some(200));
    assert_eq!(status(&[0x8c], 0), Some(400));
    // `:status: 413`: a literal with incremental indexing, Huffman-coded
    // (011010 00001 011001, then padding ones).
    assert_eq!(status(&[0x48, 0x83, 0x68, 0x2c, 0xff], 0), Some(413));
    assert_eq!(status(&[0x08, 0x03, b'4', b'3', b'1'], 0), Some(431));
    assert_eq!(huffman_digits(&[0x00, 0x44, 0xcf]).as_deref(), Some("0123"));
}
