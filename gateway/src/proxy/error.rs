//! Why a request failed, and what its client is answered (or not) for it.

use crate::http1::Http1Error;

use super::downstream::DownError;

/// Everything a proxied request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The client's side: it went away, broke the protocol, or sent too much body.
    #[error("client side failed")]
    Client(#[source] DownError),
    /// The routed upstream has no backend to send to (none discovered yet).
    #[error("upstream has no backends")]
    NoBackend,
    /// No connection to the backend could be made within `connect_timeout`.
    #[error("cannot connect to backend")]
    Connect(#[source] Box<pingora::Error>),
    /// The backend's connection failed, or its response broke HTTP/1's rules.
    #[error("backend connection failed while {0}")]
    Backend(&'static str, #[source] Http1Error),
    /// The backend was silent for `read_timeout`, or did not take the request within
    /// `write_timeout`.
    #[error("backend timed out while {0}")]
    BackendTimeout(&'static str),
    /// The backend's HTTP/2 connection or stream failed.
    #[error("backend HTTP/2 stream failed while {0}")]
    H2Backend(&'static str, #[source] h2::Error),
    /// The request cannot be put into an HTTP/2 request for the backend.
    #[error("cannot forward the request over HTTP/2: {0}")]
    BadForBackend(&'static str),
    /// A gRPC call from an HTTP/1 client (gRPC needs HTTP/2).
    #[error("gRPC call over HTTP/1")]
    GrpcOverHttp1,
    /// The route's upgrade tunnel broke.
    #[error("upgraded connection failed")]
    Tunnel(#[source] std::io::Error),

    #[error("cannot compress the response")]
    Compress(#[source] crate::routes::filters::compression::EncodeError),
}

impl ProxyError {
    /// The status to answer with; 0 when no answer makes sense (the client is gone).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Client(e) => e.status(),
            Self::NoBackend | Self::Connect(_) | Self::Backend(..) | Self::H2Backend(..) => 502,
            Self::BadForBackend(_) => 400,
            Self::GrpcOverHttp1 => 505,
            Self::BackendTimeout(_) => 504,
            Self::Tunnel(_) => 0,
            Self::Compress(_) => 500,
        }
    }

    /// Whether the request failed through its client alone (logged at DEBUG, so no
    /// client can flood the log); a backend's failure stays a WARN.
    pub(crate) fn is_clients_doing(&self) -> bool {
        matches!(
            self,
            Self::Client(_) | Self::Tunnel(_) | Self::GrpcOverHttp1
        )
    }

    /// Whether the backend's connection closed or broke before answering: a request
    /// that can be sent again may go to another backend.
    pub(crate) fn is_backend_connection(&self) -> bool {
        match self {
            Self::Backend(_, e) => e.is_connection() && !e.is_timeout(),
            Self::H2Backend(_, e) => e.is_io() || e.is_reset() || e.is_go_away(),
            _ => false,
        }
    }

    /// Whether an HTTP/2 backend said it did not process the request: it refused the
    /// stream, or the stream was past the last one its `GOAWAY` keeps (RFC 9113 §8.7),
    /// or the connection was already going away. Any request may be sent again.
    pub(crate) fn is_refused(&self) -> bool {
        match self {
            Self::H2Backend(_, e) => {
                e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote())
            }
            _ => false,
        }
    }

    /// The failure's kind, as OpenTelemetry's `error.type` (a few fixed words).
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Self::Client(_) => "client_failed",
            Self::NoBackend => "no_backend",
            Self::Connect(_) => "connect_failed",
            Self::Backend(..) => "backend_failed",
            Self::BackendTimeout(_) => "timeout",
            Self::H2Backend(..) => "backend_stream_failed",
            Self::BadForBackend(_) => "not_forwardable",
            Self::GrpcOverHttp1 => "grpc_over_http1",
            Self::Tunnel(_) => "tunnel_failed",
            Self::Compress(_) => "compression_failed",
        }
    }

    /// Whether the backend itself failed (its attempt counts as an `error`).
    pub(crate) fn is_backends_doing(&self) -> bool {
        matches!(
            self,
            Self::Backend(..) | Self::H2Backend(..) | Self::BackendTimeout(_)
        )
    }
}

impl From<DownError> for ProxyError {
    fn from(e: DownError) -> Self {
        Self::Client(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_statuses() {
        let closed = || Http1Error::Closed("x");
        assert_eq!(ProxyError::NoBackend.status(), 502);
        assert_eq!(ProxyError::Backend("reading", closed()).status(), 502);
        assert_eq!(ProxyError::BackendTimeout("reading").status(), 504);
        assert_eq!(ProxyError::Client(DownError::H1(closed())).status(), 0);
        assert_eq!(ProxyError::Client(DownError::BodyTooLarge).status(), 413);
        let bad_chunk = DownError::H1(Http1Error::InvalidChunk("size"));
        assert_eq!(ProxyError::Client(bad_chunk).status(), 400);
    }

    #[test]
    fn client_failures_are_told_from_backend_ones() {
        assert!(ProxyError::Client(DownError::BodyTooLarge).is_clients_doing());
        assert!(!ProxyError::NoBackend.is_clients_doing());
        assert!(!ProxyError::BackendTimeout("reading").is_clients_doing());
        let reset = ProxyError::Backend("reading", Http1Error::Closed("x"));
        assert!(reset.is_backend_connection() && reset.is_backends_doing());
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(!ProxyError::Backend("reading", timeout.into()).is_backend_connection());
    }
}
