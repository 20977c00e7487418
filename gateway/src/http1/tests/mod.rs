//! Both sessions over in-memory duplex streams, the test playing the other side with
//! raw bytes.

mod client;
mod server;
mod server_io;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, DuplexStream};

use super::*;

const DATE_LINE: usize = 6 + date::DATE_LEN + 2;

fn limits() -> HeadLimits {
    HeadLimits::default()
}

/// Reads exactly `n` bytes the other side wrote.
async fn take(peer: &mut DuplexStream, n: usize) -> String {
    let mut got = vec![0; n];
    peer.read_exact(&mut got).await.unwrap();
    String::from_utf8(got).unwrap()
}

/// Reads a response of `expected`'s length plus a Date line, and checks it is
/// `expected` with a Date line before `date_before`.
async fn expect_with_date(peer: &mut DuplexStream, expected: &str, date_before: &str) {
    let got = take(peer, expected.len() + DATE_LINE).await;
    let at = got.find("Date: ").unwrap();
    let without = format!("{}{}", &got[..at], &got[at + DATE_LINE..]);
    assert_eq!(without, expected);
    assert!(got[at + DATE_LINE..].starts_with(date_before), "{got}");
}

/// Nothing more was written.
async fn nothing_more(peer: &mut DuplexStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_millis(20), peer.read(&mut byte));
    assert!(read.await.is_err(), "unexpected byte {:?}", byte[0] as char);
}

fn response<'a>(status: u16, headers: &'a HeaderMap, body: OutBody) -> OutResponse<'a> {
    OutResponse {
        status: StatusCode::from_u16(status).unwrap(),
        reason: None,
        headers,
        skip: &keep_all,
        extra: &[],
        body,
    }
}

fn request<'a>(method: &'a Method, headers: &'a HeaderMap, body: OutBody) -> OutRequest<'a> {
    OutRequest {
        method,
        target: b"/path?q",
        headers,
        skip: &keep_all,
        extra: &[],
        body,
    }
}

fn host() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("backend"));
    headers
}

/// The request path runs these futures on pingora's tasks, over its `Stream`: they
/// must be `Send` (this fails to compile otherwise).
#[allow(dead_code)]
fn sessions_over_pingora_streams_are_send(
    server: &mut ServerConn<pingora::protocols::Stream>,
    client: &mut ClientConn<pingora::protocols::Stream>,
    headers: &HeaderMap,
) {
    fn send<T: Send>(_: T) {}
    let limits = HeadLimits::default();
    send(server.read_request(&limits));
    send(server.read_body());
    send(server.write_head(response(200, headers, OutBody::None), b"", true));
    send(server.write_body(b"", true));
    send(server.drain_body(0));
    send(client.write_request(request(&Method::GET, headers, OutBody::None), b"", true));
    send(client.read_response(&limits));
    send(client.read_body());
}
