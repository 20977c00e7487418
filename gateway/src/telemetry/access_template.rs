//! Access lines written by an `[access_log] format` template: its text as it is, each
//! `$variable` as its value, with nginx's default escaping (`"`, `\`, control and
//! non-ASCII bytes as `\xHH`) so a client's header cannot break a line or its quoting.

use std::time::SystemTime;

use super::access::{
    address, cut_at, number, opt_millis, prefix, timestamp, value, AccessLine, Value, CUT,
};
use super::access_format::Piece;

/// Writes one line; with `cut`, text values are cut at [`cut_at`].
pub(super) fn write(
    out: &mut Vec<u8>,
    l: &AccessLine<'_>,
    pieces: &[Piece],
    now: SystemTime,
    cut: bool,
) {
    for piece in pieces {
        let var = match piece {
            Piece::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                continue;
            }
            Piece::Var(var) => *var,
        };
        match value(l, var) {
            Value::Word(s) | Value::Quoted(s) if cut => {
                let (s, was_cut) = prefix(s, cut_at(var.name()), escaped_len);
                escaped(out, s);
                if was_cut {
                    out.extend_from_slice(CUT.as_bytes());
                }
            }
            Value::Word(s) | Value::Quoted(s) => escaped(out, s),
            Value::Number(n) => number(out, n),
            v @ (Value::Ip(_) | Value::Socket(_)) => address(out, &v),
            Value::Millis(d) => opt_millis(out, d),
            Value::Time => timestamp(out, now),
        }
    }
    out.push(b'\n');
}

fn needs_escape(b: u8) -> bool {
    !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\'
}

/// `s` with [`needs_escape`] bytes as `\xHH`.
fn escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !s.bytes().any(needs_escape) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        if needs_escape(b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

/// The bytes [`escaped`] writes for `s`.
fn escaped_len(s: &str) -> usize {
    s.bytes().map(|b| if needs_escape(b) { 4 } else { 1 }).sum()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::telemetry::access_format::parse_template;

    fn line(headers: &HeaderMap) -> AccessLine<'_> {
        AccessLine {
            listener: "https",
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET",
            host: "shop.test",
            path: "/a\"b",
            status: 200,
            upstream: Some("10.0.0.1:8080".parse().unwrap()),
            duration: Duration::from_micros(1_500),
            bytes: 19,
            request_id: "abc",
            protocol: "HTTP/2.0",
            headers: Some(headers),
            bytes_received: 7,
            upstream_time: Some(Duration::from_micros(1_250)),
            route: Some("shop"),
            tls_version: Some("TLSv1.3"),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
    }

    #[test]
    fn variables_take_their_values_and_escapes_keep_the_quoting() {
        let mut headers = HeaderMap::new();
        headers.insert("referer", HeaderValue::from_static("https://a.test/"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8 \"x\""));
        let pieces = parse_template(
            "$client - [$time] \"$method $path $protocol\" $status $bytes \"$referer\" \"$user_agent\" $duration_ms $upstream $upstream_ms $bytes_received $route $tls_version $request_id $host $listener $trace_id",
        )
        .unwrap();
        let mut out = Vec::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_795_374_154);
        write(&mut out, &line(&headers), &pieces, now, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - [2026-11-22T19:02:34.000000Z] \"GET /a\\x22b HTTP/2.0\" 200 19 \"https://a.test/\" \"curl/8 \\x22x\\x22\" 1.500 10.0.0.1:8080 1.250 7 shop TLSv1.3 abc shop.test https 4bf92f3577b34da6a3ce929d0e0e4736\n"
        );
        // Absent values are `-`.
        let empty = HeaderMap::new();
        let mut l = line(&empty);
        (l.upstream, l.upstream_time, l.tls_version, l.route) = (None, None, None, None);
        l.trace_id = None;
        let pieces =
            parse_template("$referer $upstream $upstream_ms $tls_version $route $trace_id")
                .unwrap();
        let mut out = Vec::new();
        write(&mut out, &l, &pieces, now, false);
        assert_eq!(String::from_utf8(out).unwrap(), "- - - - - -\n");
    }

    #[test]
    fn cut_values_end_in_an_ellipsis() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "user-agent",
            HeaderValue::try_from("u".repeat(5000)).unwrap(),
        );
        let pieces = parse_template("$user_agent").unwrap();
        let mut out = Vec::new();
        write(&mut out, &line(&headers), &pieces, SystemTime::now(), true);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), cut_at("user_agent") + CUT.len() + 1);
        assert!(text.ends_with("u…\n"));
    }
}
