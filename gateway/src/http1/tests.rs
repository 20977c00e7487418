//! Both sessions over in-memory duplex streams, the test playing the other side with
//! raw bytes: keep-alive, pipelining, close, chunked both ways, 100-continue, HEAD,
//! 204/304, upgrades, trailers, limits, and reads one byte at a time.

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

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

#[tokio::test]
async fn keep_alive_and_pipelining() {
    let (io, mut peer) = duplex(64 * 1024);
    let mut conn = ServerConn::new(io);
    // Two requests in one write: the second waits in the buffer.
    peer.write_all(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await
    .unwrap();
    let first = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(first.uri.path(), "/one");
    assert!(conn.read_body().await.unwrap().is_none());
    let none = HeaderMap::new();
    let extra: &[(&[u8], &[u8])] = &[(b"x-request-id", b"r1")];
    let resp = OutResponse {
        extra,
        ..response(200, &none, OutBody::Length(2))
    };
    conn.write_head(resp, b"ok", true).await.unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 200 OK\r\nx-request-id: r1\r\nContent-Length: 2\r\n\r\nok",
        "Content-Length",
    )
    .await;
    assert!(conn.is_reusable());
    assert_eq!(conn.body_bytes_sent(), 2);

    let second = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!((second.method, second.uri.path()), (Method::POST, "/two"));
    assert_eq!(&conn.read_body().await.unwrap().unwrap()[..], b"abc");
    assert!(conn.read_body().await.unwrap().is_none());
    assert!(conn.body_done());
    conn.write_head(response(204, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    expect_with_date(&mut peer, "HTTP/1.1 204 No Content\r\n\r\n", "\r\n").await;
    assert!(conn.is_reusable());

    // The client closes between requests: a clean end.
    drop(peer);
    assert!(conn.read_request(&limits()).await.unwrap().is_none());
}

#[tokio::test]
async fn close_and_http10() {
    let none = HeaderMap::new();
    // `Connection: close` from the client.
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(200, &none, OutBody::Length(1)), b"x", true)
        .await
        .unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        "Content-Length",
    )
    .await;
    assert!(!conn.is_reusable());

    // HTTP/1.0 with keep-alive: said back; an unknown length: until close.
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(200, &none, OutBody::Length(1)), b"x", true)
        .await
        .unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx",
        "Content-Length",
    )
    .await;
    assert!(conn.is_reusable());
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(200, &none, OutBody::Unknown), b"so", false)
        .await
        .unwrap();
    conn.write_body(b"me", true).await.unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome",
        "Connection",
    )
    .await;
    assert!(!conn.is_reusable());

    // The gateway closes (a refusal, a drain).
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.set_close();
    conn.write_head(response(400, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "Content-Length",
    )
    .await;
    assert!(!conn.is_reusable());
}

#[tokio::test]
async fn chunked_both_ways_with_trailers() {
    let (io, mut peer) = duplex(64 * 1024);
    let mut conn = ServerConn::new(io);
    peer.write_all(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let head = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(head.out_body(), OutBody::Unknown);
    let mut body = Vec::new();
    while let Some(piece) = conn.read_body().await.unwrap() {
        body.extend_from_slice(&piece);
    }
    assert_eq!(body, b"abcde");
    assert_eq!(conn.take_trailers().unwrap()["x-sum"], "5");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    // Framing headers from a backend are replaced by the session's own.
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert(
        "date",
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    conn.write_head(response(200, &headers, OutBody::Unknown), b"hello", false)
        .await
        .unwrap();
    conn.write_body(b"", false).await.unwrap();
    conn.write_body(b" world", false).await.unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-t", HeaderValue::from_static("1"));
    conn.write_trailers(&trailers).await.unwrap();
    let expected = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n";
    assert_eq!(take(&mut peer, expected.len()).await, expected);
    assert!(conn.is_reusable());
    assert_eq!(conn.body_bytes_sent(), 11);
    nothing_more(&mut peer).await;
}

#[tokio::test]
async fn continue_is_sent_when_the_body_is_wanted() {
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let head = conn.read_request(&limits()).await.unwrap().unwrap();
    assert!(head.framing.expect_continue);
    nothing_more(&mut peer).await;
    let client = async {
        assert_eq!(take(&mut peer, 25).await, "HTTP/1.1 100 Continue\r\n\r\n");
        peer.write_all(b"data").await.unwrap();
        peer
    };
    let (body, mut peer) = tokio::join!(conn.read_body(), client);
    assert_eq!(&body.unwrap().unwrap()[..], b"data");
    // A backend's own 100 is not passed on a second time; a 103 is.
    let none = HeaderMap::new();
    conn.write_interim(StatusCode::CONTINUE, &none, &[])
        .await
        .unwrap();
    let mut hints = HeaderMap::new();
    hints.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
    conn.write_interim(StatusCode::from_u16(103).unwrap(), &hints, &[])
        .await
        .unwrap();
    let early = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n";
    assert_eq!(take(&mut peer, early.len()).await, early);

    // A response before the body is wanted: no 100, and the connection cannot be
    // reused with the body unread.
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.set_max_body(2);
    assert!(matches!(
        conn.read_body().await,
        Err(Http1Error::BodyTooLarge { limit: 2 })
    ));
    conn.write_head(response(413, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    let got = take(&mut peer, 12).await;
    assert_eq!(got, "HTTP/1.1 413");
    assert!(!conn.is_reusable());
}

#[tokio::test]
async fn bodyless_responses() {
    let none = HeaderMap::new();
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // HEAD: the length is told, no body goes out.
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(200, &none, OutBody::Length(5)), b"hello", true)
        .await
        .unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        "Content",
    )
    .await;
    assert!(conn.is_reusable());
    // 304 keeps the length, 204 never has one.
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(304, &none, OutBody::Length(7)), b"", true)
        .await
        .unwrap();
    expect_with_date(
        &mut peer,
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
        "Content",
    )
    .await;
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(204, &none, OutBody::Length(7)), b"", true)
        .await
        .unwrap();
    expect_with_date(&mut peer, "HTTP/1.1 204 No Content\r\n\r\n", "\r\n").await;
    nothing_more(&mut peer).await;
}

#[tokio::test]
async fn length_mismatches_are_refused() {
    let none = HeaderMap::new();
    let (io, _peer) = duplex(4096);
    let mut conn = ServerConn::with_buffer(
        io,
        BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]),
    );
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(200, &none, OutBody::Length(3)), b"ab", false)
        .await
        .unwrap();
    assert!(matches!(
        conn.write_body(b"cd", true).await,
        Err(Http1Error::Misuse(_))
    ));
    assert!(!conn.is_reusable());
    assert!(conn
        .write_head(response(200, &none, OutBody::None), b"", true)
        .await
        .is_err());
}

#[tokio::test]
async fn upgrades_hand_over_the_stream() {
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nEARLY",
    )
    .await
    .unwrap();
    let head = conn.read_request(&limits()).await.unwrap().unwrap();
    assert!(head.framing.upgrade);
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    conn.write_head(response(101, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    let expected =
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
    assert_eq!(take(&mut peer, expected.len()).await, expected);
    assert!(!conn.is_reusable());
    let (mut io, early) = conn.into_parts();
    assert_eq!(&early[..], b"EARLY");
    io.write_all(b"raw").await.unwrap();
    assert_eq!(take(&mut peer, 3).await, "raw");
}

#[tokio::test]
async fn one_byte_at_a_time() {
    // A pipe that moves one byte per read, both ways.
    let (io, mut peer) = duplex(1);
    let mut conn = ServerConn::new(io);
    let first = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
    let response_len = 40 + DATE_LINE;
    let client = tokio::spawn(async move {
        for b in first.iter() {
            peer.write_all(&[*b]).await.unwrap();
        }
        let response = take(&mut peer, response_len).await;
        for b in b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n" {
            peer.write_all(&[*b]).await.unwrap();
        }
        response
    });
    let head = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(head.uri.path(), "/x");
    let mut body = Vec::new();
    while let Some(piece) = conn.read_body().await.unwrap() {
        body.extend_from_slice(&piece);
    }
    assert_eq!(body, b"wikipedia");
    assert_eq!(conn.take_trailers().unwrap()["x-t"], "1");
    let none = HeaderMap::new();
    conn.write_head(response(200, &none, OutBody::Length(2)), b"ok", true)
        .await
        .unwrap();
    let next = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(next.uri.path(), "/y");
    let got = client.await.unwrap();
    assert!(
        got.starts_with("HTTP/1.1 200 OK\r\nDate: ") && got.ends_with("\r\n\r\nok"),
        "{got}"
    );
}

#[tokio::test]
async fn broken_requests() {
    // The stream ends inside a head, inside a body; a head over the limit.
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
    drop(peer);
    assert!(matches!(
        conn.read_request(&limits()).await,
        Err(Http1Error::Closed(_))
    ));

    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
        .await
        .unwrap();
    drop(peer);
    conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(&conn.read_body().await.unwrap().unwrap()[..], b"abc");
    assert!(matches!(conn.read_body().await, Err(Http1Error::Closed(_))));

    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    let small = HeadLimits {
        max_head: 64,
        ..limits()
    };
    peer.write_all(format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100)).as_bytes())
        .await
        .unwrap();
    let e = conn.read_request(&small).await.unwrap_err();
    assert_eq!(e.request_status(), 431);
    // The previous request must be finished before the next one is read.
    let (io, _peer) = duplex(4096);
    let mut conn = ServerConn::with_buffer(
        io,
        BytesMut::from(&b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"[..]),
    );
    conn.read_request(&limits()).await.unwrap().unwrap();
    assert!(matches!(
        conn.read_request(&limits()).await,
        Err(Http1Error::Misuse(_))
    ));
}

#[tokio::test]
async fn unread_bodies_are_drained_or_the_connection_ends() {
    let none = HeaderMap::new();
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    peer.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(404, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    assert!(!conn.is_reusable(), "body unread");
    assert!(conn.drain_body(1024).await.unwrap());
    assert!(conn.is_reusable());
    assert_eq!(
        conn.read_request(&limits())
            .await
            .unwrap()
            .unwrap()
            .uri
            .path(),
        "/n"
    );
    conn.write_head(response(200, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    let _ = take(&mut peer, 10).await;
    // Over the drain budget: give up.
    peer.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        .await
        .unwrap();
    peer.write_all(&[b'x'; 2000]).await.unwrap();
    conn.read_request(&limits()).await.unwrap().unwrap();
    conn.write_head(response(404, &none, OutBody::None), b"", true)
        .await
        .unwrap();
    assert!(!conn.drain_body(1024).await.unwrap());
    // Buffers go when idle and come back with the next request.
    conn.release_buffers();
}

// === The backend side ===

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

#[tokio::test]
async fn a_backend_exchange_and_reuse() {
    let (io, mut peer) = duplex(64 * 1024);
    let mut conn = ClientConn::new(io);
    let headers = host();
    let extra: &[(&[u8], &[u8])] = &[(b"x-forwarded-for", b"192.0.2.1")];
    let req = OutRequest {
        extra,
        ..request(&Method::POST, &headers, OutBody::Length(4))
    };
    conn.write_request(req, b"ping", true).await.unwrap();
    let sent = "POST /path?q HTTP/1.1\r\nhost: backend\r\nx-forwarded-for: 192.0.2.1\r\nContent-Length: 4\r\n\r\nping";
    assert_eq!(take(&mut peer, sent.len()).await, sent);
    assert!(conn.request_done());
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-B: 1\r\n\r\npong")
        .await
        .unwrap();
    let head = conn.read_response(&limits()).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.out_body(), OutBody::Length(4));
    assert_eq!(&conn.read_body().await.unwrap().unwrap()[..], b"pong");
    assert!(conn.read_body().await.unwrap().is_none());
    assert!(conn.response_done() && conn.is_reusable());
    assert!(conn.into_reusable().is_some());
}

#[tokio::test]
async fn chunked_requests_and_responses() {
    let (io, mut peer) = duplex(64 * 1024);
    let mut conn = ClientConn::new(io);
    let headers = host();
    conn.write_request(
        request(&Method::PUT, &headers, OutBody::Unknown),
        b"abc",
        false,
    )
    .await
    .unwrap();
    conn.write_body(b"defg", false).await.unwrap();
    conn.write_body(b"", true).await.unwrap();
    let sent = "PUT /path?q HTTP/1.1\r\nhost: backend\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    assert_eq!(take(&mut peer, sent.len()).await, sent);
    peer.write_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 9\r\n\r\n",
    )
    .await
    .unwrap();
    let head = conn.read_response(&limits()).await.unwrap();
    assert_eq!(head.out_body(), OutBody::Unknown);
    assert_eq!(&conn.read_body().await.unwrap().unwrap()[..], b"hi");
    assert!(conn.read_body().await.unwrap().is_none());
    assert_eq!(conn.take_trailers().unwrap()["x-t"], "9");
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn responses_that_end_the_connection() {
    let headers = host();
    // No framing: read until the backend closes; never reused.
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    peer.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        .await
        .unwrap();
    drop(peer);
    let head = conn.read_response(&limits()).await.unwrap();
    assert_eq!(head.framing.body, ResponseBody::UntilClose);
    assert_eq!(head.out_body(), OutBody::Unknown);
    let mut body = Vec::new();
    while let Some(piece) = conn.read_body().await.unwrap() {
        body.extend_from_slice(&piece);
    }
    assert_eq!(body, b"all of it");
    assert!(conn.response_done() && !conn.is_reusable());

    // `Connection: close`, and bytes nobody asked for after a response.
    for extra in ["Connection: close\r\n\r\n", "\r\nJUNK"] {
        let (io, mut peer) = duplex(4096);
        let mut conn = ClientConn::new(io);
        conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
            .await
            .unwrap();
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{extra}");
        peer.write_all(reply.as_bytes()).await.unwrap();
        conn.read_response(&limits()).await.unwrap();
        assert!(conn.read_body().await.unwrap().is_none());
        assert!(!conn.is_reusable(), "{extra:?}");
    }

    // Closed before any response byte: the request may be retried elsewhere.
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    let _ = take(&mut peer, 10).await;
    drop(peer);
    assert!(matches!(
        conn.read_response(&limits()).await,
        Err(Http1Error::Closed(_))
    ));
    assert!(!conn.response_started());
}

#[tokio::test]
async fn interim_responses_upgrades_and_head() {
    let headers = host();
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    peer.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")
        .await
        .unwrap();
    assert!(conn.read_response(&limits()).await.unwrap().is_interim());
    let hints = conn.read_response(&limits()).await.unwrap();
    assert_eq!(
        (hints.status.as_u16(), &hints.headers["link"]),
        (103, &HeaderValue::from_static("</a>"))
    );
    assert_eq!(
        conn.read_response(&limits()).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(&conn.read_body().await.unwrap().unwrap()[..], b"!");
    assert!(
        conn.read_response(&limits()).await.is_err(),
        "one final response"
    );

    // HEAD: a length, no body; the connection is reusable at once.
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::HEAD, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        .await
        .unwrap();
    let head = conn.read_response(&limits()).await.unwrap();
    assert_eq!(head.out_body(), OutBody::Length(1234));
    assert!(conn.response_done() && conn.is_reusable());

    // 101: the stream and the backend's first bytes of the new protocol.
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    peer.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nHELLO")
        .await
        .unwrap();
    assert!(conn.read_response(&limits()).await.unwrap().is_upgrade());
    assert!(!conn.is_reusable());
    let (_io, early) = conn.into_parts();
    assert_eq!(&early[..], b"HELLO");
}

#[tokio::test]
async fn a_response_one_byte_at_a_time() {
    let headers = host();
    let (io, mut peer) = duplex(1);
    let mut conn = ClientConn::new(io);
    let backend = async move {
        let mut request = vec![0u8; 39];
        peer.read_exact(&mut request).await.unwrap();
        for b in b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;e\r\nd\r\n0\r\n\r\n" {
            peer.write_all(&[*b]).await.unwrap();
        }
        (request, peer)
    };
    let client = async {
        conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
            .await
            .unwrap();
        conn.read_response(&limits()).await.unwrap();
        let mut body = Vec::new();
        while let Some(piece) = conn.read_body().await.unwrap() {
            body.extend_from_slice(&piece);
        }
        body
    };
    let (body, (request, _peer)) = tokio::join!(client, backend);
    assert_eq!(request, b"GET /path?q HTTP/1.1\r\nhost: backend\r\n\r\n");
    assert_eq!(body, b"abcd");
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn fields_can_be_left_out_without_editing_the_map() {
    let mut headers = host();
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("x-kept", HeaderValue::from_static("1"));
    let hop_by_hop = |n: &http::header::HeaderName| n.as_str() == "keep-alive";
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    let req = OutRequest {
        skip: &hop_by_hop,
        ..request(&Method::GET, &headers, OutBody::None)
    };
    conn.write_request(req, b"", true).await.unwrap();
    let sent = "GET /path?q HTTP/1.1\r\nhost: backend\r\nx-kept: 1\r\n\r\n";
    assert_eq!(take(&mut peer, sent.len()).await, sent);
    assert_eq!(headers.len(), 3);
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

#[tokio::test]
async fn released_buffers_come_back_with_the_next_request() {
    let none = HeaderMap::new();
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    for path in ["/a", "/b", "/c"] {
        // The idle connection holds no buffer: the first read lands on the stack.
        conn.release_buffers();
        let long = "x".repeat(700);
        let head = format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Long: {long}\r\n\r\n");
        peer.write_all(head.as_bytes()).await.unwrap();
        let req = conn.read_request(&limits()).await.unwrap().unwrap();
        assert_eq!(req.uri.path(), path);
        assert_eq!(req.headers["x-long"].len(), 700);
        conn.write_head(response(200, &none, OutBody::None), b"", true)
            .await
            .unwrap();
        let _ = take(&mut peer, 38 + DATE_LINE).await;
    }
}
