//! What request and response heads share: their limits, the search for the blank line
//! that ends a head (incremental, only new bytes are looked at), and the conversion of
//! httparse's fields into an `http::HeaderMap` whose values share the head's buffer.

use std::ops::Range;
use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use memchr::memmem::Finder;

use super::framing::FieldScan;
use super::Http1Error;

/// Header slots the parser has at most (pingora's limit too): larger `max_headers` are
/// capped to it. They sit uninitialised on the stack of the (synchronous) parse.
pub const MAX_HEADER_SLOTS: usize = 256;

/// The two shapes of a blank line after a line end (memchr's SIMD substring search:
/// one pass over the head for each, instead of a stop at every line end).
static CRLF_BLANK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
static LF_BLANK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));

/// Limits on a message head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes from the first byte through the blank line: past it, 431 (or 414 when it
    /// is the request line that does not end).
    pub max_head: usize,
    /// Header fields (up to [`MAX_HEADER_SLOTS`]): past it, 431.
    pub max_headers: usize,
    /// Bytes of the request target: past it, 414 (requests only).
    pub max_target: usize,
    /// Room made in the header map for fields the caller adds (forwarding headers, a
    /// request id), so those inserts do not grow it.
    pub reserve: usize,
}

impl Default for HeadLimits {
    /// 64 KiB heads, 256 fields, 8 KiB targets, room for 6 more fields.
    fn default() -> Self {
        Self {
            max_head: 64 * 1024,
            max_headers: MAX_HEADER_SLOTS,
            max_target: 8 * 1024,
            reserve: 6,
        }
    }
}

/// Where the head being read ends, found as bytes arrive: the blank line after the
/// start line (CRLF or bare LF line ends, as httparse accepts), after any empty lines
/// before the start line (RFC 9112 §2.2, which httparse skips too).
#[derive(Debug, Default, Clone)]
pub struct HeadScan {
    /// Index of the start line's first byte, once the leading empty lines are passed.
    start: Option<usize>,
    /// Bytes already looked at.
    scanned: usize,
}

impl HeadScan {
    /// The length of the head at the front of `buf` (through its blank line), or `None`
    /// while it has not ended; `buf` holds the bytes of earlier calls and maybe more.
    pub fn find(&mut self, buf: &[u8]) -> Option<usize> {
        let start = match self.start {
            Some(start) => start,
            None => {
                let mut i = self.scanned;
                loop {
                    match (buf.get(i), buf.get(i + 1)) {
                        (Some(b'\n'), _) => i += 1,
                        (Some(b'\r'), Some(b'\n')) => i += 2,
                        (Some(b'\r'), None) | (None, _) => {
                            self.scanned = i;
                            return None;
                        }
                        (Some(_), _) => break,
                    }
                }
                self.start = Some(i);
                self.scanned = i;
                i
            }
        };
        // A blank line is `\n\r\n` or `\n\n` whose first LF ends the start line or a
        // field line (at `start` or later: the empty lines before `start` were skipped,
        // so no match can begin before it). A match across the previous scan's end
        // begins at most two bytes before it.
        let from = self.scanned.saturating_sub(2).max(start);
        let rest = buf.get(from..)?;
        let crlf = CRLF_BLANK.find(rest).map(|at| at + 3);
        let window = crlf.map_or(rest, |end| rest.get(..end).unwrap_or(rest));
        let lf = LF_BLANK.find(window).map(|at| at + 2);
        let end = match (crlf, lf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match end {
            Some(end) => {
                self.scanned = from + end;
                Some(from + end)
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// The start line's first byte, once found.
    pub fn start(&self) -> Option<usize> {
        self.start
    }

    /// Ready for the next head.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The range `part` covers in `whole`, if it lies inside it.
pub(crate) fn range_in(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// `part` (a slice of `whole`) as a `Bytes` sharing `whole`'s buffer.
pub(crate) fn shared(whole: &Bytes, part: &[u8]) -> Option<Bytes> {
    if part.is_empty() {
        return Some(Bytes::new());
    }
    range_in(whole, part).map(|r| whole.slice(r))
}

/// httparse's fields as a header map whose values share `raw` (no copy), each field
/// also shown to `scan`. Standard names map to `http`'s static names (no allocation).
/// `obs_fold`: a value may hold line folds (responses), which become spaces (RFC 9112
/// §5.2).
pub(crate) fn header_map(
    raw: &Bytes,
    fields: &[httparse::Header<'_>],
    reserve: usize,
    scan: &mut FieldScan,
    obs_fold: bool,
) -> Result<HeaderMap, Http1Error> {
    let too_many = |_| Http1Error::TooManyHeaders {
        limit: fields.len(),
    };
    let mut map = HeaderMap::try_with_capacity(fields.len() + reserve).map_err(too_many)?;
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Http1Error::InvalidHead("header name"))?;
        let value = match shared(raw, field.value).map(HeaderValue::from_maybe_shared) {
            Some(Ok(value)) => value,
            _ if obs_fold => unfolded(field.value)?,
            _ => return Err(Http1Error::InvalidHead("header value")),
        };
        scan.field(&name, value.as_bytes());
        map.try_append(name, value).map_err(too_many)?;
    }
    Ok(map)
}

/// A folded value with each CR and LF replaced by a space (a copy: folds are rare).
fn unfolded(value: &[u8]) -> Result<HeaderValue, Http1Error> {
    let spaced: Vec<u8> = value
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    HeaderValue::from_bytes(&spaced).map_err(|_| Http1Error::InvalidHead("header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_all(head: &[u8]) -> Option<usize> {
        HeadScan::default().find(head)
    }

    #[test]
    fn heads_end_at_their_blank_line() {
        assert_eq!(find_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(find_all(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(find_all(b"GET / HTTP/1.1\nHost: a\n\r\n"), Some(25));
        assert_eq!(find_all(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(find_all(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(find_all(b"GET / HTTP/1.1\r\nX: \r\r\n"), None);
        // Empty lines before the start line are skipped, not an end.
        assert_eq!(find_all(b"\r\n\nGET / HTTP/1.1\r\n\r\n"), Some(21));
        assert_eq!(find_all(b"\r\n\r\n"), None);
        assert_eq!(find_all(b""), None);
    }

    #[test]
    fn the_scan_resumes_where_it_stopped() {
        let head = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\nrest";
        let whole = find_all(head);
        for split in 0..head.len() {
            let mut scan = HeadScan::default();
            let first = scan.find(&head[..split]);
            let found = first.or_else(|| scan.find(head));
            assert_eq!(found, whole, "split at {split}");
        }
        // Byte by byte.
        let mut scan = HeadScan::default();
        let found = (1..=head.len()).find_map(|n| scan.find(&head[..n]));
        assert_eq!(found, whole);
    }

    #[test]
    fn shared_slices_stay_inside() {
        let whole = Bytes::from_static(b"abcdef");
        assert_eq!(shared(&whole, &whole[2..4]).unwrap(), "cd");
        assert_eq!(shared(&whole, b"").unwrap(), "");
        let elsewhere = vec![b'z'; 2];
        assert!(shared(&whole, &elsewhere).is_none());
        assert_eq!(range_in(&whole, &whole[1..]), Some(1..6));
    }
}
