//! The gateway's own HTTP/1 codec, both legs, over any `AsyncRead + AsyncWrite` stream
//! (pingora-core's `Stream`): heads parsed by httparse straight into `http` types,
//! framing by RFC 9112 §6, chunked coding, heads written from slices in one write.
//!
//! - [`ServerConn`]: a client connection: [`ServerConn::read_request`] gives each
//!   [`RequestHead`], [`ServerConn::read_body`] its body, [`ServerConn::write_head`] /
//!   [`ServerConn::write_body`] the response; [`ServerConn::is_reusable`] after it.
//! - [`ClientConn`]: a backend connection: [`ClientConn::write_request`],
//!   [`ClientConn::read_response`] ([`ResponseHead`]), [`ClientConn::read_body`],
//!   [`ClientConn::into_reusable`] for the pool.
//! - The pieces, for tests and fuzzing: [`parse_request`], [`parse_response`],
//!   [`ChunkedDecoder`], [`write`].

mod chunked;
mod client;
pub mod date;
mod error;
mod framing;
mod head;
mod io;
mod request;
mod response;
mod server;
pub mod write;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The buffer types of this API (for callers without their own `bytes` dependency).
pub use bytes::{Bytes, BytesMut};
pub use chunked::{
    chunk_size_line, last_chunk, ChunkedDecoder, ChunkedLimits, Decoded, LAST_CHUNK,
};
pub use client::{ClientConn, OutRequest};
pub use error::Http1Error;
pub use framing::{RequestBody, RequestFraming, ResponseBody, ResponseFraming};
pub use head::{HeadLimits, HeadScan, MAX_HEADER_SLOTS};
pub use io::Buffered;
pub use request::{parse_head as parse_request_head, parse_request, RequestHead};
pub use response::{parse_head as parse_response_head, parse_response, ResponseHead};
pub use server::{OutResponse, ServerConn};
pub use write::{keep_all, Extra, OutBody, Skip};

impl RequestHead {
    /// How this request's body goes on to a backend.
    pub fn out_body(&self) -> OutBody {
        match self.framing.body {
            RequestBody::Empty => OutBody::None,
            RequestBody::Length(n) => OutBody::Length(n),
            RequestBody::Chunked => OutBody::Unknown,
        }
    }
}

impl ResponseHead {
    /// How this response's body goes on to a client: its length when it has one (a
    /// HEAD or 304 response included), else unknown (chunked, or until close).
    pub fn out_body(&self) -> OutBody {
        match (self.framing.body, self.framing.content_length) {
            (ResponseBody::Length(n), _) => OutBody::Length(n),
            (ResponseBody::Chunked | ResponseBody::UntilClose, _) => OutBody::Unknown,
            (ResponseBody::Empty, Some(n)) => OutBody::Length(n),
            (ResponseBody::Empty, None) => OutBody::None,
        }
    }
}
