//! `hello`: the tutorial's backend greeter, `{"message":"Hello"}` on every request.
//!
//! `hello --listen ADDR [--name NAME] [--delay-ms N] [--fail-health] [--tls-dir DIR
//! [--client-ca FILE]]`. Prints `listening on ADDR` (the bound address, so `:0` works)
//! once ready. It speaks HTTP/1.1 and h2c; with `--tls-dir` it serves TLS instead, with
//! `DIR/tls.crt` and `DIR/tls.key`, offering h2 and http/1.1 by ALPN (an HTTPS backend);
//! `--client-ca FILE` then requires a client certificate verified against the CA
//! certificates in FILE, and every answer carries `x-client-cn`, the verified
//! certificate's subject CN (when it has one). Every answer carries `x-hello-instance: NAME` (default:
//! the bound address); `?delay_ms=N` delays it by N ms; `?echo_headers=1` answers
//! with the request's headers as `name: value` lines instead (for tests of what the
//! gateway forwards); `?echo_body=1` answers with the request body as hello read it
//! (for tests of what reached the backend); `?size=N` answers N bytes of `x` instead
//! (at most 64 MiB; for the large-response benchmark); `?text=N` answers N bytes of
//! lines of text as `text/plain` (at most 64 MiB; compressible, for the compression
//! tests); `?json=N` answers a JSON array of about N bytes (at most 64 MiB; for the
//! compression benchmark); `?status=N` answers with status N
//! (200 to 599; for health checks that get a redirect or an error). `--delay-ms N` delays every answer (a slow replica);
//! `--fail-health` makes `/healthz` answer 503 (every other path still 200).
//! The request body is read in full before answering, as an application does.
//! `x-hello-connection: N` numbers the TCP connection the request came on (to see
//! connection reuse). `GET /_hello/requests` answers `{"requests":N}`, the number of
//! other requests received (so tests can prove a request never reached a backend). A
//! WebSocket upgrade (`Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a
//! `Sec-WebSocket-Key`) is answered with 101, and the connection is then a WebSocket
//! echo server (RFC 6455: framed, client frames masked): every text or binary message
//! comes back as it was sent, a ping is answered with a pong carrying its payload, a
//! close from the client is answered with the same close; the text message `close`
//! makes hello start the close handshake itself (close 1000 "goodbye"), after which it
//! waits for the client's close before ending the connection.
//!
//! `x-hello-request-line` on every answer is the request line as hello read it
//! (method, target, version): what the gateway forwarded.

// A crate root looks for modules beside itself: this one sits in hello/.
#[path = "hello/tls.rs"]
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const BODY: &[u8] = br#"{"message":"Hello"}"#;

fn usage() -> ExitCode {
    eprintln!(
        "usage: hello --listen ADDR [--name NAME] [--delay-ms N] [--fail-health] [--tls-dir DIR [--client-ca FILE]]"
    );
    ExitCode::from(64)
}

/// How this replica behaves.
#[derive(Clone)]
struct Behaviour {
    instance: HeaderValue,
    delay: Duration,
    fail_health: bool,
    /// Requests received (but the count queries).
    requests: Arc<AtomicU64>,
}

fn main() -> ExitCode {
    let mut listen = None;
    let mut name = None;
    let mut delay = Duration::ZERO;
    let mut fail_health = false;
    let mut tls_dir = None;
    let mut client_ca = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--fail-health" {
            fail_health = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = Some(v),
            ("--name", Some(v)) => name = Some(v),
            ("--tls-dir", Some(v)) => tls_dir = Some(PathBuf::from(v)),
            ("--client-ca", Some(v)) => client_ca = Some(PathBuf::from(v)),
            ("--delay-ms", Some(v)) => match v.parse() {
                Ok(ms) => delay = Duration::from_millis(ms),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(Ok(listen)) = listen.map(|l| l.parse::<SocketAddr>()) else {
        return usage();
    };
    let tls = match (tls_dir, client_ca) {
        (None, None) => None,
        (None, Some(_)) => return usage(),
        (Some(dir), ca) => match tls::acceptor(&dir, ca.as_deref()) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("hello: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hello: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, name, delay, fail_health, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    listen: SocketAddr,
    name: Option<String>,
    delay: Duration,
    fail_health: bool,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let name = name.unwrap_or_else(|| bound.to_string());
    let instance = HeaderValue::from_str(&name)
        .map_err(|_| std::io::Error::other("--name must be a valid header value"))?;
    let behaviour = Behaviour {
        instance,
        delay,
        fail_health,
        requests: Arc::new(AtomicU64::new(0)),
    };
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("listening on {bound}\n").as_bytes())
        .await?;
    stdout.flush().await?;

    let mut connections: u64 = 0;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("hello: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let behaviour = behaviour.clone();
        connections += 1;
        let connection = HeaderValue::from(connections);
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, behaviour, connection, None).await;
            };
            let stream = match tls.accept(stream).await {
                Ok(stream) => stream,
                Err(e) => return eprintln!("hello: TLS handshake: {e}"),
            };
            let client_cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::common_name)
                .and_then(|cn| HeaderValue::from_str(&cn).ok());
            serve_connection(stream, behaviour, connection, client_cn).await;
        });
    }
}

/// Serves one connection (HTTP/1.1 with upgrades, or HTTP/2) until it ends.
async fn serve_connection<S>(
    stream: S,
    behaviour: Behaviour,
    connection: HeaderValue,
    client_cn: Option<HeaderValue>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let (behaviour, connection) = (behaviour.clone(), connection.clone());
        let client_cn = client_cn.clone();
        async move {
            let mut resp = respond(req, behaviour, connection).await?;
            if let Some(cn) = client_cn {
                resp.headers_mut().insert("x-client-cn", cn);
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    behaviour: Behaviour,
    connection: HeaderValue,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/_hello/requests" {
        let n = behaviour.requests.load(Ordering::SeqCst);
        let body = format!("{{\"requests\":{n}}}");
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    behaviour.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(accept) = websocket_accept(&req) {
        return Ok(switch_to_echo(req, accept));
    }
    // Like an application, read the whole request body before answering: a test of
    // the gateway's body limit must not race an answer sent before the body arrived.
    let (parts, mut body) = req.into_parts();
    let echo_body = has_flag(parts.uri.query(), "echo_body=1");
    let mut received = Vec::new();
    while !body.is_end_stream() {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let (true, Some(data)) = (echo_body, frame.data_ref()) {
                    received.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    let req = Request::from_parts(parts, ());
    let request_line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
    let delay = delay_ms(req.uri().query()).map_or(behaviour.delay, Duration::from_millis);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if behaviour.fail_health && req.uri().path() == "/healthz" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"unhealthy\n")));
        *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    let echo = has_flag(req.uri().query(), "echo_headers=1");
    let (body, content_type) = if echo_body {
        (Bytes::from(received), "application/octet-stream")
    } else if echo {
        let mut text = String::new();
        for (name, value) in req.headers() {
            text.push_str(name.as_str());
            text.push_str(": ");
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
            text.push('\n');
        }
        (Bytes::from(text), "text/plain")
    } else if let Some(n) = body_size(req.uri().query(), "size=") {
        (Bytes::from(vec![b'x'; n]), "application/octet-stream")
    } else if let Some(n) = body_size(req.uri().query(), "text=") {
        (text(n), "text/plain; charset=utf-8")
    } else if let Some(n) = body_size(req.uri().query(), "json=") {
        (json(n), "application/json")
    } else {
        (Bytes::from_static(BODY), "application/json")
    };
    let mut resp = Response::new(Full::new(body));
    if let Some(status) = status(req.uri().query()) {
        *resp.status_mut() = status;
    }
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-hello-instance", behaviour.instance);
    headers.insert("x-hello-connection", connection);
    if let Ok(line) = HeaderValue::from_str(&request_line) {
        headers.insert("x-hello-request-line", line);
    }
    Ok(resp)
}

/// Whether the query holds `flag` (`name=value`) as one of its `&`-separated parts.
fn has_flag(query: Option<&str>, flag: &str) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == flag))
}

fn delay_ms(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("delay_ms="))
        .and_then(|v| v.parse().ok())
}

/// `?NAME=N` (`name` is `"size="`, `"text="` or `"json="`): a body size asked for, when
/// it is a number up to 64 MiB.
fn body_size(query: Option<&str>, name: &str) -> Option<usize> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name))
        .and_then(|v| v.parse().ok())
        .filter(|&n| n <= 64 << 20)
}

/// A JSON array of API-like objects, about `n` bytes (the last object may pass it).
fn json(n: usize) -> Bytes {
    let mut out = String::with_capacity(n + 128);
    out.push('[');
    let mut i = 0u64;
    while out.len() + 1 < n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{i},"name":"item {i}","price":{}.{:02},"tags":["hello","gateway"],"in_stock":{}}}"#,
            i * 7 % 1000,
            i % 100,
            !i.is_multiple_of(3)
        ));
        i += 1;
    }
    out.push(']');
    Bytes::from(out)
}

/// `n` bytes of numbered lines of text.
fn text(n: usize) -> Bytes {
    let mut out = Vec::with_capacity(n + 64);
    let mut line = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!("line {line} of hello's text, for the compression tests\n").as_bytes(),
        );
        line += 1;
    }
    out.truncate(n);
    Bytes::from(out)
}

/// `?status=N`: the status asked for, when it is one from 200 to 599.
fn status(query: Option<&str>) -> Option<hyper::StatusCode> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("status="))
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|n| (200..600).contains(n))
        .and_then(|n| hyper::StatusCode::from_u16(n).ok())
}

/// `Sec-WebSocket-Accept` for a WebSocket upgrade request (RFC 6455 4.2.1, 4.2.2).
fn websocket_accept(req: &Request<hyper::body::Incoming>) -> Option<String> {
    let headers = req.headers();
    let upgrade = headers.get(hyper::header::UPGRADE)?;
    if !upgrade.as_bytes().eq_ignore_ascii_case(b"websocket")
        || headers.get("sec-websocket-version")?.as_bytes() != b"13"
    {
        return None;
    }
    let key = headers.get("sec-websocket-key")?;
    Some(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answers 101 and, once switched, serves the connection as a WebSocket echo.
fn switch_to_echo(req: Request<hyper::body::Incoming>, accept: String) -> Response<Full<Bytes>> {
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                if let Err(e) = echo(TokioIo::new(upgraded)).await {
                    eprintln!("hello: websocket: {e}");
                }
            }
            Err(e) => eprintln!("hello: upgrade: {e}"),
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", v);
    }
    resp
}

/// The WebSocket echo: messages back as they came, until the close handshake is done.
/// Pongs to pings and the answer to the client's close are sent by the library.
async fn echo<S>(stream: S) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The library's limits (16 MiB frames, 64 MiB messages) leave room for large messages.
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    while let Some(message) = ws.next().await {
        match message? {
            Message::Text(text) if text.as_str() == "close" => {
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "goodbye".into(),
                }))
                .await?;
            }
            message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message).await?,
            // A ping's pong is queued by the library and written with the next read.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            // The library answers the client's close; the stream ends after it.
            Message::Close(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_is_read_from_the_query() {
        assert_eq!(
            super::body_size(Some("size=1048576"), "size="),
            Some(1 << 20)
        );
        assert_eq!(super::body_size(Some("a=1&size=0"), "size="), Some(0));
        assert_eq!(super::body_size(Some("size=x"), "size="), None);
        assert_eq!(super::body_size(Some("size=67108865"), "size="), None);
        assert_eq!(super::body_size(None, "size="), None);
    }

    #[test]
    fn status_is_read_from_the_query() {
        assert_eq!(
            super::status(Some("status=302")).map(|s| s.as_u16()),
            Some(302)
        );
        assert_eq!(
            super::status(Some("a=1&status=404")).map(|s| s.as_u16()),
            Some(404)
        );
        assert_eq!(super::status(Some("status=101")), None);
        assert_eq!(super::status(Some("status=600")), None);
        assert_eq!(super::status(None), None);
    }

    #[test]
    fn flags_are_whole_query_parts() {
        assert!(super::has_flag(Some("echo_body=1"), "echo_body=1"));
        assert!(super::has_flag(Some("a=2&echo_body=1"), "echo_body=1"));
        assert!(!super::has_flag(Some("xecho_body=1"), "echo_body=1"));
        assert!(!super::has_flag(Some("echo_body=10"), "echo_body=1"));
        assert!(!super::has_flag(None, "echo_body=1"));
    }
}
