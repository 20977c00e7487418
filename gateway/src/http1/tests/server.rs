//! The client-facing session's messages: keep-alive and pipelining, close and HTTP/1.0,
//! chunked both ways with trailers, 100-continue, HEAD/204/304, length mismatches,
//! upgrades.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{duplex, AsyncWriteExt};

use super::*;

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
async fn a_request_body_that_came_with_the_head_goes_up_with_it() {
    let (io, _peer) = duplex(4096);
    let buffered =
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhel"[..];
    let mut conn = ServerConn::with_buffer(io, BytesMut::from(buffered));
    conn.read_request(&limits()).await.unwrap().unwrap();
    assert_eq!(conn.buffered_body().unwrap(), Buffered::Data("hel".into()));
    assert_eq!(conn.buffered_body().unwrap(), Buffered::Empty);
    assert!(!conn.body_done());
    conn.set_max_body(2);
    assert!(matches!(
        conn.buffered_body(),
        Err(Http1Error::BodyTooLarge { limit: 2 })
    ));
}
