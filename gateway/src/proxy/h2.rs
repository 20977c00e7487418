//! HTTP/2 streams as the request path's [`Downstream`], over pingora-core's HTTP/2
//! session (for now).

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v2::server::HttpSession;
use pingora::protocols::Stream;

use super::downstream::{DownError, Downstream, Reply, Request};
use super::error::ProxyError;
use super::headers::strip_response;
use super::respond::HSTS;
use super::{Client, Gateway, HeadFacts, REQUEST_ID};
use crate::http1::{date, OutBody};

/// One HTTP/2 stream: its request body and its response.
pub(crate) struct H2Stream {
    session: HttpSession,
    limit: u64,
    read: u64,
    status: Option<StatusCode>,
}

impl Gateway {
    /// Serves the request of one HTTP/2 stream.
    pub(crate) async fn serve_h2(&self, session: HttpSession, client: &Client) {
        let head = session.req_header();
        let req = Request {
            method: head.method.clone(),
            uri: head.uri.clone(),
            version: http::Version::HTTP_2,
            headers: head.headers.clone(),
        };
        let mut down = H2Stream {
            session,
            limit: u64::MAX,
            read: 0,
            status: None,
        };
        let facts = HeadFacts {
            line: None,
            head_len: None,
        };
        self.serve(&mut down, req, client, facts).await;
        let _ = down.session.finish();
    }
}

fn h2_error(e: Box<pingora::Error>) -> DownError {
    DownError::Pingora(e)
}

impl Downstream for H2Stream {
    fn set_max_body(&mut self, limit: u64) {
        self.limit = limit;
    }

    fn body_empty(&self) -> bool {
        self.session.is_body_empty()
    }

    fn body_done(&self) -> bool {
        self.session.is_body_done()
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownError> {
        let piece = self.session.read_body_bytes().await.map_err(h2_error)?;
        if let Some(piece) = &piece {
            self.read += piece.len() as u64;
            if self.read > self.limit {
                return Err(DownError::BodyTooLarge);
            }
        }
        Ok(piece)
    }

    fn buffered_body(&mut self) -> Result<Option<Bytes>, DownError> {
        Ok(None)
    }

    async fn write_interim(
        &mut self,
        _status: StatusCode,
        _headers: &HeaderMap,
    ) -> Result<(), DownError> {
        Ok(())
    }

    async fn write_head(
        &mut self,
        reply: Reply<'_>,
        body: Bytes,
        end: bool,
    ) -> Result<(), DownError> {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = reply.status;
        parts.headers = reply.headers;
        let headers = &mut parts.headers;
        if reply.relayed {
            strip_response(headers, reply.status);
            headers.remove(TRANSFER_ENCODING);
        }
        headers.insert(REQUEST_ID, reply.request_id.header_value());
        if let Some(hsts) = reply.hsts {
            headers.insert(HSTS, hsts.clone());
        }
        for (name, value) in reply.extra {
            headers.insert(name.clone(), value.clone());
        }
        if let OutBody::Length(n) = reply.body {
            if !headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        if !headers.contains_key(DATE) {
            if let Ok(now) = HeaderValue::from_bytes(&date::now()) {
                headers.insert(DATE, now);
            }
        }
        self.status = Some(reply.status);
        let empty = body.is_empty();
        self.session
            .write_response_header(Box::new(ResponseHeader::from(parts)), end && empty)
            .map_err(h2_error)?;
        if !empty {
            self.session.write_body(body, end).await.map_err(h2_error)?;
        }
        Ok(())
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<(), DownError> {
        self.session.write_body(data, end).await.map_err(h2_error)
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownError> {
        self.session.write_trailers(trailers).map_err(h2_error)
    }

    fn status(&self) -> Option<StatusCode> {
        self.status
    }

    fn body_bytes_sent(&self) -> u64 {
        self.session.body_bytes_sent() as u64
    }

    fn set_close(&mut self) {}

    async fn tunnel(&mut self, _backend: Stream, _early: BytesMut) -> Result<(), ProxyError> {
        Err(ProxyError::Tunnel(std::io::ErrorKind::Unsupported.into()))
    }
}
