//! Raw HTTP/1 exchanges over TCP or TLS: exact bytes out, the first response (or the
//! connection's close) back, for tests of malformed and hostile requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a read on a raw connection waits: a safety net against a hung test, not a
/// measured bound. Reaching it fails the test ([`read_reply`], [`read_until_close`]).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `e` is a read timeout (`WouldBlock` on Unix sockets, `TimedOut` elsewhere).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads `wire` until the peer closes it and returns what came before the close.
/// Panics when the connection stays open past [`READ_TIMEOUT`].
pub fn read_until_close(wire: &mut dyn Wire) -> Vec<u8> {
    let mut rest = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match wire.read(&mut chunk) {
            Ok(0) => return rest,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                panic!("the connection is still open after {READ_TIMEOUT:?}")
            }
            Err(_) => return rest,
        }
    }
}

/// What the gateway answered to a raw request.
#[derive(Debug)]
pub struct Reply {
    /// Status of the first response; `None` when the connection closed without one.
    pub status: Option<u16>,
    /// Everything read, lossily as text.
    pub text: String,
}

impl Reply {
    /// The value of response header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// How a raw request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    /// TLS with SNI `localhost`, verified against the test CA.
    Tls,
}

/// Any byte stream the exchange can run over.
pub trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// Connects to 127.0.0.1:`port` over `transport` (TLS trusts the CA at `ca`).
pub fn connect(port: u16, transport: Transport, ca: &Path) -> Box<dyn Wire> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(READ_TIMEOUT)).ok();
    match transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls => {
            let config = crate::client::tls_config(ca, &[b"http/1.1"]);
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    }
}

/// Sends `request` on a new connection and reads the first response: its head and
/// a `Content-Length` body, or everything until the connection closes.
pub fn exchange(port: u16, transport: Transport, ca: &Path, request: &[u8]) -> Reply {
    let mut wire = connect(port, transport, ca);
    // The gateway may answer and close before reading everything: that is fine.
    let _ = wire.write_all(request);
    let _ = wire.flush();
    read_reply(&mut *wire)
}

/// Reads one response (or up to the close) from `wire`. Panics when the peer neither
/// answers nor closes within the connection's read timeout ([`READ_TIMEOUT`]): a test
/// that expects a close must see one, not a silence.
pub fn read_reply(wire: &mut dyn Wire) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let started = Instant::now();
    loop {
        if let Some(total) = response_len(&buf) {
            if buf.len() >= total {
                break;
            }
        }
        match wire.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => panic!(
                "no response and no close within {READ_TIMEOUT:?}; read so far: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            // A reset (the peer closed with unread bytes) is a close.
            Err(_) => break,
        }
        assert!(
            started.elapsed() < 2 * READ_TIMEOUT,
            "a response still coming after {:?}",
            2 * READ_TIMEOUT
        );
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .starts_with("HTTP/1.")
        .then(|| text.get(9..12).and_then(|c| c.parse().ok()))
        .flatten();
    Reply { status, text }
}

/// The length of the response in `buf` (head + Content-Length body), once its head is in.
fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status: u16 = head.get(9..12)?.parse().ok()?;
    if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(end);
    }
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    })?;
    Some(end + length)
}
