//! The client-facing session's reads: one byte at a time, broken and over-limit
//! requests, unread bodies, buffers released between requests.

use http::HeaderMap;
use tokio::io::{duplex, AsyncWriteExt};

use super::*;

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

#[tokio::test]
async fn an_idle_read_keeps_no_buffer_in_the_connections_future() {
    let (io, mut peer) = duplex(4096);
    let mut conn = ServerConn::new(io);
    conn.release_buffers();
    // What an idle connection's task holds while it waits: the read's future, with no
    // room for the bytes (they land on the stack of the poll that reads them).
    let read = conn.read_more();
    let size = std::mem::size_of_val(&read);
    assert!(size < 128, "the idle read's future is {size} bytes");
    peer.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read.await.unwrap(), 27);
    let req = conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(req.uri.path(), "/");
}
