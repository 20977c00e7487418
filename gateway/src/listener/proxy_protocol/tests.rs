use super::*;

fn done(buf: &[u8]) -> (usize, Origin) {
    match parse(buf) {
        Ok(Parsed::Done { len, origin }) => (len, origin),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn client(s: &str) -> Origin {
    Origin::Client(s.parse().unwrap())
}

/// A version 2 header: command, family byte, address block, then `tlv` bytes.
fn v2(command: u8, family: u8, block: &[u8], tlv: usize) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(block.len() + tlv).unwrap().to_be_bytes());
    h.extend_from_slice(block);
    h.extend(std::iter::repeat_n(0xab, tlv));
    h
}

const V4_BLOCK: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb];

#[test]
fn version_1_headers() {
    let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(done(h), (41, client("192.0.2.7:12345")));
    let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n\x16\x03\x01";
    assert_eq!(done(h), (46, client("[2001:db8::7]:65535")));
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (15, Origin::Peer));
    assert_eq!(
        done(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n"),
        (51, Origin::Peer)
    );
    // 107 bytes, the longest the protocol allows, is still one.
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(107 - 16));
    assert_eq!(long.len(), 107);
    assert_eq!(done(long.as_bytes()).0, 107);
}

#[test]
fn malformed_version_1_headers_are_refused() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 12345\r\n"[..],
        b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 443 extra\r\n",
        b"PROXY TCP4  192.0.2.7 10.0.0.1 12345 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +1234 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 123456 443\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 443\r\n",
        b"PROXY TCP6 192.0.2.7 2001:db8::1 1 443\r\n",
        b"PROXY TCP4 192.0.2.07 10.0.0.1 1 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 \r\n",
        b"PROXY UDP4 192.0.2.7 10.0.0.1 1 443\r\n",
        b"PROXY tcp4 192.0.2.7 10.0.0.1 1 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 443\n",
        b"PROXY \r\n",
    ] {
        assert_eq!(
            parse(bad),
            Err(Malformed::V1Syntax),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(108 - 16));
    assert_eq!(parse(long.as_bytes()), Err(Malformed::V1TooLong));
    assert_eq!(parse(&[b'x'; 107]), Err(Malformed::NotProxy));
}

#[test]
fn version_2_headers() {
    assert_eq!(
        done(&v2(1, 0x11, &V4_BLOCK, 0)),
        (28, client("192.0.2.7:12345"))
    );
    let mut block = [0u8; 36];
    block[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block[16..32].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block[32..34].copy_from_slice(&8080u16.to_be_bytes());
    assert_eq!(
        done(&v2(1, 0x21, &block, 0)),
        (52, client("[2001:db8::7]:8080"))
    );
    // TLVs are counted in the length and skipped.
    assert_eq!(
        done(&v2(1, 0x11, &V4_BLOCK, 30)),
        (58, client("192.0.2.7:12345"))
    );
    // LOCAL (a health check of the sender's), UNSPEC, UNIX and UDP: the peer stands.
    assert_eq!(done(&v2(0, 0x00, &[], 0)), (16, Origin::Peer));
    assert_eq!(done(&v2(0, 0x11, &V4_BLOCK, 0)), (28, Origin::Peer));
    assert_eq!(done(&v2(1, 0x00, &[], 0)), (16, Origin::Peer));
    assert_eq!(done(&v2(1, 0x31, &[0; 216], 0)), (232, Origin::Peer));
    assert_eq!(done(&v2(1, 0x12, &V4_BLOCK, 0)), (28, Origin::Peer));
}

#[test]
fn malformed_version_2_headers_are_refused() {
    let mut h = v2(1, 0x11, &V4_BLOCK, 0);
    h[12] = 0x11;
    assert_eq!(parse(&h), Err(Malformed::V2Version(1)));
    h[12] = 0x22;
    assert_eq!(parse(&h), Err(Malformed::V2Command(2)));
    // A length that does not cover the addresses of its family.
    assert_eq!(
        parse(&v2(1, 0x11, &V4_BLOCK[..8], 0)),
        Err(Malformed::V2Short)
    );
    assert_eq!(parse(&v2(1, 0x21, &[0; 12], 0)), Err(Malformed::V2Short));
}

#[test]
fn every_prefix_of_a_header_is_incomplete_and_other_protocols_are_not_one() {
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 12345 443\r\n".to_vec();
    for h in [v1, v2(1, 0x11, &V4_BLOCK, 0), v2(1, 0x21, &[0; 36], 0)] {
        for n in 1..h.len() {
            assert_eq!(parse(&h[..n]), Ok(Parsed::Incomplete), "{n} of {h:?}");
        }
    }
    assert_eq!(parse(b""), Err(Malformed::NotProxy));
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"PROXX",
        b"\r\n\r\n\0\r\nQUIT\r",
    ] {
        assert_eq!(parse(other), Err(Malformed::NotProxy), "{other:?}");
    }
}

/// A connected pair over loopback: the gateway's side as a pingora stream.
async fn pair() -> (L4Stream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sender = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (L4Stream::from(accepted), sender)
}

#[tokio::test]
async fn reading_puts_back_what_follows_the_header() {
    use tokio::io::AsyncWriteExt;
    let (mut gw, mut sender) = pair().await;
    let mut sent = v2(1, 0x11, &V4_BLOCK, 0);
    sent.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    sender.write_all(&sent).await.unwrap();
    assert_eq!(read(&mut gw).await, Ok(client("192.0.2.7:12345")));
    let mut rest = [0u8; 18];
    gw.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"GET / HTTP/1.1\r\n\r\n");

    // A header sent a byte at a time, then TLVs longer than a read.
    let (mut gw, mut sender) = pair().await;
    let mut sent = v2(1, 0x11, &V4_BLOCK, 1000);
    sent.extend_from_slice(b"after");
    let writer = tokio::spawn(async move {
        for b in sent {
            sender.write_all(&[b]).await.unwrap();
        }
        sender
    });
    assert_eq!(read(&mut gw).await, Ok(client("192.0.2.7:12345")));
    let mut rest = [0u8; 5];
    gw.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"after");
    drop(writer.await.unwrap());

    // Closed halfway; and a plain request where a header was due.
    let (mut gw, mut sender) = pair().await;
    sender.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    drop(sender);
    assert_eq!(read(&mut gw).await, Err(Malformed::Closed));
    let (mut gw, mut sender) = pair().await;
    sender.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read(&mut gw).await, Err(Malformed::NotProxy));
    let (mut gw, sender) = pair().await;
    drop(sender);
    assert_eq!(read(&mut gw).await, Err(Malformed::Silent));
}
