//! The gateway's own HTTP/1 codec, both legs, over any `AsyncRead + AsyncWrite` stream
//! (pingora-core's `Stream`): heads parsed by httparse straight into `http` types,
//! framing by RFC 9112 §6, chunked coding, heads written from slices in one write.

mod chunked;
pub mod date;
mod error;
mod framing;
mod head;
mod request;
mod response;
pub mod write;

pub use chunked::{
    chunk_size_line, last_chunk, ChunkedDecoder, ChunkedLimits, Decoded, LAST_CHUNK,
};
pub use error::Http1Error;
pub use framing::{RequestBody, RequestFraming, ResponseBody, ResponseFraming};
pub use head::{HeadLimits, HeadScan, MAX_HEADER_SLOTS};
pub use request::{parse_head as parse_request_head, parse_request, RequestHead};
pub use response::{parse_head as parse_response_head, parse_response, ResponseHead};
pub use write::{Extra, OutBody};
