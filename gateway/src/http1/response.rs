//! The response head parser (backend side): httparse into `http`'s status, version and
//! header map as for requests, with what backends are allowed beyond clients (spaces
//! before a colon, line folds: both removed, RFC 9112 §5) and the response framing.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Version};

use super::framing::{FieldScan, ResponseFraming};
use super::head::{header_map, range_in, HeadLimits, HeadScan, MAX_HEADER_SLOTS};
use super::Http1Error;

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    pub headers: HeaderMap,
    /// Body framing and whether the connection may be reused after it.
    pub framing: ResponseFraming,
    raw: Bytes,
    reason: Range<usize>,
}

impl ResponseHead {
    /// The head's bytes as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The reason phrase as sent (empty when missing or not text).
    pub fn reason(&self) -> &[u8] {
        self.raw.get(self.reason.clone()).unwrap_or_default()
    }

    /// [`Self::reason`] sharing the head's buffer (it outlives a move of the fields).
    pub fn reason_bytes(&self) -> Bytes {
        self.raw.slice(self.reason.clone())
    }

    /// An interim response (100 Continue, 103 Early Hints...): the final one follows.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }

    /// 101 Switching Protocols: after this head the connection is the new protocol's.
    pub fn is_upgrade(&self) -> bool {
        self.status == StatusCode::SWITCHING_PROTOCOLS
    }
}

/// Parses the response head at the front of `buf` once it is complete, as
/// [`super::parse_request`] does; `head_request`: the response answers a HEAD request
/// (no body, whatever it says).
pub fn parse_response(
    buf: &mut BytesMut,
    scan: &mut HeadScan,
    limits: &HeadLimits,
    head_request: bool,
) -> Result<Option<ResponseHead>, Http1Error> {
    let too_large = Http1Error::HeadTooLarge {
        limit: limits.max_head,
    };
    let Some(end) = scan.find(buf) else {
        if buf.len() > limits.max_head {
            return Err(too_large);
        }
        return Ok(None);
    };
    if end > limits.max_head {
        return Err(too_large);
    }
    scan.reset();
    let raw = buf.split_to(end).freeze();
    parse_head(raw, limits, head_request).map(Some)
}

/// Parses one complete response head (`raw` ends with its blank line).
pub fn parse_head(
    raw: Bytes,
    limits: &HeadLimits,
    head_request: bool,
) -> Result<ResponseHead, Http1Error> {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_SLOTS];
    let max_headers = limits.max_headers.min(MAX_HEADER_SLOTS);
    let slots = slots.get_mut(..max_headers).unwrap_or_default();
    let mut resp = httparse::Response::new(&mut []);
    let parsed = match config.parse_response_with_uninit_headers(&mut resp, &raw, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(Http1Error::InvalidHead("end of the head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Http1Error::TooManyHeaders { limit: max_headers })
        }
        Err(e) => return Err(Http1Error::Malformed(e)),
    };
    if parsed != raw.len() {
        return Err(Http1Error::InvalidHead("end of the head"));
    }
    let (Some(version), Some(code), Some(reason)) = (resp.version, resp.code, resp.reason) else {
        return Err(Http1Error::InvalidHead("status line"));
    };
    let version = match version {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return Err(Http1Error::InvalidHead("version")),
    };
    let status = StatusCode::from_u16(code).map_err(|_| Http1Error::InvalidHead("status"))?;
    let reason = range_in(&raw, reason.as_bytes()).unwrap_or_default();
    let mut scan = FieldScan::response();
    let headers = header_map(&raw, resp.headers, limits.reserve, &mut scan, true)?;
    let framing = scan.finish_response(version, status, head_request)?;
    Ok(ResponseHead {
        status,
        version,
        headers,
        framing,
        raw,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::framing::ResponseBody;

    fn parse(bytes: &[u8], head_request: bool) -> Result<Option<ResponseHead>, Http1Error> {
        let mut buf = BytesMut::from(bytes);
        parse_response(
            &mut buf,
            &mut HeadScan::default(),
            &HeadLimits::default(),
            head_request,
        )
    }

    #[test]
    fn a_typical_head() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Y: z\r\n\r\nhello"[..],
        );
        let resp = parse_response(
            &mut buf,
            &mut HeadScan::default(),
            &HeadLimits::default(),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.reason(), b"OK");
        assert_eq!(resp.version, Version::HTTP_11);
        assert_eq!(resp.headers["content-type"], "text/plain");
        assert_eq!(resp.framing.body, ResponseBody::Length(5));
        assert!(resp.framing.keep_alive);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn what_backends_may_send() {
        // No reason phrase; a space before a colon; a folded value.
        let resp = parse(b"HTTP/1.1 204\r\nX-A : 1\r\nX-B: a\r\n  b\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
        assert_eq!(resp.reason(), b"");
        assert_eq!(resp.headers["x-a"], "1");
        assert_eq!(resp.headers["x-b"], "a    b");
        assert_eq!(resp.framing.body, ResponseBody::Empty);
        let close = parse(b"HTTP/1.0 200 OK\r\n\r\nbody", false)
            .unwrap()
            .unwrap();
        assert_eq!(close.framing.body, ResponseBody::UntilClose);
        assert!(!close.framing.keep_alive);
        let head = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing.body, ResponseBody::Empty);
        assert_eq!(head.framing.content_length, Some(99));
        let interim = parse(b"HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(interim.is_interim() && !interim.is_upgrade());
        let switching = parse(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(switching.is_upgrade() && !switching.is_interim());
    }

    #[test]
    fn bad_heads() {
        let bad: [&[u8]; 6] = [
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 X\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ];
        for case in bad {
            assert!(parse(case, false).is_err(), "{}", case.escape_ascii());
        }
        let limits = HeadLimits {
            max_head: 32,
            ..HeadLimits::default()
        };
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaa\r\n"[..]);
        let r = parse_response(&mut buf, &mut HeadScan::default(), &limits, false);
        assert!(matches!(r, Err(Http1Error::HeadTooLarge { .. })));
    }
}
