//! Body framing and connection options of a message (RFC 9112 §6 and §9): one pass over
//! the header fields while the head is converted, then the rules for a request or a
//! response. Every request the table of hostile requests refuses for its framing is
//! refused here.

use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{StatusCode, Version};

use super::Http1Error;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No Content-Length, no Transfer-Encoding: no body.
    Empty,
    /// `Content-Length` bytes (0 included: the header is there).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// None, whatever the headers say: a response to HEAD, 1xx, 204, 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the backend closes the connection. Such a response is
    /// sent on chunked to an HTTP/1.1 client (or with `Connection: close`), and that
    /// backend connection is never reused.
    UntilClose,
}

/// What a request's head says about its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: RequestBody,
    /// Whether the client keeps the connection open after the response (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before its body.
    pub expect_continue: bool,
    /// An HTTP/1.1 request with `Upgrade` and the `upgrade` connection option.
    pub upgrade: bool,
}

/// What a response's head says about its body and the connection it came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    pub body: ResponseBody,
    /// The declared length, valid and unambiguous, even where the response has no body
    /// (HEAD, 304): what a client is told.
    pub content_length: Option<u64>,
    /// Whether the connection may carry another request once this response is read: the
    /// backend did not ask to close, and the framing leaves no doubt where it ends.
    pub keep_alive: bool,
}

/// The header fields that frame a message, gathered while a head is converted.
#[derive(Debug, Default)]
pub(crate) struct FieldScan {
    /// Responses may repeat an identical Content-Length (RFC 9110 §8.6); requests may not.
    response: bool,
    lengths: u32,
    length: Option<u64>,
    length_fault: Option<&'static str>,
    encodings: u32,
    /// A Transfer-Encoding field other than exactly `chunked`.
    other_encoding: bool,
    close: bool,
    keep_alive: bool,
    upgrade_option: bool,
    upgrade_field: bool,
    expect_continue: bool,
}

impl FieldScan {
    pub(crate) fn request() -> Self {
        Self::default()
    }

    pub(crate) fn response() -> Self {
        Self {
            response: true,
            ..Self::default()
        }
    }

    /// Looks at one header field (name already parsed, value as sent, trimmed).
    pub(crate) fn field(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == CONTENT_LENGTH {
            self.content_length(value);
        } else if *name == TRANSFER_ENCODING {
            self.encodings += 1;
            if !value.eq_ignore_ascii_case(b"chunked") {
                self.other_encoding = true;
            }
        } else if *name == CONNECTION {
            for option in list(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if option.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade_option = true;
                }
            }
        } else if *name == EXPECT {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if *name == UPGRADE {
            self.upgrade_field = true;
        }
    }

    fn content_length(&mut self, value: &[u8]) {
        self.lengths += 1;
        if !self.response {
            if self.lengths > 1 {
                self.length_fault = Some("more than one Content-Length");
            }
            match digits(value) {
                Some(n) => self.length = Some(n),
                None => self.length_fault = Some("invalid Content-Length"),
            }
            return;
        }
        // A response's `42, 42` (or a repeated field) is one length; anything else is not.
        let mut any = false;
        for item in list(value) {
            any = true;
            match (digits(item), self.length) {
                (None, _) => self.length_fault = Some("invalid Content-Length"),
                (Some(n), Some(m)) if n != m => {
                    self.length_fault = Some("conflicting Content-Length")
                }
                (Some(n), _) => self.length = Some(n),
            }
        }
        if !any {
            self.length_fault = Some("invalid Content-Length");
        }
    }

    /// Whether the connection stays open by the message's version and `Connection`.
    fn persistent(&self, version: Version) -> bool {
        !self.close && (version != Version::HTTP_10 || self.keep_alive)
    }

    /// The framing of a request: one unambiguous length or a single final `chunked`,
    /// never both (RFC 9112 §6.1, §6.3), and no Transfer-Encoding on HTTP/1.0.
    pub(crate) fn finish_request(self, version: Version) -> Result<RequestFraming, Http1Error> {
        if let Some(fault) = self.length_fault {
            return Err(Http1Error::Framing(fault));
        }
        let body = if self.encodings > 0 {
            if version == Version::HTTP_10 {
                return Err(Http1Error::Framing(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if self.lengths > 0 {
                return Err(Http1Error::Framing(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if self.encodings > 1 || self.other_encoding {
                return Err(Http1Error::Framing(
                    "Transfer-Encoding other than a single chunked",
                ));
            }
            RequestBody::Chunked
        } else {
            self.length.map_or(RequestBody::Empty, RequestBody::Length)
        };
        Ok(RequestFraming {
            body,
            keep_alive: self.persistent(version),
            // An HTTP/1.0 client cannot expect anything (RFC 9110 §10.1.1).
            expect_continue: self.expect_continue && version == Version::HTTP_11,
            upgrade: version == Version::HTTP_11 && self.upgrade_field && self.upgrade_option,
        })
    }

    /// The framing of a response to a request that was (`head_request`) or was not a
    /// HEAD (RFC 9112 §6.3). A Content-Length beside a chunked Transfer-Encoding is
    /// ignored and the connection not reused; a Transfer-Encoding the gateway cannot
    /// decode (anything but a single `chunked`, or any on HTTP/1.0) is refused.
    pub(crate) fn finish_response(
        self,
        version: Version,
        status: StatusCode,
        head_request: bool,
    ) -> Result<ResponseFraming, Http1Error> {
        let keep_alive = self.persistent(version);
        let content_length = self.length.filter(|_| self.length_fault.is_none());
        let bodyless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodyless {
            return Ok(ResponseFraming {
                body: ResponseBody::Empty,
                content_length,
                keep_alive,
            });
        }
        if self.encodings > 0 {
            if version == Version::HTTP_10 {
                return Err(Http1Error::Framing(
                    "Transfer-Encoding in an HTTP/1.0 response",
                ));
            }
            if self.encodings > 1 || self.other_encoding {
                return Err(Http1Error::Framing(
                    "Transfer-Encoding other than a single chunked",
                ));
            }
            return Ok(ResponseFraming {
                body: ResponseBody::Chunked,
                content_length: None,
                keep_alive: keep_alive && self.lengths == 0,
            });
        }
        if let Some(fault) = self.length_fault {
            return Err(Http1Error::Framing(fault));
        }
        Ok(match content_length {
            Some(n) => ResponseFraming {
                body: ResponseBody::Length(n),
                content_length,
                keep_alive,
            },
            None => ResponseFraming {
                body: ResponseBody::UntilClose,
                content_length: None,
                keep_alive: false,
            },
        })
    }
}

/// A decimal length: digits only (no sign, no spaces, no list), within u64.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The non-empty items of a comma-separated list, without their surrounding spaces.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(mut scan: FieldScan, fields: &[(&str, &str)]) -> FieldScan {
        for (name, value) in fields {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            scan.field(&name, value.as_bytes());
        }
        scan
    }

    fn request(fields: &[(&str, &str)]) -> Result<RequestFraming, Http1Error> {
        scan(FieldScan::request(), fields).finish_request(Version::HTTP_11)
    }

    fn refused(fields: &[(&str, &str)]) -> bool {
        matches!(request(fields), Err(Http1Error::Framing(_)))
    }

    #[test]
    fn request_lengths() {
        assert_eq!(request(&[]).unwrap().body, RequestBody::Empty);
        let n = request(&[("content-length", "5")]).unwrap();
        assert_eq!(n.body, RequestBody::Length(5));
        assert_eq!(
            request(&[("content-length", "0")]).unwrap().body,
            RequestBody::Length(0)
        );
        assert_eq!(
            request(&[("content-length", "007")]).unwrap().body,
            RequestBody::Length(7)
        );
        let chunked = request(&[("transfer-encoding", "chunked")]).unwrap();
        assert_eq!(chunked.body, RequestBody::Chunked);
        let upper = request(&[("Transfer-Encoding", "Chunked")]).unwrap();
        assert_eq!(upper.body, RequestBody::Chunked);
    }

    /// Each framing refusal of e2e/tests/hostile.rs and proxy/checks.rs.
    #[test]
    fn request_refusals() {
        // CL.TE and TE.CL
        assert!(refused(&[
            ("content-length", "6"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(refused(&[
            ("transfer-encoding", "chunked"),
            ("content-length", "3")
        ]));
        // TE.TE
        assert!(refused(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "x")
        ]));
        assert!(refused(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]));
        for te in [
            "xchunked",
            "chunked, identity",
            "gzip, chunked",
            "identity",
            "",
        ] {
            assert!(refused(&[("transfer-encoding", te)]), "{te}");
        }
        // Content-Length
        assert!(refused(&[("content-length", "2"), ("content-length", "2")]));
        assert!(refused(&[("content-length", "2"), ("content-length", "3")]));
        for cl in [
            "2, 2",
            "+2",
            "-1",
            "",
            " ",
            "0x10",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(refused(&[("content-length", cl)]), "{cl:?}");
        }
        // Transfer-Encoding on HTTP/1.0
        let te10 = scan(FieldScan::request(), &[("transfer-encoding", "chunked")])
            .finish_request(Version::HTTP_10);
        assert!(matches!(te10, Err(Http1Error::Framing(_))));
    }

    #[test]
    fn connection_options() {
        assert!(request(&[]).unwrap().keep_alive);
        assert!(!request(&[("connection", "close")]).unwrap().keep_alive);
        assert!(
            !request(&[("connection", "Keep-Alive, CLOSE")])
                .unwrap()
                .keep_alive
        );
        let v10 = |fields: &[(&str, &str)]| {
            scan(FieldScan::request(), fields)
                .finish_request(Version::HTTP_10)
                .unwrap()
        };
        assert!(!v10(&[]).keep_alive);
        assert!(v10(&[("connection", "keep-alive")]).keep_alive);
        assert!(!v10(&[("connection", "keep-alive"), ("connection", "close")]).keep_alive);
        let expect = request(&[("expect", "100-Continue")]).unwrap();
        assert!(expect.expect_continue);
        assert!(!request(&[("expect", "200-ok")]).unwrap().expect_continue);
        let upgrade = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert!(request(&upgrade).unwrap().upgrade);
        assert!(
            !request(&upgrade[1..]).unwrap().upgrade,
            "no upgrade option"
        );
        assert!(!v10(&upgrade).upgrade, "HTTP/1.0 has no upgrades");
        assert!(!v10(&[("expect", "100-continue")]).expect_continue);
    }

    fn response(
        version: Version,
        status: u16,
        head: bool,
        fields: &[(&str, &str)],
    ) -> Result<ResponseFraming, Http1Error> {
        let status = StatusCode::from_u16(status).unwrap();
        scan(FieldScan::response(), fields).finish_response(version, status, head)
    }

    #[test]
    fn response_bodies() {
        let v11 = Version::HTTP_11;
        let r = response(v11, 200, false, &[("content-length", "12")]).unwrap();
        assert_eq!(
            (r.body, r.content_length, r.keep_alive),
            (ResponseBody::Length(12), Some(12), true)
        );
        let r = response(v11, 200, false, &[("content-length", "12, 12")]).unwrap();
        assert_eq!(r.body, ResponseBody::Length(12));
        let r = response(
            v11,
            200,
            false,
            &[("content-length", "3"), ("content-length", "3")],
        );
        assert_eq!(r.unwrap().body, ResponseBody::Length(3));
        let r = response(v11, 200, false, &[("transfer-encoding", "chunked")]).unwrap();
        assert_eq!((r.body, r.keep_alive), (ResponseBody::Chunked, true));
        // No framing: until the backend closes, and that connection is not reused.
        let r = response(v11, 200, false, &[]).unwrap();
        assert_eq!((r.body, r.keep_alive), (ResponseBody::UntilClose, false));
        // Bodyless whatever the headers say, with the length a client is told.
        for (status, head) in [
            (200, true),
            (204, false),
            (304, false),
            (100, false),
            (101, false),
        ] {
            let r = response(v11, status, head, &[("content-length", "9")]).unwrap();
            assert_eq!(
                (r.body, r.content_length),
                (ResponseBody::Empty, Some(9)),
                "{status}"
            );
        }
        let r = response(v11, 204, false, &[("transfer-encoding", "gzip")]).unwrap();
        assert_eq!(r.body, ResponseBody::Empty);
        // Both: chunked wins, the connection is not reused.
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        let r = response(v11, 200, false, &both).unwrap();
        assert_eq!(
            (r.body, r.content_length, r.keep_alive),
            (ResponseBody::Chunked, None, false)
        );
        // Keep-alive by version and Connection.
        let r = response(
            v11,
            200,
            false,
            &[("content-length", "1"), ("connection", "close")],
        );
        assert!(!r.unwrap().keep_alive);
        let r = response(Version::HTTP_10, 200, false, &[("content-length", "1")]);
        assert!(!r.unwrap().keep_alive);
        let ka = [("content-length", "1"), ("connection", "keep-alive")];
        assert!(
            response(Version::HTTP_10, 200, false, &ka)
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn response_refusals() {
        let v11 = Version::HTTP_11;
        let bad = |version, fields: &[(&str, &str)]| {
            matches!(
                response(version, 200, false, fields),
                Err(Http1Error::Framing(_))
            )
        };
        assert!(bad(
            v11,
            &[("content-length", "3"), ("content-length", "4")]
        ));
        assert!(bad(v11, &[("content-length", "3, 4")]));
        assert!(bad(v11, &[("content-length", "+3")]));
        assert!(bad(v11, &[("content-length", ",")]));
        assert!(bad(v11, &[("transfer-encoding", "gzip")]));
        assert!(bad(v11, &[("transfer-encoding", "gzip, chunked")]));
        assert!(bad(
            v11,
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]
        ));
        assert!(bad(Version::HTTP_10, &[("transfer-encoding", "chunked")]));
    }
}
