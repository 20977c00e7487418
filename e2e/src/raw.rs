//! Raw HTTP/1 exchanges over TCP or TLS: exact bytes out, the first response (or the
//! connection's close) back, for tests of malformed and hostile requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    // A safety net against a hung test, not a measured bound.
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
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

/// Reads one response (or up to the close) from `wire`.
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
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
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
