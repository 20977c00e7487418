//! `[tracing]`: OpenTelemetry spans received by a real OTLP receiver (the collector's
//! protobuf types, over HTTP and over gRPC). A client's sampled `traceparent` is
//! continued (server span under the client's, client span under the server's, the
//! backend's `traceparent` naming the gateway's span, `tracestate` kept); new traces
//! are sampled at 1.0 and not at 0.0, the ratio changed by a live reload; a retry shows
//! as two client spans; a collector that is down costs no request and its spans are
//! counted as dropped; a batch's worth of spans goes without waiting for the schedule
//! delay; without `[tracing]` the client's `traceparent` reaches the backend untouched.
//! The trace id is in the access line.

use std::time::Duration;

use e2e::{
    curl, https_listener, raw_get, wait_until, Blackhole, Certs, Gateway, Hello, OtlpReceiver,
    ReceivedSpan,
};

const DEADLINE: Duration = Duration::from_secs(30);

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// A plain listener `web`, an admin listener and an upstream `hello` of `servers`,
/// then `tracing` (the `[tracing]` table's body, or "" for none) and an access log of
/// `TR|$trace_id|$status|$path` lines.
fn config(servers: &[String], tracing: &str) -> String {
    config_with(servers, tracing, "")
}

/// [`config`] with `listener` (another `[[listener]]` table) after `web`.
fn config_with(servers: &[String], tracing: &str, listener: &str) -> String {
    let servers = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let tracing = match tracing {
        "" => String::new(),
        body => format!("[tracing]\n{body}\n"),
    };
    format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{{{{port:web}}}}\"\n\n{listener}\n[upstream.hello]\nservers = [{servers}]\n\n[[route]]\nhost = \"shop.test\"\nupstream = \"hello\"\n\n[access_log]\nformat = 'TR|$trace_id|$status|$path'\n\n{tracing}"
    )
}

fn start(config: &str) -> Gateway {
    start_env(config, &[])
}

fn start_env(config: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_with(config, |mut command| {
        command
            .env("RUST_LOG", "info")
            .env_remove("GATEWAY_LOG_FORMAT")
            .envs(env.iter().copied());
        command
    })
}

fn otlp(receiver: &OtlpReceiver, ratio: &str) -> String {
    format!(
        "otlp = {{ endpoint = \"{}\", protocol = \"{}\" }}\nsample_ratio = {ratio}\nservice_name = \"frontend\"",
        receiver.endpoint(),
        receiver.protocol
    )
}

/// GET `path` through `web` with extra `headers` (each ending in CRLF): the status and
/// the response (hello's `?echo_headers=1` body lists the fields it received).
fn get(gw: &Gateway, path: &str, headers: &str) -> (u16, String) {
    raw_get(gw.port("web"), "shop.test", path, headers)
}

/// The value of the field `name` hello received, from its echo.
fn received<'a>(echo: &'a str, name: &str) -> Option<&'a str> {
    let body = echo.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// The `(trace id, span id, flags)` of a `traceparent`.
fn fields(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// The spans of trace `trace_id`, once it has a server span and `clients` client spans.
fn trace(receiver: &OtlpReceiver, trace_id: &str, clients: usize) -> Vec<ReceivedSpan> {
    receiver
        .wait_for("the trace's spans", DEADLINE, |spans| {
            let of: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
            of.iter().any(|s| s.kind == "server")
                && of.iter().filter(|s| s.kind == "client").count() >= clients
        })
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect()
}

#[test]
fn a_sampled_parent_is_continued_and_the_backend_gets_the_gateways_span() {
    let hello = Hello::spawn("h");
    let receiver = OtlpReceiver::spawn("http");
    let certs = Certs::new();
    let tls = certs.server("tls", &["shop.test"]);
    let servers = [hello.addr.to_string()];
    let gw = start(&config_with(
        &servers,
        &otlp(&receiver, "0.0"),
        &https_listener(&tls),
    ));
    let parent =
        format!("traceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\ntracestate: vendor=v1\r\n");
    let (status, echo) = get(&gw, "/cart?echo_headers=1", &parent);
    assert_eq!(status, 200, "{echo}");

    // The backend's parent is the gateway's span, in the client's trace.
    let sent = received(&echo, "traceparent").expect("traceparent reached hello");
    let (trace_id, span_id, flags) = fields(sent);
    assert_eq!((trace_id.as_str(), flags.as_str()), (PARENT_TRACE, "01"));
    assert_ne!(span_id, PARENT_SPAN);
    assert_eq!(received(&echo, "tracestate"), Some("vendor=v1"));

    let spans = trace(&receiver, PARENT_TRACE, 1);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    let client = spans
        .iter()
        .find(|s| s.kind == "client")
        .expect("client span");
    assert_eq!(server.parent_span_id, PARENT_SPAN);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.span_id, span_id, "the span hello was told of");
    assert_eq!(server.trace_state, "vendor=v1");
    assert_eq!(server.resource["service.name"], "frontend");
    assert_eq!(server.scope, "gateway");
    assert_eq!(server.name, "GET shop.test/");
    assert_eq!(server.attr_str("http.request.method"), Some("GET"));
    assert_eq!(server.attr_str("url.path"), Some("/cart"));
    assert_eq!(server.attr_str("url.scheme"), Some("http"));
    assert_eq!(server.attr_str("server.address"), Some("shop.test"));
    assert_eq!(server.attr_str("client.address"), Some("127.0.0.1"));
    assert_eq!(server.attr_str("network.protocol.version"), Some("1.1"));
    assert_eq!(server.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(server.attr_str("gateway.route"), Some("shop.test/"));
    assert_eq!(server.attr_str("gateway.upstream"), Some("hello"));
    assert_eq!(server.attr_str("user_agent.original"), None);
    assert!(server.attr_i64("http.response.body.size").unwrap_or(0) > 0);
    assert_eq!(server.status_code, "unset");
    assert_eq!(client.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(
        client.attr_i64("server.port"),
        Some(i64::from(hello.addr.port()))
    );
    assert!(server.start_ns <= client.start_ns && client.end_ns <= server.end_ns);

    // The trace id is in the access line.
    wait_until(DEADLINE, "the access line's trace id", || {
        let want = format!("TR|{PARENT_TRACE}|200|/cart");
        gw.log().lines().any(|l| l == want).then_some(())
    });

    // An unsampled parent stays unsampled (ratio 0.0 would not sample it either way):
    // the backend learns the trace, nothing is recorded. Then a sampled one is, after
    // it in the queue: nothing of the unsampled trace came before it.
    let unsampled = "a3ce929d0e0e47364bf92f3577b34da6";
    let header = format!("traceparent: 00-{unsampled}-{PARENT_SPAN}-00\r\n");
    let (_, echo) = get(&gw, "/?echo_headers=1", &header);
    let (trace_id, _, flags) = fields(received(&echo, "traceparent").expect("traceparent"));
    assert_eq!((trace_id.as_str(), flags.as_str()), (unsampled, "00"));
    let later = "0e0e47364bf92f3577b34da6a3ce929d";
    get(
        &gw,
        "/",
        &format!("traceparent: 00-{later}-{PARENT_SPAN}-01\r\n"),
    );
    trace(&receiver, later, 1);
    assert!(receiver.spans().iter().all(|s| s.trace_id != unsampled));

    // Over HTTP/2 (TLS) too: the stream's backend request carries the gateway's span.
    let port = gw.port("https");
    let resolve = format!("shop.test:{port}:127.0.0.1");
    let h2_trace = "77b34da6a3ce929d0e0e47364bf92f35";
    let tp = format!("traceparent: 00-{h2_trace}-{PARENT_SPAN}-01");
    let got = curl(
        "127.0.0.1",
        &format!("https://shop.test:{port}/h2?echo_headers=1"),
        &["--http2", "--resolve", &resolve, "-H", &tp],
    );
    assert_eq!(got.status, "200", "{}", got.body);
    let sent = got
        .body
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .expect("traceparent over HTTP/2");
    let spans = trace(&receiver, h2_trace, 1);
    let client = spans
        .iter()
        .find(|s| s.kind == "client")
        .expect("client span");
    assert_eq!(fields(sent).1, client.span_id);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    assert_eq!(server.attr_str("network.protocol.version"), Some("2"));
    assert_eq!(server.attr_str("url.scheme"), Some("https"));
}

#[test]
fn new_traces_follow_the_sample_ratio_changed_live() {
    let hello = Hello::spawn("h");
    let receiver = OtlpReceiver::spawn("grpc");
    let gw = start(&config(&[hello.addr.to_string()], &otlp(&receiver, "1.0")));

    // No parent: a new trace, sampled at 1.0, its root the gateway's server span.
    let (status, echo) = get(&gw, "/new?echo_headers=1", "");
    assert_eq!(status, 200, "{echo}");
    let (trace_id, span_id, flags) = fields(received(&echo, "traceparent").expect("traceparent"));
    assert_eq!(flags, "01");
    let spans = trace(&receiver, &trace_id, 1);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    assert_eq!(server.parent_span_id, "");
    assert_eq!(server.transport, "grpc");
    let client = spans
        .iter()
        .find(|s| s.kind == "client")
        .expect("client span");
    assert_eq!(client.span_id, span_id);

    // An invalid parent starts a new trace (and its tracestate is not passed on).
    let bad = format!(
        "traceparent: 00-{}-{PARENT_SPAN}-01\r\ntracestate: v=1\r\n",
        PARENT_TRACE.to_uppercase()
    );
    let (_, echo) = get(&gw, "/?echo_headers=1", &bad);
    let (trace_id, _, flags) = fields(received(&echo, "traceparent").expect("traceparent"));
    assert_ne!(trace_id, PARENT_TRACE.to_uppercase());
    assert_ne!(trace_id, PARENT_TRACE);
    assert_eq!(flags, "01");
    assert_eq!(received(&echo, "tracestate"), None);
    trace(&receiver, &trace_id, 1);
    // So do two valid ones: neither is the caller's.
    let two = format!("traceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\ntraceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\n");
    let (_, echo) = get(&gw, "/?echo_headers=1", &two);
    let (trace_id, _, _) = fields(received(&echo, "traceparent").expect("traceparent"));
    assert_ne!(trace_id, PARENT_TRACE);

    // To 0.0, live: new traces are no longer sampled, but still named to the backend.
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace("sample_ratio = 1.0", "sample_ratio = 0.0"),
    )
    .expect("write");
    let unsampled = wait_until(DEADLINE, "ratio 0.0 to apply", || {
        let (_, echo) = get(&gw, "/?echo_headers=1", "");
        let (trace_id, _, flags) = fields(received(&echo, "traceparent")?);
        (flags == "00").then_some(trace_id)
    });
    let mut unsampled = vec![unsampled];
    for _ in 0..20 {
        let (status, echo) = get(&gw, "/?echo_headers=1", "");
        assert_eq!(status, 200);
        let (trace_id, _, flags) = fields(received(&echo, "traceparent").expect("traceparent"));
        assert_eq!(flags, "00");
        unsampled.push(trace_id);
    }
    // A sampled parent still is recorded; nothing of the unsampled traces came first.
    get(
        &gw,
        "/",
        &format!("traceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\n"),
    );
    trace(&receiver, PARENT_TRACE, 1);
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|s| !unsampled.contains(&s.trace_id)),
        "unsampled traces were exported"
    );
}

#[test]
fn a_retry_shows_as_two_client_spans() {
    let hello = Hello::spawn("h");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let receiver = OtlpReceiver::spawn("http");
    let servers = [dead.to_string(), hello.addr.to_string()];
    let gw = start(&config(&servers, &otlp(&receiver, "1.0")));
    // Round robin: one of two requests tries the dead backend first.
    let mut retried = None;
    for _ in 0..4 {
        let (status, echo) = get(&gw, "/?echo_headers=1", "");
        assert_eq!(status, 200, "{echo}");
        let (trace_id, span_id, _) = fields(received(&echo, "traceparent").expect("traceparent"));
        let spans = trace(&receiver, &trace_id, 1);
        if spans.iter().filter(|s| s.kind == "client").count() == 2 {
            retried = Some((spans, span_id));
            break;
        }
    }
    let (spans, span_id) = retried.expect("a request retried on the second backend");
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    let mut clients: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind == "client").collect();
    clients.sort_by_key(|s| s.start_ns);
    let (first, second) = (clients[0], clients[1]);
    assert_eq!(first.attr_i64("server.port"), Some(i64::from(dead.port())));
    assert_eq!(first.status_code, "error");
    assert_eq!(first.attr_str("error.type"), Some("connect_failed"));
    assert_eq!(first.attr_i64("http.request.resend_count"), None);
    assert_eq!(
        second.attr_i64("server.port"),
        Some(i64::from(hello.addr.port()))
    );
    assert_eq!(second.attr_i64("http.request.resend_count"), Some(1));
    assert_eq!(second.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(second.status_code, "unset");
    // Each attempt names its own span; hello saw the second.
    assert_eq!(second.span_id, span_id);
    assert_ne!(first.span_id, second.span_id);
    for c in [first, second] {
        assert_eq!(c.parent_span_id, server.span_id);
    }
    assert_eq!(server.attr_i64("http.response.status_code"), Some(200));
}

#[test]
fn a_collector_that_is_down_costs_no_request_and_its_spans_are_counted_dropped() {
    let hello = Hello::spawn("h");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let tracing =
        format!("otlp = {{ endpoint = \"http://{dead}\", timeout = \"1s\" }}\nsample_ratio = 1.0");
    // A queue of 16 spans (OpenTelemetry's variable), batches of as many.
    let env = [("OTEL_BSP_MAX_QUEUE_SIZE", "16")];
    let gw = start_env(&config(&[hello.addr.to_string()], &tracing), &env);
    for _ in 0..50 {
        let (status, out) = get(&gw, "/", "");
        assert_eq!(status, 200, "{out}");
    }
    // A server and a client span per request, none exported.
    wait_until(DEADLINE, "100 spans counted as dropped", || {
        let dropped = gw.metric("gateway_tracing_spans_dropped_total")?;
        (dropped >= 100.0).then_some(())
    });
    assert_eq!(gw.metric("gateway_tracing_spans_exported_total"), Some(0.0));
    wait_until(DEADLINE, "the export failure's warning", || {
        gw.log()
            .contains("tracing: cannot export spans")
            .then_some(())
    });

    // A collector that never answers (its connects hang), with a small queue: exports
    // time out, the queue fills; requests do not wait for any of it.
    let hanging = Blackhole::new();
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace(
            &format!("http://{dead}\", timeout = \"1s\""),
            &format!("http://{}\", timeout = \"5s\"", hanging.addr),
        ),
    )
    .expect("write");
    wait_until(DEADLINE, "the hanging collector's config", || {
        gw.log()
            .contains(&format!("endpoint=http://{}/v1/traces", hanging.addr))
            .then_some(())
    });
    let before = gw
        .metric("gateway_tracing_spans_dropped_total")
        .unwrap_or(0.0);
    for _ in 0..200 {
        let started = std::time::Instant::now();
        let (status, out) = get(&gw, "/", "");
        assert_eq!(status, 200, "{out}");
        // A safety bound well under the export's 5 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited on the export"
        );
    }
    wait_until(DEADLINE, "spans dropped for the full queue", || {
        let dropped = gw.metric("gateway_tracing_spans_dropped_total")?;
        (dropped >= before + 300.0).then_some(())
    });

    // A collector refusing every export (HTTP 503): the same.
    let refusing = OtlpReceiver::spawn_with("http", &["--status", "503"]);
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace(&format!("http://{}", hanging.addr), &refusing.endpoint()),
    )
    .expect("write");
    let before = gw
        .metric("gateway_tracing_spans_dropped_total")
        .unwrap_or(0.0);
    wait_until(DEADLINE, "refused spans counted as dropped", || {
        let (status, _) = get(&gw, "/", "");
        assert_eq!(status, 200);
        let dropped = gw.metric("gateway_tracing_spans_dropped_total")?;
        (dropped >= before + 2.0).then_some(())
    });
    assert!(refusing.spans().is_empty());

    // Then one that takes them: exported, counted.
    let receiver = OtlpReceiver::spawn("http");
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace(&refusing.endpoint(), &receiver.endpoint()),
    )
    .expect("write");
    wait_until(DEADLINE, "spans exported to the new collector", || {
        get(&gw, "/", "");
        (!receiver.spans().is_empty()).then_some(())
    });
    wait_until(DEADLINE, "the exported count", || {
        let exported = gw.metric("gateway_tracing_spans_exported_total")?;
        (exported >= 2.0).then_some(())
    });
}

#[test]
fn spans_still_queued_are_exported_when_the_gateway_stops() {
    let hello = Hello::spawn("h");
    let receiver = OtlpReceiver::spawn("grpc");
    let config = format!(
        "[server]\nshutdown_delay = \"0s\"\n\n{}",
        config(&[hello.addr.to_string()], &otlp(&receiver, "1.0"))
    );
    // Batches wait ten minutes to fill: only the exit's flush sends this one.
    let mut gw = start_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "600000")]);
    let (status, echo) = get(&gw, "/last?echo_headers=1", "");
    assert_eq!(status, 200, "{echo}");
    let (trace_id, _, _) = fields(received(&echo, "traceparent").expect("traceparent"));
    wait_until(DEADLINE, "the access line", || {
        let want = format!("TR|{trace_id}|200|/last");
        gw.log().lines().any(|l| l == want).then_some(())
    });
    assert!(
        receiver.spans().is_empty(),
        "exported before the batch delay"
    );
    gw.signal("TERM");
    let exit = gw.wait_exit(DEADLINE).expect("the gateway exits");
    assert!(exit.success(), "{exit:?}");
    trace(&receiver, &trace_id, 1);
}

#[test]
fn a_batchs_worth_of_spans_is_exported_without_waiting_for_the_delay() {
    let hello = Hello::spawn("h");
    let receiver = OtlpReceiver::spawn("http");
    let config = config(&[hello.addr.to_string()], &otlp(&receiver, "1.0"));
    // Exports every ten minutes, or when 8 spans are queued: 5 requests make 10.
    let gw = start_env(
        &config,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8"),
        ],
    );
    for i in 0..5 {
        let (status, body) = get(&gw, &format!("/batch/{i}"), "");
        assert_eq!(status, 200, "{body}");
    }
    let spans = receiver.wait_for("a batch of 8 spans", DEADLINE, |spans| spans.len() >= 8);
    assert!(spans.len() <= 10, "{spans:?}");
    wait_until(DEADLINE, "the exported spans counted", || {
        let exported = gw.metric("gateway_tracing_spans_exported_total")?;
        (exported >= 8.0).then_some(())
    });
}

#[test]
fn without_tracing_the_clients_traceparent_reaches_the_backend_as_it_came() {
    let hello = Hello::spawn("h");
    let gw = start(&config(&[hello.addr.to_string()], ""));
    let header = format!("traceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\ntracestate: a=b\r\n");
    let (status, echo) = get(&gw, "/p?echo_headers=1", &header);
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        received(&echo, "traceparent"),
        Some(format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01").as_str())
    );
    assert_eq!(received(&echo, "tracestate"), Some("a=b"));
    // No trace of its own: the access line has none, nothing is counted.
    wait_until(DEADLINE, "the access line", || {
        gw.log().lines().any(|l| l == "TR|-|200|/p").then_some(())
    });
    let (_, echo) = get(&gw, "/?echo_headers=1", "");
    assert_eq!(received(&echo, "traceparent"), None);
    assert_eq!(gw.metric("gateway_tracing_spans_dropped_total"), Some(0.0));
}
