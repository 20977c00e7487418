//! OTLP's protobuf wire format, the few message shapes an export needs: varints, tagged
//! fields and length-delimited messages, with each message's length computed before it
//! is written (no second buffer per message, no allocation per field).

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// An attribute's value (`AnyValue`): the kinds the gateway's spans use.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// The bytes of varint `v`.
pub(super) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits of the highest set bit (at least one byte).
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// A length-delimited field of `n` bytes, whole.
pub(super) fn delimited_len(field: u32, n: usize) -> usize {
    tag_len(field) + varint_len(n as u64) + n
}

/// The head of a length-delimited field whose `n` bytes follow.
pub(super) fn delimited(out: &mut Vec<u8>, field: u32, n: usize) {
    tag(out, field, LEN);
    varint(out, n as u64);
}

pub(super) fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    delimited(out, field, b.len());
    out.extend_from_slice(b);
}

pub(super) fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

pub(super) fn uint_len(field: u32, v: u64) -> usize {
    tag_len(field) + varint_len(v)
}

pub(super) fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn fixed64_len(field: u32) -> usize {
    tag_len(field) + 8
}

pub(super) fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    tag(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn fixed32_len(field: u32) -> usize {
    tag_len(field) + 4
}

/// `AnyValue`'s body: `string_value` (1) or `int_value` (3), written even when empty
/// or zero (a oneof member is always present).
fn any_value_len(v: Value<'_>) -> usize {
    match v {
        Value::Str(s) => delimited_len(1, s.len()),
        Value::Int(i) => uint_len(3, i as u64),
    }
}

/// `KeyValue { key = 1, value = 2 }`'s body.
fn key_value_len(key: &str, v: Value<'_>) -> usize {
    delimited_len(1, key.len()) + delimited_len(2, any_value_len(v))
}

/// A `KeyValue` as field `field` of its message, whole.
pub(super) fn attribute_len(field: u32, key: &str, v: Value<'_>) -> usize {
    delimited_len(field, key_value_len(key, v))
}

pub(super) fn attribute(out: &mut Vec<u8>, field: u32, key: &str, v: Value<'_>) {
    delimited(out, field, key_value_len(key, v));
    bytes(out, 1, key.as_bytes());
    delimited(out, 2, any_value_len(v));
    match v {
        Value::Str(s) => bytes(out, 1, s.as_bytes()),
        Value::Int(i) => uint(out, 3, i as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_the_shortest_form() {
        for (v, want) in [
            (0u64, &[0u8][..]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want, "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
        }
    }

    #[test]
    fn lengths_match_what_is_written() {
        let mut out = Vec::new();
        for (field, key, v) in [
            (9, "http.request.method", Value::Str("GET")),
            (9, "server.port", Value::Int(8080)),
            (1, "", Value::Str("")),
            (16, "n", Value::Int(-1)),
        ] {
            out.clear();
            attribute(&mut out, field, key, v);
            assert_eq!(out.len(), attribute_len(field, key, v), "{key}");
        }
        out.clear();
        fixed32(&mut out, 16, 0x101);
        // Field 16 takes a two-byte tag.
        assert_eq!(out, [0x85, 0x01, 0x01, 0x01, 0, 0]);
        assert_eq!(out.len(), fixed32_len(16));
    }
}
