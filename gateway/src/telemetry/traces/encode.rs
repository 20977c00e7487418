//! A batch of finished requests as one OTLP `ExportTraceServiceRequest` (the body of an
//! OTLP/HTTP protobuf POST and of a gRPC `TraceService/Export` call): one resource
//! (`service.name`), one instrumentation scope (`gateway`), and per request its client
//! spans, then its server span, with the OpenTelemetry HTTP semantic-convention
//! attributes. Written straight from the records into one buffer.

use std::time::{Instant, UNIX_EPOCH};

use super::protobuf::{self as pb, Value};
use super::span::Record;
use crate::ip_text::IpText;

const SCOPE_NAME: &str = "gateway";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `Span.SpanKind`.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
/// `Status.StatusCode` ERROR.
const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the W3C sampled flag (every exported span is sampled), and whether the
/// parent is remote, with the bit saying that this is known.
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// Writes the export request of `records` into `out`; `spans` is scratch space.
pub(super) fn request(
    records: &[Record],
    service_name: &str,
    spans: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    spans.clear();
    for r in records {
        record_spans(r, spans);
    }
    let scope = pb::delimited_len(1, SCOPE_NAME.len()) + pb::delimited_len(2, SCOPE_VERSION.len());
    let scope_spans = pb::delimited_len(1, scope) + spans.len();
    let resource = pb::attribute_len(1, "service.name", Value::Str(service_name));
    let resource_spans = pb::delimited_len(1, resource) + pb::delimited_len(2, scope_spans);
    out.clear();
    out.reserve(pb::delimited_len(1, resource_spans));
    // ExportTraceServiceRequest.resource_spans
    pb::delimited(out, 1, resource_spans);
    // ResourceSpans.resource: Resource.attributes
    pb::delimited(out, 1, resource);
    pb::attribute(out, 1, "service.name", Value::Str(service_name));
    // ResourceSpans.scope_spans: ScopeSpans.scope, then ScopeSpans.spans
    pb::delimited(out, 2, scope_spans);
    pb::delimited(out, 1, scope);
    pb::bytes(out, 1, SCOPE_NAME.as_bytes());
    pb::bytes(out, 2, SCOPE_VERSION.as_bytes());
    out.extend_from_slice(spans);
}

/// One span's fields other than its attributes.
struct Span<'a> {
    trace_id: u128,
    span_id: u64,
    trace_state: &'a str,
    parent: Option<u64>,
    flags: u32,
    /// The name, in pieces.
    name: [&'a str; 3],
    kind: u64,
    start: u64,
    end: u64,
    /// The status's message when the span failed.
    error: Option<&'a str>,
}

impl Span<'_> {
    fn status_len(&self) -> usize {
        self.error.map_or(0, |m| {
            (if m.is_empty() {
                0
            } else {
                pb::delimited_len(2, m.len())
            }) + pb::uint_len(3, STATUS_ERROR)
        })
    }

    fn body_len(&self, attributes: usize) -> usize {
        let name = self.name.iter().map(|p| p.len()).sum();
        pb::delimited_len(1, 16)
            + pb::delimited_len(2, 8)
            + if self.trace_state.is_empty() {
                0
            } else {
                pb::delimited_len(3, self.trace_state.len())
            }
            + self.parent.map_or(0, |_| pb::delimited_len(4, 8))
            + pb::fixed32_len(16)
            + if name == 0 {
                0
            } else {
                pb::delimited_len(5, name)
            }
            + pb::uint_len(6, self.kind)
            + pb::fixed64_len(7)
            + pb::fixed64_len(8)
            + attributes
            + pb::delimited_len(15, self.status_len())
    }

    /// Writes the span as `ScopeSpans.spans`, its attributes given by `attributes`
    /// (called twice: to size them, then to write them).
    fn write(&self, out: &mut Vec<u8>, attributes: impl Fn(&mut dyn FnMut(&str, Value<'_>))) {
        let mut size = 0;
        attributes(&mut |k, v| size += pb::attribute_len(9, k, v));
        // Fields by number, as protobuf's own encoders write them.
        pb::delimited(out, 2, self.body_len(size));
        pb::bytes(out, 1, &self.trace_id.to_be_bytes());
        pb::bytes(out, 2, &self.span_id.to_be_bytes());
        if !self.trace_state.is_empty() {
            pb::bytes(out, 3, self.trace_state.as_bytes());
        }
        if let Some(parent) = self.parent {
            pb::bytes(out, 4, &parent.to_be_bytes());
        }
        let name: usize = self.name.iter().map(|p| p.len()).sum();
        if name > 0 {
            pb::delimited(out, 5, name);
            for piece in self.name {
                out.extend_from_slice(piece.as_bytes());
            }
        }
        pb::uint(out, 6, self.kind);
        pb::fixed64(out, 7, self.start);
        pb::fixed64(out, 8, self.end);
        attributes(&mut |k, v| pb::attribute(out, 9, k, v));
        pb::delimited(out, 15, self.status_len());
        if let Some(message) = self.error {
            if !message.is_empty() {
                pb::bytes(out, 2, message.as_bytes());
            }
            pb::uint(out, 3, STATUS_ERROR);
        }
        pb::fixed32(out, 16, self.flags);
    }
}

/// A request's spans: one client span per attempt, then the server span.
fn record_spans(r: &Record, out: &mut Vec<u8>) {
    let wall = r
        .wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let at = |t: Instant| {
        let since = t.saturating_duration_since(r.start).as_nanos();
        wall.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    };
    let method = r.method.as_str();
    let text = |range: &std::ops::Range<usize>| r.text.get(range.clone()).unwrap_or("");
    for (i, a) in r.attempts.iter().enumerate() {
        let address = IpText::new(a.backend.ip());
        let address = std::str::from_utf8(address.as_bytes()).unwrap_or("");
        // A client span's error: no answer, or a 4xx/5xx one.
        let error = a
            .error
            .or_else(|| a.status.filter(|s| *s >= 400).map(status_text))
            .or(a.end.is_none().then_some("cancelled"));
        let span = Span {
            trace_id: r.trace_id,
            span_id: a.span_id,
            trace_state: &r.trace_state,
            parent: Some(r.span_id),
            flags: FLAG_SAMPLED | FLAG_HAS_IS_REMOTE,
            name: [method, "", ""],
            kind: KIND_CLIENT,
            start: at(a.start),
            end: at(a.end.unwrap_or(r.end)),
            error,
        };
        span.write(out, |f| {
            f("http.request.method", Value::Str(method));
            f("server.address", Value::Str(address));
            f("server.port", Value::Int(i64::from(a.backend.port())));
            if i > 0 {
                f("http.request.resend_count", Value::Int(i as i64));
            }
            if let Some(status) = a.status {
                f("http.response.status_code", Value::Int(i64::from(status)));
            }
            if let Some(e) = error {
                f("error.type", Value::Str(e));
            }
        });
    }
    // A server span's error: a 5xx, or no answer at all.
    let (error_type, message) = match (&r.error, r.status) {
        (Some((kind, message)), s) if s >= 500 || s == 0 => (Some(*kind), Some(message.as_str())),
        (_, s) if s >= 500 => (Some(status_text(s)), Some(status_text(s))),
        _ => (None, None),
    };
    let client = r.client.map(IpText::new);
    let client = client
        .as_ref()
        .and_then(|c| std::str::from_utf8(c.as_bytes()).ok());
    let span = Span {
        trace_id: r.trace_id,
        span_id: r.span_id,
        trace_state: &r.trace_state,
        parent: r.parent,
        flags: FLAG_SAMPLED
            | FLAG_HAS_IS_REMOTE
            | if r.parent.is_some() {
                FLAG_IS_REMOTE
            } else {
                0
            },
        name: match &r.route {
            Some(route) => [r.method.as_str(), " ", text(route)],
            None => [method, "", ""],
        },
        kind: KIND_SERVER,
        start: wall,
        end: at(r.end),
        error: message,
    };
    span.write(out, |f| {
        f("http.request.method", Value::Str(method));
        f("url.scheme", Value::Str(r.scheme));
        f("url.path", Value::Str(text(&r.path)));
        f("server.address", Value::Str(text(&r.host)));
        f("network.protocol.version", Value::Str(r.protocol));
        f(
            "http.request.body.size",
            Value::Int(clamp(r.bytes_received)),
        );
        f("http.response.body.size", Value::Int(clamp(r.bytes_sent)));
        if r.status > 0 {
            f("http.response.status_code", Value::Int(i64::from(r.status)));
        }
        if let Some(ip) = client {
            f("client.address", Value::Str(ip));
        }
        if let Some(ua) = &r.user_agent {
            f("user_agent.original", Value::Str(text(ua)));
        }
        if let Some(route) = &r.route {
            f("gateway.route", Value::Str(text(route)));
        }
        if let Some(u) = &r.upstream {
            f("gateway.upstream", Value::Str(text(u)));
        }
        if let Some(e) = error_type {
            f("error.type", Value::Str(e));
        }
    });
}

/// A byte count as OpenTelemetry's signed integer.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A status code as `error.type` writes it.
fn status_text(status: u16) -> &'static str {
    const TEXTS: [(u16, &str); 12] = [
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (408, "408"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    TEXTS
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(if status >= 500 { "5xx" } else { "4xx" }, |(_, t)| t)
}
