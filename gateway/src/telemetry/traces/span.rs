//! One request's trace: its ids and sampling decision, the `traceparent` its backend
//! gets (naming the gateway's span of the attempt), and, when sampled, what its server
//! span and one client span per attempt record: a `Record` queued for the export
//! thread, which makes OpenTelemetry's `SpanData` of it.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

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
    /// The client's `tracestate`, carried by the spans of a continued trace.
    trace_state: TraceState,
    attempts: Vec<AttemptSpan>,
}

/// One attempt on a backend.
#[derive(Debug)]
struct AttemptSpan {
    span_id: u64,
    start: Instant,
    end: Option<Instant>,
    backend: SocketAddr,
    status: Option<u16>,
    error: Option<&'static str>,
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
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse().ok())
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
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    trace_state: TraceState,
    wall: SystemTime,
    start: Instant,
    end: Instant,
    method: http::Method,
    scheme: &'static str,
    protocol: &'static str,
    client: Option<IpAddr>,
    status: u16,
    bytes_sent: u64,
    bytes_received: u64,
    /// Path, host, user agent, route and upstream, at the ranges below.
    text: String,
    path: Range<usize>,
    host: Range<usize>,
    user_agent: Option<Range<usize>>,
    route: Option<Range<usize>>,
    upstream: Option<Range<usize>>,
    error: Option<(&'static str, String)>,
    attempts: Vec<AttemptSpan>,
}

impl Record {
    /// The spans it makes: one server span, and one client span per attempt.
    pub(crate) fn span_count(&self) -> usize {
        1 + self.attempts.len()
    }

    /// Its spans, client ones first, into `out`.
    pub(crate) fn into_spans(self, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let text = |r: &Range<usize>| self.text.get(r.clone()).unwrap_or("");
        let at = |t: Instant| self.wall + t.saturating_duration_since(self.start);
        let context = |span_id: u64| {
            SpanContext::new(
                TraceId::from(self.trace_id),
                SpanId::from(span_id),
                TraceFlags::SAMPLED,
                false,
                self.trace_state.clone(),
            )
        };
        let method = method_value(&self.method);
        for (i, a) in self.attempts.iter().enumerate() {
            let mut attributes = Vec::with_capacity(6);
            attributes.extend([
                KeyValue::new("http.request.method", method.clone()),
                KeyValue::new("server.address", ip_string(a.backend.ip())),
                KeyValue::new("server.port", i64::from(a.backend.port())),
            ]);
            if i > 0 {
                attributes.push(KeyValue::new("http.request.resend_count", i as i64));
            }
            if let Some(status) = a.status {
                let status = i64::from(status);
                attributes.push(KeyValue::new("http.response.status_code", status));
            }
            // A client span's error: no answer, or a 4xx/5xx one.
            let error = a
                .error
                .or_else(|| a.status.filter(|s| *s >= 400).map(status_text))
                .or(a.end.is_none().then_some("cancelled"));
            let status = match error {
                Some(e) => {
                    attributes.push(KeyValue::new("error.type", e));
                    Status::error(e)
                }
                None => Status::Unset,
            };
            out.push(SpanData {
                span_context: context(a.span_id),
                parent_span_id: SpanId::from(self.span_id),
                parent_span_is_remote: false,
                span_kind: SpanKind::Client,
                name: method_name(&self.method),
                start_time: at(a.start),
                end_time: at(a.end.unwrap_or(self.end)),
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: scope.clone(),
            });
        }
        let mut attributes = Vec::with_capacity(14);
        attributes.extend([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.scheme", self.scheme),
            KeyValue::new("url.path", text(&self.path).to_owned()),
            KeyValue::new("server.address", text(&self.host).to_owned()),
            KeyValue::new("network.protocol.version", self.protocol),
            KeyValue::new("http.request.body.size", clamp(self.bytes_received)),
            KeyValue::new("http.response.body.size", clamp(self.bytes_sent)),
        ]);
        if self.status > 0 {
            let status = i64::from(self.status);
            attributes.push(KeyValue::new("http.response.status_code", status));
        }
        if let Some(ip) = self.client {
            attributes.push(KeyValue::new("client.address", ip_string(ip)));
        }
        if let Some(ua) = &self.user_agent {
            attributes.push(KeyValue::new("user_agent.original", text(ua).to_owned()));
        }
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new("gateway.route", text(route).to_owned()));
        }
        if let Some(u) = &self.upstream {
            attributes.push(KeyValue::new("gateway.upstream", text(u).to_owned()));
        }
        // A server span's error: a 5xx, or no answer at all.
        let status = match (&self.error, self.status) {
            (Some((kind, message)), s) if s >= 500 || s == 0 => {
                attributes.push(KeyValue::new("error.type", *kind));
                Status::error(message.clone())
            }
            (_, s) if s >= 500 => {
                attributes.push(KeyValue::new("error.type", status_text(s)));
                Status::error(status_text(s))
            }
            _ => Status::Unset,
        };
        let name = match &self.route {
            Some(route) => {
                let (method, route) = (self.method.as_str(), text(route));
                let mut name = String::with_capacity(method.len() + 1 + route.len());
                name.push_str(method);
                name.push(' ');
                name.push_str(route);
                Cow::Owned(name)
            }
            None => method_name(&self.method),
        };
        out.push(SpanData {
            span_context: context(self.span_id),
            parent_span_id: self.parent.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: self.parent.is_some(),
            span_kind: SpanKind::Server,
            name,
            start_time: self.wall,
            end_time: at(self.end),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });
    }
}

/// The standard methods as static text (no allocation), others copied.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD.iter().find(|(m, _)| m == method).map_or_else(
        || Cow::Owned(method.as_str().to_owned()),
        |(_, t)| Cow::Borrowed(*t),
    )
}

fn method_value(method: &http::Method) -> Value {
    match method_name(method) {
        Cow::Borrowed(s) => Value::from(s),
        Cow::Owned(s) => Value::from(s),
    }
}

/// An address as text without the formatting machinery.
fn ip_string(ip: IpAddr) -> String {
    let text = crate::ip_text::IpText::new(ip);
    String::from_utf8_lossy(text.as_bytes()).into_owned()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    fn queued(queue: &std::sync::mpsc::Receiver<Item>) -> Vec<SpanData> {
        let scope = InstrumentationScope::builder("gateway").build();
        let mut spans = Vec::new();
        for item in queue.try_iter() {
            if let Item::Request(record) = item {
                record.into_spans(&scope, &mut spans);
            }
        }
        spans
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

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
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
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(server.parent_span_id, SpanId::from(0xf067));
        assert!(server.parent_span_is_remote);
        assert_eq!(server.span_context.span_id(), SpanId::from(10));
        assert_eq!(server.span_context.trace_state().header(), "k=v");
        assert_eq!(server.name, "GET shop");
        assert_eq!(server.status, Status::Unset);
        assert_eq!(
            attr(server, "http.response.status_code"),
            Some(&Value::I64(200))
        );
        assert_eq!(attr(server, "url.path"), Some(&Value::from("/cart")));
        for client in [first, second] {
            assert_eq!(client.span_kind, SpanKind::Client);
            assert_eq!(client.parent_span_id, SpanId::from(10));
            assert_eq!(client.span_context.trace_id(), TraceId::from(0x4bf9));
        }
        assert_eq!(first.span_context.span_id(), SpanId::from(11));
        assert_eq!(first.status, Status::error("connect_failed"));
        assert_eq!(attr(first, "http.request.resend_count"), None);
        assert_eq!(
            attr(second, "http.request.resend_count"),
            Some(&Value::I64(1))
        );
        assert_eq!(
            attr(second, "server.address"),
            Some(&Value::from("10.0.0.2"))
        );
        assert_eq!(second.status, Status::Unset);
        assert!(first.start_time <= first.end_time && first.end_time <= server.end_time);
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
        assert_eq!(server.parent_span_id, SpanId::INVALID);
        // A new trace does not carry the client's tracestate.
        assert_eq!(server.span_context.trace_state().header(), "");
        assert_eq!(server.status, Status::error("cannot connect"));
        assert_eq!(
            attr(&server, "error.type"),
            Some(&Value::from("connect_failed"))
        );
    }
}
