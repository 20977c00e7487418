//! The collector end of OTLP: an export request POSTed as `application/x-protobuf` over
//! HTTP/1.1 (the gateway's own client), or sent as a unary gRPC call
//! `TraceService/Export` over HTTP/2 (the `h2` crate). One connection, kept open
//! between exports and made again when it fails; a request that fails on a kept
//! connection (the collector closed it while idle) is sent once more on a new one.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method};
use tokio::net::TcpStream;

use crate::config::OtlpProtocol;
use crate::http1::{ClientConn, HeadLimits, OutBody, OutRequest, MAX_HEADER_SLOTS};

/// The gRPC method of an export.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Most bytes of a collector's answer read (its body is discarded).
const MAX_ANSWER: usize = 64 * 1024;
const LIMITS: HeadLimits = HeadLimits {
    max_head: 16 * 1024,
    max_headers: MAX_HEADER_SLOTS,
    max_target: 0,
    reserve: 0,
};

/// Why an export was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("the endpoint {0:?} is not an http:// URL with a host")]
    Endpoint(String),
    #[error("cannot connect to {authority}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1.1 with the collector")]
    Http1(#[source] crate::http1::Http1Error),
    #[error("HTTP/2 with the collector")]
    Http2(#[source] h2::Error),
    #[error("the collector answered {0}")]
    Status(u16),
    #[error("the collector answered grpc-status {status}: {message}")]
    Grpc { status: String, message: String },
    #[error("the collector's answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

/// A connection kept between exports.
enum Conn {
    None,
    Http1(TcpStream),
    Http2(h2::client::SendRequest<Bytes>),
}

/// Where and how export requests go.
pub(crate) struct Collector {
    protocol: OtlpProtocol,
    /// `host:port` (port 80 when the URL has none).
    authority: String,
    host: HeaderValue,
    /// The HTTP request target, or the gRPC URI.
    target: String,
    grpc_uri: http::Uri,
    conn: Conn,
}

impl Collector {
    /// The collector at `endpoint` (an `http://` URL, as the config checked it).
    pub(crate) fn new(endpoint: &str, protocol: OtlpProtocol) -> Result<Self, SendError> {
        let bad = || SendError::Endpoint(endpoint.to_owned());
        let uri = endpoint.parse::<http::Uri>().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        let authority_text = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let grpc_uri = http::Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(GRPC_PATH)
            .build()
            .map_err(|_| bad())?;
        Ok(Self {
            protocol,
            authority: authority_text,
            host,
            target: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            grpc_uri,
            conn: Conn::None,
        })
    }

    /// Sends one export request (its protobuf bytes); `Ok` when the collector took it.
    pub(crate) async fn send(&mut self, body: Bytes) -> Result<(), SendError> {
        let kept = !matches!(self.conn, Conn::None);
        match self.try_send(body.clone()).await {
            Err(SendError::Http1(_) | SendError::Http2(_)) if kept => {
                self.conn = Conn::None;
                self.try_send(body).await
            }
            done => done,
        }
    }

    async fn try_send(&mut self, body: Bytes) -> Result<(), SendError> {
        let done = match self.protocol {
            OtlpProtocol::Http => self.post(&body).await,
            OtlpProtocol::Grpc => self.call(body).await,
        };
        if done.is_err() {
            self.conn = Conn::None;
        }
        done
    }

    async fn connect(&self) -> Result<TcpStream, SendError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| SendError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// OTLP/HTTP: a POST of the protobuf body; any 2xx is success.
    async fn post(&mut self, body: &[u8]) -> Result<(), SendError> {
        let stream = match std::mem::replace(&mut self.conn, Conn::None) {
            Conn::Http1(stream) => stream,
            _ => self.connect().await?,
        };
        let mut conn = ClientConn::new(stream);
        let mut fields = HeaderMap::with_capacity(3);
        fields.insert(HOST, self.host.clone());
        fields.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        fields.insert(USER_AGENT, HeaderValue::from_static("gateway"));
        let skip = |_: &http::HeaderName| false;
        let out = OutRequest {
            method: &Method::POST,
            target: self.target.as_bytes(),
            headers: &fields,
            skip: &skip,
            extra: &[],
            body: OutBody::Length(body.len() as u64),
        };
        conn.write_request(out, body, true)
            .await
            .map_err(SendError::Http1)?;
        let head = loop {
            let head = conn
                .read_response(&LIMITS)
                .await
                .map_err(SendError::Http1)?;
            if !head.is_interim() {
                break head;
            }
        };
        let mut read = 0;
        while let Some(piece) = conn.read_body().await.map_err(SendError::Http1)? {
            read += piece.len();
            if read > MAX_ANSWER {
                return Err(SendError::TooLarge);
            }
        }
        if let Some(stream) = conn.into_reusable() {
            self.conn = Conn::Http1(stream);
        }
        if head.status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(head.status.as_u16()))
        }
    }

    /// gRPC: one length-prefixed message, its answer's `grpc-status` (in the trailers,
    /// or in the head of a trailers-only answer).
    async fn call(&mut self, body: Bytes) -> Result<(), SendError> {
        let mut client = match std::mem::replace(&mut self.conn, Conn::None) {
            Conn::Http2(client) => client,
            _ => {
                let stream = self.connect().await?;
                let (client, connection) = h2::client::handshake(stream)
                    .await
                    .map_err(SendError::Http2)?;
                // Runs while the export thread's runtime runs (during each export).
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
        client = client.ready().await.map_err(SendError::Http2)?;
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(self.grpc_uri.clone())
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(USER_AGENT, "gateway")
            .body(())
            .map_err(|_| SendError::Endpoint(self.target.clone()))?;
        let (answer, mut stream) = client
            .send_request(request, false)
            .map_err(SendError::Http2)?;
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        framed.extend_from_slice(&body);
        stream
            .send_data(Bytes::from(framed), true)
            .map_err(SendError::Http2)?;
        let answer = answer.await.map_err(SendError::Http2)?;
        self.conn = Conn::Http2(client);
        let (head, mut data) = answer.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(SendError::Status(head.status.as_u16()));
        }
        if let Some(status) = head.headers.get("grpc-status") {
            return grpc_status(status, &head.headers);
        }
        let mut read = 0;
        while let Some(piece) = data.data().await {
            let piece = piece.map_err(SendError::Http2)?;
            read += piece.len();
            let _ = data.flow_control().release_capacity(piece.len());
            if read > MAX_ANSWER {
                return Err(SendError::TooLarge);
            }
        }
        let trailers = data
            .trailers()
            .await
            .map_err(SendError::Http2)?
            .unwrap_or_default();
        match trailers.get("grpc-status") {
            Some(status) => grpc_status(status, &trailers),
            None => Err(SendError::Grpc {
                status: "(none)".into(),
                message: "the answer ended without grpc-status".into(),
            }),
        }
    }
}

fn grpc_status(status: &HeaderValue, fields: &HeaderMap) -> Result<(), SendError> {
    if status.as_bytes() == b"0" {
        return Ok(());
    }
    let text = |v: Option<&HeaderValue>| {
        v.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    Err(SendError::Grpc {
        status: text(Some(status)),
        message: text(fields.get("grpc-message")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gives_the_address_the_target_and_the_grpc_uri() {
        let c = Collector::new("http://otel:4318/v1/traces", OtlpProtocol::Http).unwrap();
        assert_eq!(c.authority, "otel:4318");
        assert_eq!(c.host, "otel:4318");
        assert_eq!(c.target, "/v1/traces");
        let c = Collector::new("http://otel", OtlpProtocol::Grpc).unwrap();
        // No port: HTTP's.
        assert_eq!(c.authority, "otel:80");
        assert_eq!(c.host, "otel");
        assert_eq!(
            c.grpc_uri.to_string(),
            "http://otel/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        let c = Collector::new("http://[::1]:4317", OtlpProtocol::Grpc).unwrap();
        assert_eq!(c.authority, "[::1]:4317");
        assert!(Collector::new("not a url", OtlpProtocol::Http).is_err());
    }

    #[test]
    fn grpc_status_zero_is_success_and_others_carry_their_message() {
        let mut fields = HeaderMap::new();
        assert!(grpc_status(&HeaderValue::from_static("0"), &fields).is_ok());
        fields.insert("grpc-message", HeaderValue::from_static("overloaded"));
        let e = grpc_status(&HeaderValue::from_static("8"), &fields).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the collector answered grpc-status 8: overloaded"
        );
    }
}
