//! W3C Trace Context: a client's `traceparent` read, and the one sent to the backend
//! written, into a fixed buffer (no allocation); a client's `tracestate` checked.

/// A `traceparent` as read: the trace, the caller's span and whether it was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) sampled: bool,
}

/// The length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub(crate) const LEN: usize = 55;

/// Reads a `traceparent` value. `None` when it is not valid: a version other than two
/// lower-case hex digits (or `ff`), a version-00 header of another length, a later
/// version's without `-` after its known fields, ids not lower-case hex or all zeros.
pub(crate) fn parse(value: &[u8]) -> Option<Parent> {
    let version = hex(value.get(0..2)?)?;
    match (version, value.len()) {
        (0xff, _) => return None,
        (0, LEN) => {}
        (0, _) => return None,
        // A later version may append fields after a `-`.
        (_, LEN) => {}
        (_, n) if n > LEN && value.get(LEN) == Some(&b'-') => {}
        _ => return None,
    }
    if value.get(2) != Some(&b'-') || value.get(35) != Some(&b'-') || value.get(52) != Some(&b'-') {
        return None;
    }
    let trace_id = hex(value.get(3..35)?)?;
    let span_id = u64::try_from(hex(value.get(36..52)?)?).ok()?;
    let flags = hex(value.get(53..55)?)?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lower-case hex digits (at most 32) as a number.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

/// Writes `bytes` as hex digits into `out` (twice as long).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// The `traceparent` the backend gets: version 00, the trace, the gateway's span.
#[derive(Clone, Copy)]
pub(crate) struct Header([u8; LEN]);

impl Header {
    pub(crate) fn new(trace_id: u128, span_id: u64, sampled: bool) -> Self {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut text[3..35], &trace_id.to_be_bytes());
        write_hex(&mut text[36..52], &span_id.to_be_bytes());
        if sampled {
            text[54] = b'1';
        }
        Self(text)
    }

    /// Names another span of the same trace (each attempt's own).
    pub(crate) fn set_span(&mut self, span_id: u64) {
        write_hex(&mut self.0[36..52], &span_id.to_be_bytes());
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The trace id as 32 hex digits (for the access log).
    pub(crate) fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.0[3..35]).unwrap_or("-")
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("?"))
    }
}

/// Most list-members a `tracestate` has.
const MAX_MEMBERS: usize = 32;

/// A client's `tracestate` as the spans record it: its list-members joined by `,`
/// (empty members and the whitespace around members left out). `None` when it is not
/// valid (a member that is not `key=value` by the spec's grammar, over 32 members, not
/// text): the spec has such a header dropped whole.
pub(crate) fn trace_state(value: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut members = 0;
    for member in std::str::from_utf8(value).ok()?.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, val) = member.split_once('=')?;
        if !state_key(key.as_bytes()) || !state_value(val.as_bytes()) {
            return None;
        }
        members += 1;
        if members > MAX_MEMBERS {
            return None;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(member);
    }
    Some(out)
}

/// A `tracestate` key: `simple-key`, or `tenant-id@system-id`.
fn state_key(key: &[u8]) -> bool {
    let rest = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(b);
    match key.iter().position(|b| *b == b'@') {
        None => {
            key.len() <= 256
                && key.first().is_some_and(u8::is_ascii_lowercase)
                && key.iter().all(rest)
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (1..=14).contains(&system.len())
                && tenant
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && system.first().is_some_and(u8::is_ascii_lowercase)
                && tenant.iter().all(rest)
                && system.iter().all(rest)
        }
    }
}

/// A `tracestate` value: 1 to 256 printable characters but `,` and `=`, the last not a
/// space.
fn state_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|b| (0x20..=0x7e).contains(b) && *b != b',' && *b != b'=')
        && value.last() != Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_is_read_and_written_back() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert!(p.sampled);
        let h = Header::new(p.trace_id, p.span_id, p.sampled);
        assert_eq!(h.as_bytes(), GOOD.as_bytes());
        assert_eq!(h.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut h = Header::new(p.trace_id, 1, false);
        h.set_span(0xabc);
        assert_eq!(
            h.as_bytes(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-00"
        );
    }

    #[test]
    fn flags_other_than_sampled_are_ignored() {
        let p = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert!(!p.sampled);
        let p = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert!(p.sampled);
    }

    #[test]
    fn later_versions_are_read_by_their_known_fields() {
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        assert!(
            parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future")
                .is_some()
        );
        assert!(parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what").is_none());
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00",
            // Version ff, upper case, all-zero ids, wrong lengths and separators.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn tracestate_members_are_checked_and_joined() {
        assert_eq!(
            trace_state(b"congo=t61rcWkgMzE").as_deref(),
            Some("congo=t61rcWkgMzE")
        );
        assert_eq!(
            trace_state(b"rojo=00f067aa0ba902b7 ,, \tcongo=t61rcWkgMzE,").as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(
            trace_state(b"fw529a3039@dt=Zm9v,a-b*c/d=x y").as_deref(),
            Some("fw529a3039@dt=Zm9v,a-b*c/d=x y")
        );
        assert_eq!(trace_state(b"").as_deref(), Some(""));
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(trace_state(many.as_bytes()), None);
        assert!(trace_state(many.rsplit_once(',').unwrap().0.as_bytes()).is_some());
        for bad in [
            "k",
            "K=v",
            "1k=v",
            "k=",
            "k=v=w",
            "k=a\u{1}b",
            "k=\u{7f}",
            "@dt=v",
            "t@=v",
            "t@D=v",
            "t@0x=v",
            "a@b@c=v",
            "k\u{e9}=v",
        ] {
            assert_eq!(trace_state(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
