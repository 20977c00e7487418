//! The backend session: exchanges and reuse, chunked both ways, responses that end the
//! connection, interim responses, upgrades, HEAD, one byte at a time, fields left out.

use http::{HeaderValue, Method, StatusCode};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

use super::*;

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

#[tokio::test]
async fn a_body_that_came_with_the_head_is_taken_without_a_read() {
    let headers = host();
    let (io, mut peer) = duplex(4096);
    let mut conn = ClientConn::new(io);
    conn.write_request(request(&Method::GET, &headers, OutBody::None), b"", true)
        .await
        .unwrap();
    peer.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .unwrap();
    conn.read_response(&limits()).await.unwrap();
    assert_eq!(conn.buffered_body().unwrap(), Buffered::Data("abc".into()));
    assert_eq!(
        conn.buffered_body().unwrap(),
        Buffered::Empty,
        "the rest needs a read"
    );
    peer.write_all(b"0\r\n\r\n").await.unwrap();
    assert!(conn.read_body().await.unwrap().is_none());
    assert_eq!(conn.buffered_body().unwrap(), Buffered::End);
    assert!(conn.is_reusable());
}
