//! `otlp-receiver`: an OTLP trace receiver (a stand-in for an OpenTelemetry collector) for
//! the gateway's tracing tests, printing every span it receives as one JSON line.
//!
//! `otlp-receiver --protocol http|grpc [--listen ADDR] [--status N] [--quiet]`. `--listen` defaults
//! to `127.0.0.1:0`. Prints `listening on ADDR` (the bound address) once ready.
//!
//! - `http`: OTLP/HTTP with protobuf: `POST /v1/traces` with
//!   `content-type: application/x-protobuf` and an uncompressed `ExportTraceServiceRequest`
//!   body is answered 200 with an empty `ExportTraceServiceResponse`; another path is 404,
//!   another method 405, another content type, a `content-encoding` other than `identity`
//!   or a body that does not decode 400.
//! - `grpc`: OTLP/gRPC, `opentelemetry.proto.collector.trace.v1.TraceService/Export` over
//!   h2c (no compression).
//!
//! `--status N` makes it a failing collector: every export is answered with status N
//! (HTTP) or `UNAVAILABLE` (gRPC) and its spans are not printed (a line on stderr tells).
//! `--quiet` (HTTP) decodes and counts the spans without printing them, as a collector
//! on another machine would cost the sender nothing more (the benchmarks' receiver);
//! `GET /_count` answers the number of spans received so far.
//!
//! Each span is one line of stdout, written before the export is answered:
//! `{"attributes":{..},"end_ns":N,"flags":N,"kind":"server","name":"..","parent_span_id":"..",
//! "resource":{..},"scope":"..","span_id":"..","start_ns":N,"status_code":"unset|ok|error",
//! "status_message":"..","trace_id":"..","trace_state":"..","transport":"http|grpc"}`.
//! Ids are lowercase hex ("" when empty); `kind` is the SpanKind's name in lowercase
//! (`unspecified`, `internal`, `server`, `client`, `producer`, `consumer`; an unknown one
//! its number). Attribute values: string, bool, int and double as JSON strings, booleans
//! and numbers (a non-finite double as null), arrays as arrays, key-value lists as
//! objects, bytes as lowercase hex strings.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};
use prost::Message;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// The largest HTTP request body read (gRPC has tonic's own 4 MiB limit).
const MAX_BODY: usize = 16 << 20;

fn usage() -> ExitCode {
    eprintln!("usage: otlp-receiver --protocol http|grpc [--listen ADDR] [--status N] [--quiet]");
    ExitCode::from(2)
}

/// Which OTLP transport to serve.
#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// What the command line asked for.
struct Options {
    protocol: Protocol,
    listen: SocketAddr,
    /// `--status N`: refuse every export with this status.
    status: Option<StatusCode>,
    /// `--quiet`: count spans, print none.
    quiet: bool,
}

/// Spans received (`GET /_count`).
static RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn options() -> Option<Options> {
    let mut protocol = None;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut status = None;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--quiet" {
            quiet = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--protocol", Some(v)) if v == "http" => protocol = Some(Protocol::Http),
            ("--protocol", Some(v)) if v == "grpc" => protocol = Some(Protocol::Grpc),
            ("--listen", Some(v)) => listen = v.parse().ok()?,
            ("--status", Some(v)) => status = Some(StatusCode::from_bytes(v.as_bytes()).ok()?),
            _ => return None,
        }
    }
    Some(Options {
        protocol: protocol?,
        listen,
        status,
        quiet,
    })
}

fn main() -> ExitCode {
    let Some(options) = options() else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otlp-receiver: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-receiver: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), String> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", options.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {bound}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    match options.protocol {
        Protocol::Http => serve_http(listener, options.status, options.quiet).await,
        Protocol::Grpc => {
            let receiver = GrpcReceiver {
                fail: options.status.is_some(),
            };
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await
                .map_err(|e| format!("serve: {e}"))
        }
    }
}

async fn serve_http(
    listener: TcpListener,
    status: Option<StatusCode>,
    quiet: bool,
) -> Result<(), String> {
    loop {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| export_http(req, status, quiet));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// One OTLP/HTTP request.
async fn export_http(
    req: Request<hyper::body::Incoming>,
    status: Option<StatusCode>,
    quiet: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/_count" {
        let n = RECEIVED.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(reply(StatusCode::OK, &format!("{n}\n")));
    }
    if req.uri().path() != "/v1/traces" {
        return Ok(reply(StatusCode::NOT_FOUND, "no such path\n"));
    }
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "POST only\n"));
    }
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
    };
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type != "application/x-protobuf" {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            "content-type must be application/x-protobuf\n",
        ));
    }
    if header(CONTENT_ENCODING).is_some_and(|e| e.trim() != "identity") {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            "no content-encoding, please\n",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, &format!("body: {e}\n"))),
    };
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, &format!("decode: {e}\n"))),
    };
    if let Some(status) = status {
        refused(&request, Protocol::Http, &status.to_string());
        return Ok(reply(status, "refused by --status\n"));
    }
    RECEIVED.fetch_add(
        span_count(&request) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if !quiet {
        print_spans(&request, Protocol::Http);
    }
    let mut response = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

/// The OTLP/gRPC `TraceService`.
struct GrpcReceiver {
    /// `--status`: answer every export `UNAVAILABLE`.
    fail: bool,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if self.fail {
            refused(&request, Protocol::Grpc, "UNAVAILABLE");
            return Err(tonic::Status::unavailable("refused by --status"));
        }
        print_spans(&request, Protocol::Grpc);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Tells stderr about an export refused by `--status`.
fn refused(request: &ExportTraceServiceRequest, protocol: Protocol, answer: &str) {
    let spans = span_count(request);
    eprintln!(
        "otlp-receiver: refused a {} export of {spans} spans with {answer}",
        protocol.name()
    );
}

/// The spans `request` carries.
fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Prints one JSON line per span of `request`, flushed.
fn print_spans(request: &ExportTraceServiceRequest, protocol: Protocol) {
    let mut out = String::new();
    for resource_spans in &request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes),
        );
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref().map_or("", |s| s.name.as_str());
            for span in &scope_spans.spans {
                let kind = SpanKind::try_from(span.kind).map_or_else(
                    |_| span.kind.to_string(),
                    |k| {
                        k.as_str_name()
                            .trim_start_matches("SPAN_KIND_")
                            .to_ascii_lowercase()
                    },
                );
                let (code, message) = span
                    .status
                    .as_ref()
                    .map_or((0, ""), |s| (s.code, s.message.as_str()));
                let status_code = SpanStatus::try_from(code).map_or_else(
                    |_| code.to_string(),
                    |c| {
                        c.as_str_name()
                            .trim_start_matches("STATUS_CODE_")
                            .to_ascii_lowercase()
                    },
                );
                let line = json!({
                    "trace_id": hex(&span.trace_id),
                    "span_id": hex(&span.span_id),
                    "parent_span_id": hex(&span.parent_span_id),
                    "name": span.name,
                    "kind": kind,
                    "status_code": status_code,
                    "status_message": message,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "attributes": attributes(&span.attributes),
                    "resource": resource,
                    "scope": scope,
                    "flags": span.flags,
                    "trace_state": span.trace_state,
                    "transport": protocol.name(),
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("otlp-receiver: stdout: {e}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Key-value pairs as a JSON object (a repeated key: the last value).
fn attributes(pairs: &[KeyValue]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect()
}

fn any_value(value: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_value(Some(v))).collect())
        }
        Some(V::KvlistValue(l)) => Value::Object(attributes(&l.values)),
        Some(V::BytesValue(b)) => Value::String(hex(b)),
    }
}
