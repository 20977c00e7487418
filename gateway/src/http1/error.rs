//! The codec's error: what was wrong with a message or its connection, and the status a
//! request with that fault is answered with.

use std::io;

/// Everything the HTTP/1 codec can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// The head does not parse as HTTP/1 (httparse's verdict).
    #[error("malformed message head")]
    Malformed(#[source] httparse::Error),
    /// The head parses, but a part of it is not valid for the `http` types.
    #[error("invalid {0} in the message head")]
    InvalidHead(&'static str),
    /// No end of the head within the size limit, or a head larger than it.
    #[error("message head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    /// More header fields than the limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    /// The request target is longer than the limit.
    #[error("request target longer than {limit} bytes")]
    TargetTooLong { limit: usize },
    /// Content-Length and Transfer-Encoding do not give one unambiguous body length.
    #[error("invalid body framing: {0}")]
    Framing(&'static str),
    /// A chunked body that breaks the chunked grammar or its limits.
    #[error("invalid chunked body: {0}")]
    InvalidChunk(&'static str),
    /// A trailer section larger than its limit.
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    /// A body over the caller's limit.
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed {0}")]
    Closed(&'static str),
    /// Reading or writing the connection failed.
    #[error("connection I/O failed")]
    Io(#[source] io::Error),
    /// The caller broke the message's own rules (more body than declared, a second
    /// response head, a body after the end).
    #[error("invalid use of the connection: {0}")]
    Misuse(&'static str),
}

impl Http1Error {
    /// The status a client gets for a request that failed with this error; 0 when no
    /// answer makes sense (the client is gone, or the gateway itself misused the
    /// connection). A backend response with any of these faults is a 502 instead.
    pub fn request_status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::InvalidHead(_)
            | Self::Framing(_)
            | Self::InvalidChunk(_) => 400,
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::TrailersTooLarge { .. } => 431,
            Self::TargetTooLong { .. } => 414,
            Self::BodyTooLarge { .. } => 413,
            Self::Closed(_) | Self::Io(_) | Self::Misuse(_) => 0,
        }
    }

    /// Whether the peer went away or the connection failed (as opposed to a message
    /// that broke the rules).
    pub fn is_connection(&self) -> bool {
        matches!(self, Self::Closed(_) | Self::Io(_))
    }

    /// Whether it is a read or write that timed out (the stream's own timers).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }
}

impl From<io::Error> for Http1Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_fault() {
        assert_eq!(
            Http1Error::Malformed(httparse::Error::Token).request_status(),
            400
        );
        assert_eq!(Http1Error::HeadTooLarge { limit: 1 }.request_status(), 431);
        assert_eq!(
            Http1Error::TooManyHeaders { limit: 1 }.request_status(),
            431
        );
        assert_eq!(Http1Error::TargetTooLong { limit: 1 }.request_status(), 414);
        assert_eq!(Http1Error::BodyTooLarge { limit: 1 }.request_status(), 413);
        assert_eq!(Http1Error::Framing("x").request_status(), 400);
        assert_eq!(Http1Error::Closed("x").request_status(), 0);
        let timeout = Http1Error::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(timeout.is_timeout() && timeout.is_connection());
    }
}
