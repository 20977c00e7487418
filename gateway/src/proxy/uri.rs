//! The grammar of a request line, its target and a host (RFC 9112 §3, RFC 3986 §3):
//! each checked in one pass over its bytes, without allocating. A request that breaks
//! it is refused, never corrected.

use std::net::Ipv6Addr;

/// Letters, digits, `-`, `.`, `_`, `~` (RFC 3986 §2.3).
const UNRESERVED: u8 = 1;
/// `!`, `$`, `&`, `'`, `(`, `)`, `*`, `+`, `,`, `;`, `=` (§2.2).
const SUB_DELIM: u8 = 1 << 1;
/// `:` and `@`: the rest of a path character (`pchar`, §3.3).
const COLON_AT: u8 = 1 << 2;
/// `/` and `?`: what a query adds to path characters (§3.4).
const SLASH_QUESTION: u8 = 1 << 3;
/// `[`, `\`, `]`, `^`, `` ` ``, `{`, `|`, `}`: outside RFC 3986, but browsers send them
/// unencoded in queries (the WHATWG URL standard's query percent-encode set leaves
/// them), so a query may carry them. Never accepted in a path.
const LOOSE_QUERY: u8 = 1 << 4;
/// Token characters (`tchar`, RFC 9110 §5.6.2): what a method is made of.
const TCHAR: u8 = 1 << 5;
/// Hexadecimal digits.
const HEX: u8 = 1 << 6;

const PCHAR: u8 = UNRESERVED | SUB_DELIM | COLON_AT;
const QUERY: u8 = PCHAR | SLASH_QUESTION | LOOSE_QUERY;

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut class = 0;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            class |= UNRESERVED;
        }
        if matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        ) {
            class |= SUB_DELIM;
        }
        if matches!(c, b':' | b'@') {
            class |= COLON_AT;
        }
        if matches!(c, b'/' | b'?') {
            class |= SLASH_QUESTION;
        }
        if matches!(c, b'[' | b'\\' | b']' | b'^' | b'`' | b'{' | b'|' | b'}') {
            class |= LOOSE_QUERY;
        }
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        if c.is_ascii_hexdigit() {
            class |= HEX;
        }
        table[i] = class;
        i += 1;
    }
    table
}

static CLASS: [u8; 256] = classes();

fn is(byte: u8, class: u8) -> bool {
    CLASS[usize::from(byte)] & class != 0
}

/// What the pass over a target's path found that normalization would change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// A percent-encoded unreserved character, lower-case hex digits, or a `.` or `..`
    /// segment.
    pub(crate) unnormal: bool,
    /// Two slashes in a row.
    pub(crate) repeated_slash: bool,
}

impl Shape {
    /// Whether the path is already in the form requests are matched on.
    pub(crate) fn is_normal(self, merge_slashes: bool) -> bool {
        !(self.unnormal || merge_slashes && self.repeated_slash)
    }
}

/// What the check of an HTTP/1 request line found: the shape of its path, or why it
/// is refused.
pub(crate) type LineCheck = Result<Shape, &'static str>;

/// Checks an HTTP/1 request line, without its line end: `method SP target SP
/// HTTP/d.d`, one space each, the method a token, the target one of the forms of
/// RFC 9112 §3.2.
pub(crate) fn request_line(line: &[u8]) -> LineCheck {
    let method_len = line.iter().take_while(|&&b| is(b, TCHAR)).count();
    if method_len == 0 {
        return Err("request line does not start with a method");
    }
    let (method, rest) = line.split_at(method_len);
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err("method not followed by one space");
    };
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return Err("request line without an HTTP version");
    };
    let (target_bytes, version) = (&rest[..space], &rest[space + 1..]);
    let version_ok = matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit());
    if !version_ok {
        return Err("request line does not end with one space and HTTP/d.d");
    }
    target(method, target_bytes, true)
}

/// Checks a request target (RFC 9112 §3.2): origin-form (`/path?query`), asterisk-form
/// (`*`, `OPTIONS` only), authority-form (`host:port`, `CONNECT` only) and, when
/// `absolute` (HTTP/1), absolute-form with an `http` or `https` scheme.
pub(crate) fn target(method: &[u8], target: &[u8], absolute: bool) -> LineCheck {
    match target {
        [] => Err("empty request target"),
        [b'/', ..] => origin_form(target),
        b"*" if method == b"OPTIONS" => Ok(Shape::default()),
        b"*" => Err("asterisk-form target on a method other than OPTIONS"),
        _ if method == b"CONNECT" => match is_authority(target) && target.contains(&b':') {
            true => Ok(Shape::default()),
            false => Err("CONNECT target is not host:port"),
        },
        _ if absolute => absolute_form(target),
        _ => Err("request target is not a path"),
    }
}

/// `/path` with an optional `?query`.
fn origin_form(target: &[u8]) -> LineCheck {
    let (shape, end) = path(target)?;
    if let Some(query) = target.get(end + 1..) {
        check_query(query)?;
    }
    Ok(shape)
}

/// `http://authority/path?query` (the scheme in any case); the shape is its path's.
fn absolute_form(target: &[u8]) -> LineCheck {
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or("absolute-form target without an http or https scheme")?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !is_authority(authority) {
        return Err("absolute-form target with an invalid authority");
    }
    match tail.first() {
        None => Ok(Shape::default()),
        Some(b'/') => origin_form(tail),
        Some(b'?') => check_query(&tail[1..]).map(|()| Shape::default()),
        Some(_) => Err("fragment in the request target"),
    }
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &bytes[prefix.len()..])
}

/// The path of a target that starts with `/`, up to its end or `?`: path characters
/// and well-formed percent-encodings only; no encoded NUL, CR or LF (backends that
/// decode paths would cut or split at them). Returns the shape and where the path ends.
fn path(bytes: &[u8]) -> Result<(Shape, usize), &'static str> {
    let mut shape = Shape::default();
    // Where the current segment starts (just after its slash).
    let mut segment = 1;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' => {
                shape.repeated_slash |= i == segment;
                shape.unnormal |= is_dot_segment(&bytes[segment..i]);
                segment = i + 1;
            }
            b'?' => break,
            b'%' => {
                let value = percent_encoded(bytes, i)?;
                if matches!(value, 0 | b'\r' | b'\n') {
                    return Err("encoded NUL, CR or LF in the path");
                }
                shape.unnormal |= is(value, UNRESERVED) || has_lower_hex(&bytes[i + 1..i + 3]);
                i += 3;
                continue;
            }
            _ if is(b, PCHAR) => {}
            b'#' => return Err("fragment in the request target"),
            _ => return Err("character not allowed in a path"),
        }
        i += 1;
    }
    shape.unnormal |= is_dot_segment(&bytes[segment..i]);
    Ok((shape, i))
}

fn is_dot_segment(segment: &[u8]) -> bool {
    matches!(segment, b"." | b"..")
}

fn has_lower_hex(digits: &[u8]) -> bool {
    digits.iter().any(|d| d.is_ascii_lowercase())
}

/// The byte that `%XX` at `bytes[at]` encodes.
fn percent_encoded(bytes: &[u8], at: usize) -> Result<u8, &'static str> {
    match bytes.get(at + 1..at + 3) {
        Some(&[high, low]) if is(high, HEX) && is(low, HEX) => Ok(hex(high) << 4 | hex(low)),
        _ => Err("% not followed by two hex digits"),
    }
}

fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => (digit | 0x20) - b'a' + 10,
    }
}

/// A query: path characters, `/`, `?`, the characters browsers leave unencoded, and
/// well-formed percent-encodings.
fn check_query(bytes: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            percent_encoded(bytes, i)?;
            i += 3;
            continue;
        }
        if !is(b, QUERY) {
            return Err(match b {
                b'#' => "fragment in the request target",
                _ => "character not allowed in a query",
            });
        }
        i += 1;
    }
    Ok(())
}

/// An authority without userinfo, as `Host`, HTTP/2 `:authority` and absolute-form
/// targets carry it: a host (RFC 3986 §3.2.2: a reg-name, an IPv4 address, or an IPv6
/// or IPvFuture literal in brackets) and an optional all-digit port after `:`.
pub(crate) fn is_authority(value: &[u8]) -> bool {
    let host_end = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(close) => close + 1,
            None => return false,
        },
        _ => value.iter().position(|&b| b == b':').unwrap_or(value.len()),
    };
    let (host, port) = value.split_at(host_end);
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok && is_host(host)
}

fn is_host(host: &[u8]) -> bool {
    match host {
        [b'[', literal @ .., b']'] => is_ip_literal(literal),
        _ => is_reg_name(host),
    }
}

/// A non-empty reg-name: unreserved characters, sub-delims and percent-encodings. (An
/// IPv4 address is one too.)
fn is_reg_name(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = host.get(i) {
        if b == b'%' {
            if percent_encoded(host, i).is_err() {
                return false;
            }
            i += 3;
            continue;
        }
        if !is(b, UNRESERVED | SUB_DELIM) {
            return false;
        }
        i += 1;
    }
    true
}

/// Inside the brackets: an IPv6 address, or `v` HEX+ `.` (unreserved, sub-delims, `:`)+.
fn is_ip_literal(literal: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = literal {
        let digits = rest.iter().take_while(|&&b| is(b, HEX)).count();
        return match &rest[digits..] {
            [b'.', tail @ ..] if digits > 0 && !tail.is_empty() => tail
                .iter()
                .all(|&b| is(b, UNRESERVED | SUB_DELIM) || b == b':'),
            _ => false,
        };
    }
    std::str::from_utf8(literal).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: &str) -> LineCheck {
        request_line(l.as_bytes())
    }

    #[test]
    fn request_lines_need_single_spaces_a_token_and_a_version() {
        for ok in [
            "GET / HTTP/1.1",
            "GET /a/b?c=d HTTP/1.0",
            "POST /x HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "get / HTTP/1.1",
            "GET http://a.test/x HTTP/1.1",
            "GET HTTPS://a.test:8443 HTTP/1.1",
            "GET http://a.test?q HTTP/1.1",
            "CONNECT a.test:443 HTTP/1.1",
        ] {
            assert!(line(ok).is_ok(), "{ok}: {:?}", line(ok));
        }
        for bad in [
            "",
            " GET / HTTP/1.1",
            "GET  /x HTTP/1.1",
            "GET x HTTP/1.1",
            "GET x/y HTTP/1.1",
            "Extra lineGET / HTTP/1.1",
            "GET /a /b HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET /  HTTP/1.1",
            "GET / HTTP/1.1\r",
            "GET\t/ HTTP/1.1",
            "GET /",
            "GET / HTTP/11",
            "GET / HTTP/1.1x",
            "GET / http/1.1",
            "G(T / HTTP/1.1",
            "GET * HTTP/1.1",
            "GET a.test:443 HTTP/1.1",
            "CONNECT a.test HTTP/1.1",
            "\x01GET / HTTP/1.1",
            "GET \x01/ HTTP/1.1",
        ] {
            assert!(line(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn paths_take_rfc_3986_characters_and_percent_encodings() {
        let t = |t: &str| target(b"GET", t.as_bytes(), true);
        for ok in [
            "/",
            "/a-b_c.d~e/f!$&'()*+,;=:@g",
            "/%20%2F%5C%7ex?%00",
            "/?",
            "/a?b=c/d?e",
            "/a?x[]=1&y={2}|3^`\\",
            "/a?%0A",
        ] {
            assert!(t(ok).is_ok(), "{ok}: {:?}", t(ok));
        }
        for bad in [
            "/%zz",
            "/a%4",
            "/a%",
            "/%4g",
            "/a?%zz",
            "/a?b%",
            "/a\x7fb",
            "/a\x1bb",
            "/a\0b",
            "/a\rb",
            "/a b",
            "/a#b",
            "/a?b#c",
            "/a\"b",
            "/a<b>",
            "/a\\b",
            "/a|b",
            "/a[b]",
            "/a{b}",
            "/a^b",
            "/a`b",
            "/caf\u{e9}",
            "/a?caf\u{e9}",
            "/a?b c",
            "/a%00b",
            "/a%0ab",
            "/a%0Db",
            "http://a.test/%zz",
            "ftp://a.test/",
            "http://user@a.test/",
            "http:///x",
            "http://a.test:x/",
            "http://a.test#f",
        ] {
            assert!(t(bad).is_err(), "{bad:?} passed");
        }
        // `:path` of HTTP/2 is never absolute-form.
        assert!(target(b"GET", b"http://a.test/", false).is_err());
        assert!(target(b"GET", b"x", false).is_err());
    }

    #[test]
    fn the_shape_says_what_normalization_would_change() {
        let shape = |t: &str| target(b"GET", t.as_bytes(), true).unwrap();
        for normal in [
            "/",
            "/a/b/",
            "/a/.b/..c/...",
            "/%2F%5C%20%C3%A9",
            "/a?x=/../y//z",
            "http://a.test",
            "http://a.test/a",
        ] {
            assert_eq!(shape(normal), Shape::default(), "{normal}");
        }
        for unnormal in [
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/%2e",
            "/%7Euser",
            "/%41",
            "/%2f",
            "/%c3%a9",
            "http://a.test/a/../b",
        ] {
            assert!(shape(unnormal).unnormal, "{unnormal}");
        }
        for (repeated, at) in [
            ("//", true),
            ("/a//b", true),
            ("/a/", false),
            ("/a?b//c", false),
        ] {
            assert_eq!(shape(repeated).repeated_slash, at, "{repeated}");
        }
        assert!(shape("/a//b").is_normal(false));
        assert!(!shape("/a//b").is_normal(true));
    }

    #[test]
    fn hosts_follow_rfc_3986() {
        for ok in [
            "a.test",
            "a.test:8443",
            "a.test:",
            "A-b_c~d.test",
            "1.2.3.4:80",
            "999.1.1.1",
            "a%41.test",
            "a!$&'()*+,;=",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::ff00:42:8329]",
            "[::ffff:192.0.2.1]:1",
            "[v1.x:y]",
            "[VF.a]",
        ] {
            assert!(is_authority(ok.as_bytes()), "{ok} refused");
        }
        for bad in [
            "",
            ":80",
            "a.test:abc",
            "a:b:c",
            "a.test:8443:",
            "]",
            "[",
            "[::1",
            "::1",
            "[::1]x",
            "[::1]:x",
            "[zz::1]",
            "[::1%eth0]",
            "[v1]",
            "[v.x]",
            "[vx.y]",
            "a.test/x",
            "a test",
            "a@b",
            "u@a.test",
            "a%4.test",
            "a%zz",
            "caf\u{e9}.test",
            "a\0b",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad:?} passed");
        }
    }
}
