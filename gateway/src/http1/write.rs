//! The head writer: start lines (common statuses from a static table), header fields
//! from name/value slices, lengths in decimal, all into one buffer that the body's first
//! bytes can follow into the same write.

use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode};

use super::date;

/// How the body of a message being written is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutBody {
    /// No body. A response still gets `Content-Length: 0` where its status has a body.
    None,
    /// This many bytes: `Content-Length`.
    Length(u64),
    /// A length not known in advance: chunked (a response to an HTTP/1.0 client: until
    /// the connection closes, with `Connection: close`).
    Unknown,
}

/// A header field written as is: `name: value` CRLF. Names and values come from
/// `http`'s types or [`super::RequestHead`]/[`super::ResponseHead`], already valid.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The fields of `headers` except those `skip` names (names go out as `http` keeps
/// them: lower case, as HTTP/2 and HAProxy send them).
pub fn fields(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    for (name, value) in headers {
        if !skip(name) {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// About the bytes a head takes: its fields (those `skip` leaves out counted too) and
/// `extra`, with room for the start line and the framing fields; to size the output
/// buffer once instead of growing it field by field.
pub fn head_size(headers: &HeaderMap, extra: Extra<'_>) -> usize {
    let fields = headers.iter().fold(0, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    });
    let extra = extra
        .iter()
        .fold(0, |n, (name, value)| n + name.len() + value.len() + 4);
    START_AND_FRAMING + fields + extra
}

/// A start line, `Date`, `Content-Length` or `Transfer-Encoding`, `Connection` and the
/// blank line, at most (a longer target or reason grows the buffer).
const START_AND_FRAMING: usize = 192;

/// Which fields of a map are left out when it is written (hop-by-hop ones, say), so
/// the map need not be edited first; `Sync` so the write's future stays `Send`.
pub type Skip<'a> = &'a (dyn Fn(&HeaderName) -> bool + Sync);

/// A [`Skip`] that keeps every field.
pub fn keep_all(_: &HeaderName) -> bool {
    false
}

/// Extra fields as name/value slices (a request id, HSTS, the gateway's own headers).
pub type Extra<'a> = &'a [(&'a [u8], &'a [u8])];

/// Writes `extra`.
pub fn extra_fields(out: &mut Vec<u8>, extra: Extra<'_>) {
    for (name, value) in extra {
        field(out, name, value);
    }
}

/// `HTTP/1.1 <status> <reason>` CRLF: the common ones from a table; `reason` replaces the
/// standard phrase when given and printable (a backend's own phrase).
pub fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: Option<&[u8]>) {
    let custom = reason
        .filter(|r| !r.is_empty() && r.iter().all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f)))
        .filter(|r| Some(*r) != status.canonical_reason().map(str::as_bytes));
    if custom.is_none() {
        if let Some(line) = common_status_line(status) {
            out.extend_from_slice(line);
            return;
        }
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let phrase = custom.or_else(|| status.canonical_reason().map(str::as_bytes));
    out.extend_from_slice(phrase.unwrap_or_default());
    out.extend_from_slice(b"\r\n");
}

fn common_status_line(status: StatusCode) -> Option<&'static [u8]> {
    Some(match status.as_u16() {
        100 => b"HTTP/1.1 100 Continue\r\n",
        101 => b"HTTP/1.1 101 Switching Protocols\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        307 => b"HTTP/1.1 307 Temporary Redirect\r\n",
        308 => b"HTTP/1.1 308 Permanent Redirect\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        413 => b"HTTP/1.1 413 Payload Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        _ => return None,
    })
}

/// `<method> <target> HTTP/1.1` CRLF (the target as the client sent it, or rewritten).
pub fn request_line(out: &mut Vec<u8>, method: &Method, target: &[u8]) {
    out.reserve(method.as_str().len() + target.len() + 11);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// `Content-Length: <n>` CRLF.
pub fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `Date: <now>` CRLF, from the once-a-second cache.
pub fn date(out: &mut Vec<u8>) {
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(&date::now());
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
pub fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16, reason: Option<&[u8]>) -> String {
        let mut out = Vec::new();
        status_line(&mut out, StatusCode::from_u16(status).unwrap(), reason);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn status_lines() {
        assert_eq!(line(200, None), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(200, Some(b"OK")), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(200, Some(b"Fine")), "HTTP/1.1 200 Fine\r\n");
        assert_eq!(line(200, Some(b"")), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(200, Some(b"a\r\nX: y")), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(418, None), "HTTP/1.1 418 I'm a teapot\r\n");
        assert_eq!(line(599, None), "HTTP/1.1 599 \r\n");
        assert_eq!(line(599, Some(b"Custom")), "HTTP/1.1 599 Custom\r\n");
        // The table agrees with `http`'s phrases.
        for code in 100..600 {
            if let Ok(status) = StatusCode::from_u16(code) {
                if let Some(table) = common_status_line(status) {
                    let built =
                        format!("HTTP/1.1 {code} {}\r\n", status.canonical_reason().unwrap());
                    assert_eq!(table, built.as_bytes());
                }
            }
        }
    }

    #[test]
    fn fields_and_numbers() {
        let mut out = Vec::new();
        request_line(&mut out, &Method::GET, b"/a?b");
        let mut map = HeaderMap::new();
        map.insert("host", "a.test".parse().unwrap());
        map.insert("content-length", "3".parse().unwrap());
        fields(&mut out, &map, |n| n == http::header::CONTENT_LENGTH);
        extra_fields(&mut out, &[(b"X-Request-Id", b"abc")]);
        content_length(&mut out, 3);
        assert_eq!(
            out,
            b"GET /a?b HTTP/1.1\r\nhost: a.test\r\nX-Request-Id: abc\r\nContent-Length: 3\r\n"
        );
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        date(&mut out);
        assert_eq!(out.len(), 6 + date::DATE_LEN + 2);
    }
}
