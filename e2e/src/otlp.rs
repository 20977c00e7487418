//! An `otlp-receiver` (an OTLP trace collector stand-in) in a child process, and the spans
//! it has received.
//!
//! ```text
//! let otlp = OtlpReceiver::spawn("grpc");
//! // ... a gateway exporting to otlp.endpoint() ...
//! let spans = otlp.wait_for("the request's server span", Duration::from_secs(10), |s| {
//!     s.iter().any(|s| s.kind == "server")
//! });
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// One span as `otlp-receiver` printed it (see src/bin/otlp_receiver.rs).
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits, "" for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// The SpanKind in lowercase: `server`, `client`, `internal`, `producer`, `consumer`,
    /// `unspecified`.
    pub kind: String,
    /// `unset`, `ok` or `error`.
    pub status_code: String,
    /// The status's message ("" when none).
    pub status_message: String,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_ns: u64,
    /// The span's attributes: strings, numbers, booleans and arrays of them.
    pub attributes: Map<String, Value>,
    /// The resource's attributes (`service.name`, ...).
    pub resource: Map<String, Value>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The span's flags (the low 8 bits: the W3C trace flags).
    pub flags: u32,
    /// The W3C `tracestate` ("" when none).
    pub trace_state: String,
    /// How the span came: `http` or `grpc`.
    pub transport: String,
}

impl ReceivedSpan {
    /// The string attribute `key`, if there is one.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key)?.as_str()
    }

    /// The integer attribute `key`, if there is one.
    pub fn attr_i64(&self, key: &str) -> Option<i64> {
        self.attributes.get(key)?.as_i64()
    }

    /// A span from one JSON line of `otlp-receiver`; `None` if a key is missing or of
    /// the wrong type.
    fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        let n = |k: &str| v.get(k)?.as_u64();
        let m = |k: &str| v.get(k)?.as_object().cloned();
        Some(Self {
            trace_id: s("trace_id")?,
            span_id: s("span_id")?,
            parent_span_id: s("parent_span_id")?,
            name: s("name")?,
            kind: s("kind")?,
            status_code: s("status_code")?,
            status_message: s("status_message")?,
            start_ns: n("start_ns")?,
            end_ns: n("end_ns")?,
            attributes: m("attributes")?,
            resource: m("resource")?,
            scope: s("scope")?,
            flags: u32::try_from(n("flags")?).ok()?,
            trace_state: s("trace_state")?,
            transport: s("transport")?,
        })
    }
}

/// A running `otlp-receiver` on an ephemeral port of 127.0.0.1, collecting the spans it
/// receives; killed when dropped.
pub struct OtlpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http` (OTLP/HTTP protobuf) or `grpc` (OTLP/gRPC).
    pub protocol: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts one speaking `protocol`: `http` or `grpc`.
    pub fn spawn(protocol: &str) -> Self {
        Self::spawn_with(protocol, &[])
    }

    /// Starts one speaking `protocol` with extra `flags` (`--status 503`: a failing
    /// collector that refuses every export).
    pub fn spawn_with(protocol: &str, flags: &[&str]) -> Self {
        Self::spawn_bin(
            &crate::gateway::workspace_bin("otlp-receiver"),
            protocol,
            flags,
        )
    }

    fn spawn_bin(bin: &Path, protocol: &str, flags: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(["--protocol", protocol, "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn otlp-receiver");
        let mut stdout = BufReader::new(child.stdout.take().expect("otlp-receiver stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read otlp-receiver's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("otlp-receiver did not start: {line:?}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let span = serde_json::from_str(&line)
                    .ok()
                    .and_then(|v| ReceivedSpan::from_json(&v));
                match span {
                    Some(span) => sink
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(span),
                    None => eprintln!("otlp-receiver printed an unexpected line: {line}"),
                }
            }
        });
        Self {
            addr,
            protocol: protocol.to_owned(),
            spans,
            child,
            reader: Some(reader),
        }
    }

    /// `http://ADDR`: the OTLP endpoint to export to (an HTTP exporter posts to
    /// `/v1/traces` under it).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far, in the order they came.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Polls the spans received every 20 ms until `pred` holds for them, and returns
    /// them; panics with `what` and the spans seen once `deadline` has passed.
    pub fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            if start.elapsed() > deadline {
                let seen: Vec<String> = spans.iter().map(|s| format!("  {s:?}")).collect();
                panic!(
                    "timed out after {deadline:?} waiting for {what}; {} spans received:\n{}",
                    spans.len(),
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (the collector is then down); the spans received stay readable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use prost::Message;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn receiver(protocol: &str, flags: &[&str]) -> OtlpReceiver {
        OtlpReceiver::spawn_with(protocol, flags)
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    /// One server span of service `gateway` named `name`, child of another span.
    fn request(name: &str) -> ExportTraceServiceRequest {
        use any_value::Value as V;
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: vec![0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x17],
            parent_span_id: vec![0, 0, 0, 0, 0, 0, 0, 0x2a],
            trace_state: "vendor=x".into(),
            flags: 0x301,
            name: name.into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            attributes: vec![
                kv("http.request.method", V::StringValue("GET".into())),
                kv("http.response.status_code", V::IntValue(502)),
                kv("ratio", V::DoubleValue(0.5)),
                kv("retried", V::BoolValue(true)),
                kv(
                    "tries",
                    V::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(V::IntValue(1)),
                            },
                            AnyValue {
                                value: Some(V::IntValue(2)),
                            },
                        ],
                    }),
                ),
            ],
            status: Some(Status {
                message: "upstream failed".into(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", V::StringValue("gateway".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gateway-scope".into(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The span `request(name)` holds, as the receiver reports it over `transport`.
    fn check(span: &ReceivedSpan, name: &str, transport: &str) {
        assert_eq!(span.trace_id, "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(span.span_id, "a0b1c2d3e4f50617");
        assert_eq!(span.parent_span_id, "000000000000002a");
        assert_eq!(span.name, name);
        assert_eq!(span.kind, "server");
        assert_eq!(span.status_code, "error");
        assert_eq!(span.status_message, "upstream failed");
        assert_eq!(span.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(span.end_ns, 1_700_000_000_250_000_000);
        assert_eq!(span.attr_str("http.request.method"), Some("GET"));
        assert_eq!(span.attr_i64("http.response.status_code"), Some(502));
        assert_eq!(span.attributes["ratio"], serde_json::json!(0.5));
        assert_eq!(span.attributes["retried"], serde_json::json!(true));
        assert_eq!(span.attributes["tries"], serde_json::json!([1, 2]));
        assert_eq!(span.attr_str("absent"), None);
        assert_eq!(span.resource["service.name"], "gateway");
        assert_eq!(span.scope, "gateway-scope");
        assert_eq!(span.flags, 0x301);
        assert_eq!(span.trace_state, "vendor=x");
        assert_eq!(span.transport, transport);
    }

    /// One HTTP/1.1 POST on a new connection: the status, the head and the body.
    fn post(
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let status = head[9..12].parse().unwrap();
        (status, head, out[split + 4..].to_vec())
    }

    #[test]
    fn otlp_http_receives_a_span() {
        let otlp = receiver("http", &[]);
        assert_eq!(otlp.endpoint(), format!("http://{}", otlp.addr));
        let body = request("GET /").encode_to_vec();
        let (status, head, reply) = post(otlp.addr, "/v1/traces", "application/x-protobuf", &body);
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-protobuf"),
            "{head}"
        );
        ExportTraceServiceResponse::decode(&reply[..]).unwrap();
        let spans = otlp.wait_for("the span", DEADLINE, |s| !s.is_empty());
        assert_eq!(spans.len(), 1, "{spans:?}");
        check(&spans[0], "GET /", "http");
    }

    #[test]
    fn otlp_http_refuses_other_requests() {
        let mut otlp = receiver("http", &[]);
        let body = request("x").encode_to_vec();
        let (status, ..) = post(otlp.addr, "/v1/metrics", "application/x-protobuf", &body);
        assert_eq!(status, 404);
        let (status, ..) = post(otlp.addr, "/v1/traces", "application/json", b"{}");
        assert_eq!(status, 400);
        let (status, ..) = post(
            otlp.addr,
            "/v1/traces",
            "application/x-protobuf",
            b"\xff\xff",
        );
        assert_eq!(status, 400);
        let (status, ..) = crate::raw_get(otlp.addr.port(), "otlp", "/v1/traces", "");
        assert_eq!(status, 405);
        otlp.stop();
        assert!(otlp.spans().is_empty(), "{:?}", otlp.spans());
    }

    #[test]
    fn otlp_http_status_flag_fails_every_export() {
        let mut otlp = receiver("http", &["--status", "503"]);
        let body = request("x").encode_to_vec();
        let (status, head, _) = post(otlp.addr, "/v1/traces", "application/x-protobuf", &body);
        assert_eq!(status, 503, "{head}");
        otlp.stop();
        assert!(otlp.spans().is_empty(), "{:?}", otlp.spans());
    }

    #[tokio::test]
    async fn otlp_grpc_receives_a_span() {
        let otlp = receiver("grpc", &[]);
        let mut client = TraceServiceClient::connect(otlp.endpoint()).await.unwrap();
        client
            .export(request("POST /greeter.v1.Greeter/Hello"))
            .await
            .unwrap();
        let spans = otlp.wait_for("the span", DEADLINE, |s| !s.is_empty());
        assert_eq!(spans.len(), 1, "{spans:?}");
        check(&spans[0], "POST /greeter.v1.Greeter/Hello", "grpc");
    }

    #[tokio::test]
    async fn otlp_grpc_status_flag_fails_every_export() {
        let mut otlp = receiver("grpc", &["--status", "503"]);
        let mut client = TraceServiceClient::connect(otlp.endpoint()).await.unwrap();
        let err = client.export(request("x")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        otlp.stop();
        assert!(otlp.spans().is_empty(), "{:?}", otlp.spans());
    }
}
