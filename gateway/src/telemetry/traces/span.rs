//! One request's trace: its ids and sampling decision, the `traceparent` its backend
//! gets (naming the gateway's span of the attempt), and, when sampled, what its server
//! span and one client span per attempt record: a `Record` queued for the export
//! thread, which writes its spans into an OTLP export request (`encode.rs`).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::context::{Header, Parent};
use super::export::Tracer;

/// A request's place in a trace.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) trace_id: u128,
    /// The client's span, when it sent a valid `traceparent`.
    pub(crate) parent: Option<u64>,
    /// The gateway's server span.
    pub(crate) span_id: u64,
    /// What the backend gets as `traceparent`.
    pub(crate) header: Header,
    /// The spans being recorded, when the trace is sampled.
    recording: Option<Box<Recording>>,
}

#[derive(Debug)]
struct Recording {
    tracer: Arc<Tracer>,
    /// The request's start on the wall clock and the monotonic one.
    wall: SystemTime,
    start: Instant,
    /// The client's `tracestate` (valid, members joined by `,`), carried by the spans
    /// of a continued trace; empty without one.
    trace_state: String,
    attempts: Vec<AttemptSpan>,
}

/// One attempt on a backend.
#[derive(Debug)]
pub(super) struct AttemptSpan {
    pub(super) span_id: u64,
    pub(super) start: Instant,
    pub(super) end: Option<Instant>,
    pub(super) backend: SocketAddr,
    pub(super) status: Option<u16>,
    pub(super) error: Option<&'static str>,
}

/// What the server span says of a finished request.
pub(crate) struct Finished<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) scheme: &'static str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    /// `1.1`, `2`.
    pub(crate) protocol: &'static str,
    pub(crate) client: Option<IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) status: u16,
    pub(crate) route: Option<&'a str>,
    pub(crate) upstream: Option<&'a str>,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    /// Why the request failed (`error.type`, and the whole message).
    pub(crate) error: Option<(&'static str, String)>,
}

impl Trace {
    /// The trace of a request: `parent`'s, or a new one sampled by `tracer`'s ratio.
    pub(crate) fn new(
        tracer: &Arc<Tracer>,
        parent: Option<Parent>,
        trace_state: Option<&[u8]>,
        mut random: impl FnMut() -> u64,
    ) -> Self {
        let (trace_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.sampled),
            None => {
                let id = (u128::from(random()) << 64 | u128::from(random())).max(1);
                (id, tracer.samples(id))
            }
        };
        let span_id = random().max(1);
        let recording = sampled.then(|| {
            let trace_state = trace_state
                .filter(|_| parent.is_some())
                .and_then(super::context::trace_state)
                .unwrap_or_default();
            Box::new(Recording {
                tracer: tracer.clone(),
                wall: SystemTime::now(),
                start: Instant::now(),
                trace_state,
                attempts: Vec::new(),
            })
        });
        Self {
            trace_id,
            parent: parent.map(|p| p.span_id),
            span_id,
            header: Header::new(trace_id, span_id, sampled),
            recording,
        }
    }

    pub(crate) fn sampled(&self) -> bool {
        self.recording.is_some()
    }

    /// An attempt on `backend` starts: the backend gets a span of its own as parent.
    pub(crate) fn attempt_started(&mut self, backend: SocketAddr, random: impl FnOnce() -> u64) {
        let span_id = random().max(1);
        self.header.set_span(span_id);
        if let Some(r) = &mut self.recording {
            r.attempts.push(AttemptSpan {
                span_id,
                start: Instant::now(),
                end: None,
                backend,
                status: None,
                error: None,
            });
        }
    }

    /// The current attempt ended with the backend's `status` (when it answered) or an
    /// `error` type.
    pub(crate) fn attempt_ended(&mut self, status: Option<u16>, error: Option<&'static str>) {
        if let Some(a) = self
            .recording
            .as_mut()
            .and_then(|r| r.attempts.last_mut())
            .filter(|a| a.end.is_none())
        {
            (a.end, a.status, a.error) = (Some(Instant::now()), status, error);
        }
    }

    /// Ends the request's spans and queues them for export (sampled traces only): the
    /// request's facts in one record (its text in one buffer), made into spans by the
    /// export thread, so that the request path neither builds them nor frees them.
    pub(crate) fn finish(&mut self, f: &Finished<'_>) {
        let Some(r) = self.recording.take() else {
            return;
        };
        let end = Instant::now();
        let mut text = String::with_capacity(
            f.path.len()
                + f.host.len()
                + f.user_agent.map_or(0, str::len)
                + f.route.map_or(0, str::len)
                + f.upstream.map_or(0, str::len),
        );
        let mut piece = |s: &str| {
            let start = text.len();
            text.push_str(s);
            start..text.len()
        };
        let path = piece(f.path);
        let host = piece(f.host);
        let user_agent = f.user_agent.map(&mut piece);
        let route = f.route.map(&mut piece);
        let upstream = f.upstream.map(&mut piece);
        let Recording {
            tracer,
            wall,
            start,
            trace_state,
            attempts,
        } = *r;
        let record = Record {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            trace_state,
            wall,
            start,
            end,
            method: f.method.clone(),
            scheme: f.scheme,
            protocol: f.protocol,
            client: f.client,
            status: f.status,
            bytes_sent: f.bytes_sent,
            bytes_received: f.bytes_received,
            text,
            path,
            host,
            user_agent,
            route,
            upstream,
            error: f.error.clone(),
            attempts,
        };
        tracer.submit(record);
    }
}

/// A finished sampled request, as queued for export.
#[derive(Debug)]
pub(crate) struct Record {
    pub(super) trace_id: u128,
    pub(super) span_id: u64,
    pub(super) parent: Option<u64>,
    pub(super) trace_state: String,
    pub(super) wall: SystemTime,
    pub(super) start: Instant,
    pub(super) end: Instant,
    pub(super) method: http::Method,
    pub(super) scheme: &'static str,
    pub(super) protocol: &'static str,
    pub(super) client: Option<IpAddr>,
    pub(super) status: u16,
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    /// Path, host, user agent, route and upstream, at the ranges below.
    pub(super) text: String,
    pub(super) path: Range<usize>,
    pub(super) host: Range<usize>,
    pub(super) user_agent: Option<Range<usize>>,
    pub(super) route: Option<Range<usize>>,
    pub(super) upstream: Option<Range<usize>>,
    pub(super) error: Option<(&'static str, String)>,
    pub(super) attempts: Vec<AttemptSpan>,
}

impl Record {
    /// The spans it makes: one server span, and one client span per attempt.
    pub(crate) fn span_count(&self) -> usize {
        1 + self.attempts.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    use super::*;
    use crate::config::{OtlpProtocol, Tracing};
    use crate::telemetry::traces::export::Item;

    fn capturing(ratio: f64) -> (Arc<Tracer>, std::sync::mpsc::Receiver<Item>) {
        let config = Tracing {
            endpoint: "http://127.0.0.1:9/v1/traces".into(),
            protocol: OtlpProtocol::Http,
            sample_ratio: ratio,
            service_name: "t".into(),
            timeout: Duration::from_secs(1),
        };
        let (tracer, spans) = Tracer::capture(&config, 64);
        (Arc::new(tracer), spans)
    }

    /// The queued requests' spans, as the export request written of them decodes
    /// with the reference OTLP types.
    fn queued(queue: &std::sync::mpsc::Receiver<Item>) -> Vec<Span> {
        let records: Vec<Record> = queue
            .try_iter()
            .filter_map(|item| match item {
                Item::Request(record) => Some(record),
                Item::Flush(_) => None,
            })
            .collect();
        let (mut scratch, mut body) = (Vec::new(), Vec::new());
        super::super::encode::request(&records, "shop", &mut scratch, &mut body);
        let request = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        // Written as protobuf's own encoder writes it: same fields, order and lengths.
        assert_eq!(request.encode_to_vec(), body);
        let [resource_spans] = &request.resource_spans[..] else {
            panic!("one resource: {request:?}");
        };
        let resource = resource_spans.resource.as_ref().unwrap();
        assert_eq!(resource.attributes.len(), 1);
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(
            resource.attributes[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("shop".into()))
        );
        let [scope_spans] = &resource_spans.scope_spans[..] else {
            panic!("one scope: {request:?}");
        };
        let scope = scope_spans.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("gateway", env!("CARGO_PKG_VERSION"))
        );
        scope_spans.spans.clone()
    }

    fn finished() -> Finished<'static> {
        Finished {
            method: &http::Method::GET,
            scheme: "https",
            host: "shop.test",
            path: "/cart",
            protocol: "2",
            client: Some("192.0.2.7".parse().unwrap()),
            user_agent: Some("curl/8"),
            status: 200,
            route: Some("shop"),
            upstream: Some("hello"),
            bytes_sent: 19,
            bytes_received: 0,
            error: None,
        }
    }

    fn attr(span: &Span, key: &str) -> Option<Value> {
        let mut values = span.attributes.iter().filter(|kv| kv.key == key);
        let value = values.next().and_then(|kv| kv.value.clone()?.value);
        assert!(values.next().is_none(), "{key} twice");
        value
    }

    fn text(s: &str) -> Option<Value> {
        Some(Value::StringValue(s.into()))
    }

    fn status(span: &Span) -> (StatusCode, &str) {
        let s = span.status.as_ref().unwrap();
        (StatusCode::try_from(s.code).unwrap(), s.message.as_str())
    }

    #[test]
    fn a_sampled_parent_is_continued_and_each_attempt_has_its_span() {
        let (tracer, spans) = capturing(0.0);
        let parent = Parent {
            trace_id: 0x4bf9,
            span_id: 0xf067,
            sampled: true,
        };
        let mut ids = 10..;
        let mut random = move || ids.next().unwrap();
        let mut trace = Trace::new(&tracer, Some(parent), Some(b"k=v"), &mut random);
        assert!(trace.sampled(), "the parent's decision, not the ratio's");
        trace.attempt_started("10.0.0.1:80".parse().unwrap(), &mut random);
        assert_eq!(
            trace.header.as_bytes(),
            b"00-00000000000000000000000000004bf9-000000000000000b-01"
        );
        trace.attempt_ended(None, Some("connect_failed"));
        trace.attempt_started("10.0.0.2:80".parse().unwrap(), &mut random);
        trace.attempt_ended(Some(200), None);
        trace.finish(&finished());
        let spans = queued(&spans);
        assert_eq!(spans.len(), 3);
        let (first, second, server) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(server.parent_span_id, 0xf067u64.to_be_bytes());
        // Sampled, the parent known to be remote.
        assert_eq!(server.flags, 0x301);
        assert_eq!(server.span_id, 10u64.to_be_bytes());
        assert_eq!(server.trace_id, 0x4bf9u128.to_be_bytes());
        assert_eq!(server.trace_state, "k=v");
        assert_eq!(server.name, "GET shop");
        assert_eq!(status(server), (StatusCode::Unset, ""));
        assert_eq!(
            attr(server, "http.response.status_code"),
            Some(Value::IntValue(200))
        );
        for (key, want) in [
            ("http.request.method", "GET"),
            ("url.scheme", "https"),
            ("url.path", "/cart"),
            ("server.address", "shop.test"),
            ("network.protocol.version", "2"),
            ("client.address", "192.0.2.7"),
            ("user_agent.original", "curl/8"),
            ("gateway.route", "shop"),
            ("gateway.upstream", "hello"),
        ] {
            assert_eq!(attr(server, key), text(want), "{key}");
        }
        assert_eq!(
            attr(server, "http.response.body.size"),
            Some(Value::IntValue(19))
        );
        assert_eq!(
            attr(server, "http.request.body.size"),
            Some(Value::IntValue(0))
        );
        assert_eq!(attr(server, "error.type"), None);
        for client in [first, second] {
            assert_eq!(client.kind, SpanKind::Client as i32);
            assert_eq!(client.parent_span_id, 10u64.to_be_bytes());
            assert_eq!(client.trace_id, 0x4bf9u128.to_be_bytes());
            assert_eq!(client.flags, 0x101);
            assert_eq!(client.name, "GET");
            assert_eq!(client.trace_state, "k=v");
            assert_eq!(attr(client, "server.port"), Some(Value::IntValue(80)));
        }
        assert_eq!(first.span_id, 11u64.to_be_bytes());
        assert_eq!(status(first), (StatusCode::Error, "connect_failed"));
        assert_eq!(attr(first, "error.type"), text("connect_failed"));
        assert_eq!(attr(first, "http.request.resend_count"), None);
        assert_eq!(attr(first, "http.response.status_code"), None);
        assert_eq!(
            attr(second, "http.request.resend_count"),
            Some(Value::IntValue(1))
        );
        assert_eq!(attr(second, "server.address"), text("10.0.0.2"));
        assert_eq!(
            attr(second, "http.response.status_code"),
            Some(Value::IntValue(200))
        );
        assert_eq!(status(second), (StatusCode::Unset, ""));
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let now = u64::try_from(now.as_nanos()).unwrap();
        assert!(server.start_time_unix_nano <= first.start_time_unix_nano);
        assert!(first.start_time_unix_nano <= first.end_time_unix_nano);
        assert!(first.end_time_unix_nano <= second.start_time_unix_nano);
        assert!(second.end_time_unix_nano <= server.end_time_unix_nano);
        assert!(
            server.end_time_unix_nano <= now && now - server.start_time_unix_nano < 60_000_000_000
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_every_span_of_a_request() {
        let (tracer, queue) = {
            let config = Tracing {
                endpoint: "http://127.0.0.1:9/v1/traces".into(),
                protocol: OtlpProtocol::Http,
                sample_ratio: 1.0,
                service_name: "t".into(),
                timeout: Duration::from_secs(1),
            };
            let (tracer, queue) = Tracer::capture(&config, 2);
            (Arc::new(tracer), queue)
        };
        let before = crate::telemetry::traces::counts().0;
        for _ in 0..5 {
            let mut trace = Trace::new(&tracer, None, None, || 3);
            trace.attempt_started("10.0.0.1:80".parse().unwrap(), || 4);
            trace.attempt_ended(Some(200), None);
            trace.finish(&finished());
        }
        // Three requests of two spans did not fit (other tests may drop too).
        assert!(crate::telemetry::traces::counts().0 >= before + 6);
        assert_eq!(queued(&queue).len(), 4);
    }

    #[test]
    fn new_traces_follow_the_ratio_and_unsampled_ones_record_nothing() {
        let (tracer, queue) = capturing(0.0);
        let mut trace = Trace::new(&tracer, None, Some(b"k=v"), || 7);
        assert!(!trace.sampled());
        assert_eq!(trace.parent, None);
        trace.attempt_started("10.0.0.1:80".parse().unwrap(), || 9);
        // The backend still learns the trace, unsampled.
        assert!(trace.header.as_bytes().ends_with(b"-0000000000000009-00"));
        trace.finish(&finished());
        assert!(queued(&queue).is_empty());

        let (tracer, queue) = capturing(1.0);
        let mut trace = Trace::new(&tracer, None, Some(b"k=v"), || 7);
        assert!(trace.sampled());
        let mut failed = finished();
        (failed.status, failed.error) = (502, Some(("connect_failed", "cannot connect".into())));
        trace.finish(&failed);
        let server = queued(&queue).remove(0);
        assert!(server.parent_span_id.is_empty());
        assert_eq!(server.flags, 0x101);
        // A new trace does not carry the client's tracestate.
        assert_eq!(server.trace_state, "");
        assert_eq!(status(&server), (StatusCode::Error, "cannot connect"));
        assert_eq!(attr(&server, "error.type"), text("connect_failed"));
        assert_eq!(
            attr(&server, "http.response.status_code"),
            Some(Value::IntValue(502))
        );
    }
}
