//! HTTP/1 requests: the gateway's codec (`crate::http1::ServerConn`) as the request
//! path's [`Downstream`], and the entry from the listener's keep-alive loop.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use pingora::protocols::Stream;
use tokio::io::AsyncWriteExt;

use super::checks::Refusal;
use super::downstream::{DownError, Downstream, Reply, Request};
use super::error::ProxyError;
use super::headers::Hops;
use super::outgoing::Extras;
use super::respond::HSTS;
use super::uri::request_line;
use super::{Client, Gateway, HeadFacts, REQUEST_ID};
use crate::http1::{Buffered, Http1Error, OutResponse, RequestBody, RequestHead, ServerConn};

/// A client connection as the codec drives it.
pub(crate) type H1Conn = ServerConn<Stream>;

/// The current request of an HTTP/1 connection.
pub(crate) struct H1<'c> {
    conn: &'c mut H1Conn,
    empty: bool,
    status: Option<StatusCode>,
    /// Request body bytes read.
    received: u64,
}

impl Gateway {
    /// One request of an HTTP/1 connection, from its head (or the error reading it) to
    /// its logged end. Returns whether the connection can carry another request.
    pub(crate) async fn serve_h1(
        &self,
        conn: &mut H1Conn,
        head: Result<RequestHead, Http1Error>,
        client: &Client,
    ) -> bool {
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                let Some(refusal) = head_refusal(&e) else {
                    return false;
                };
                tracing::debug!(error = %e, "malformed request head");
                let mut down = H1 {
                    conn,
                    empty: true,
                    status: None,
                    received: 0,
                };
                self.refuse_unparsed(&mut down, refusal, client).await;
                return false;
            }
        };
        // The request line as the client sent it: one pass of the grammar check.
        let facts = HeadFacts {
            line: Some(request_line(head.request_line())),
            head_len: Some(head.head_len()),
        };
        let empty = matches!(
            head.framing.body,
            RequestBody::Empty | RequestBody::Length(0)
        );
        let req = Request {
            method: head.method,
            uri: head.uri,
            version: head.version,
            headers: head.headers,
        };
        let mut down = H1 {
            conn,
            empty,
            status: None,
            received: 0,
        };
        if crate::lifecycle::stopping() {
            down.set_close();
        }
        self.serve(&mut down, req, client, facts).await;
        down.conn.is_reusable()
    }
}

/// The answer to a head that could not be read: `None` when the client is gone. The
/// codec's head limit is pingora's 1 MiB, answered 400 as pingora did; the listener's
/// `max_header_size` is checked on the parsed head (431).
fn head_refusal(e: &Http1Error) -> Option<Refusal> {
    let (status, reason) = match e {
        Http1Error::HeadTooLarge { .. } => (400, "request head over 1 MiB"),
        Http1Error::TooManyHeaders { .. } => (431, "more header fields than the parser takes"),
        Http1Error::TargetTooLong { .. } => (414, "request target longer than max_uri_length"),
        Http1Error::Framing(reason) => (400, *reason),
        Http1Error::Malformed(_) | Http1Error::InvalidHead(_) => (400, "malformed request head"),
        _ => return None,
    };
    Some(Refusal { status, reason })
}

impl Downstream for H1<'_> {
    fn set_max_body(&mut self, limit: u64) {
        self.conn.set_max_body(limit);
    }

    fn body_empty(&self) -> bool {
        self.empty
    }

    fn body_done(&self) -> bool {
        self.conn.body_done()
    }

    async fn read_body_or_reset(&mut self, body: bool) -> Result<Option<Bytes>, DownError> {
        // An HTTP/1 client that goes away is seen when the response is written to it.
        match body {
            true => self.read_body().await,
            false => std::future::pending().await,
        }
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownError> {
        let piece = self.conn.read_body().await?;
        self.received += piece.as_ref().map_or(0, |p| p.len() as u64);
        Ok(piece)
    }

    fn buffered_body(&mut self) -> Result<Option<Bytes>, DownError> {
        match self.conn.buffered_body()? {
            Buffered::Data(data) => {
                self.received += data.len() as u64;
                Ok(Some(data))
            }
            Buffered::End | Buffered::Empty => Ok(None),
        }
    }

    async fn write_interim(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<(), DownError> {
        Ok(self.conn.write_interim(status, headers, &[]).await?)
    }

    async fn write_head(
        &mut self,
        reply: Reply<'_>,
        body: Bytes,
        end: bool,
    ) -> Result<(), DownError> {
        let mut extra = Extras::default();
        extra.push(b"x-request-id", reply.request_id.as_bytes());
        if let Some(hsts) = reply.hsts {
            extra.push(b"strict-transport-security", hsts.as_bytes());
        }
        for (name, value) in reply.extra {
            extra.push(name.as_str().as_bytes(), value.as_bytes());
        }
        let hops = Hops::response(&reply.headers, reply.status);
        let hsts = reply.hsts.is_some();
        let relayed = reply.relayed;
        let skip = |name: &http::header::HeaderName| {
            relayed && (hops.skip(name) || name == REQUEST_ID || (hsts && name == HSTS))
        };
        let resp = OutResponse {
            status: reply.status,
            reason: reply.reason,
            headers: &reply.headers,
            skip: &skip,
            extra: extra.as_slice(),
            body: reply.body,
        };
        self.status = Some(reply.status);
        Ok(self.conn.write_head(resp, &body, end).await?)
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<(), DownError> {
        Ok(self.conn.write_body(&data, end).await?)
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownError> {
        Ok(self.conn.write_trailers(&trailers).await?)
    }

    fn status(&self) -> Option<StatusCode> {
        self.status
    }

    fn body_bytes_sent(&self) -> u64 {
        self.conn.body_bytes_sent()
    }

    fn body_bytes_received(&self) -> u64 {
        self.received
    }

    fn set_close(&mut self) {
        self.conn.set_close();
    }

    async fn tunnel(&mut self, mut backend: Stream, early: BytesMut) -> Result<(), ProxyError> {
        let Some((client, client_early)) = self.conn.upgraded() else {
            return Err(ProxyError::Tunnel(std::io::ErrorKind::InvalidInput.into()));
        };
        if !client_early.is_empty() {
            backend
                .write_all(&client_early)
                .await
                .map_err(ProxyError::Tunnel)?;
        }
        if !early.is_empty() {
            client.write_all(&early).await.map_err(ProxyError::Tunnel)?;
            client.flush().await.map_err(ProxyError::Tunnel)?;
        }
        tokio::io::copy_bidirectional(client, &mut backend)
            .await
            .map_err(ProxyError::Tunnel)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_that_cannot_be_read_get_the_tables_statuses() {
        let status = |e: Http1Error| head_refusal(&e).map(|r| r.status);
        assert_eq!(status(Http1Error::HeadTooLarge { limit: 1 }), Some(400));
        assert_eq!(status(Http1Error::TargetTooLong { limit: 1 }), Some(414));
        assert_eq!(status(Http1Error::TooManyHeaders { limit: 1 }), Some(431));
        assert_eq!(status(Http1Error::Framing("x")), Some(400));
        assert_eq!(status(Http1Error::Closed("x")), None);
    }
}
