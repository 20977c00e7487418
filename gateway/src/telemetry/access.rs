//! The access log: one line per request, in the format of the other log lines (text or
//! JSON), formatted by hand into a per-thread buffer and written to stderr in whole lines,
//! up to 4 KiB per write (atomic on a pipe), at the latest [`FLUSH_EVERY`] later. A line
//! is at most 4 KiB: one that would be longer is written again with its text fields cut
//! short (each ends in `…`), so a client's 8 KiB path cannot break that, nor make every
//! request write kilobytes of log.
//!
//! `tracing`'s formatter costs about a fifth of a request's CPU (every field goes through
//! `fmt`, then `serde_json`, then one `write` per line); this writer keeps the lines and
//! the `RUST_LOG` switch (target `access`, level INFO) and drops that cost.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use http::header::{REFERER, USER_AGENT};
use http::HeaderMap;

use super::access_format::{AccessFormat, Shape, Var, STANDARD};
use crate::ip_text::IpText;
use crate::telemetry::LogFormat;

/// The longest a line waits in a buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Buffered bytes written at once (whole lines): a pipe writes up to 4 KiB atomically,
/// so lines from other writers never land inside ours. No line is longer.
const CHUNK: usize = 4096;

/// Where a text field of a line too long for [`CHUNK`] is cut: the bytes its value may
/// take as written (escapes included, quotes and the `…` excluded). Their sum with the
/// rest of a line (under 600 bytes, with every extra field) stays under [`CHUNK`].
pub(super) fn cut_at(field: &str) -> usize {
    match field {
        "path" => 1024,
        "host" | "referer" | "user_agent" => 512,
        "request_id" => 256,
        _ => 128,
    }
}

/// Ends a value that was cut short.
pub(super) const CUT: &str = "…";

/// One request, as logged.
pub struct AccessLine<'a> {
    pub listener: &'a str,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
    pub duration: Duration,
    pub bytes: usize,
    pub request_id: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`... (`-` before a request was read).
    pub protocol: &'a str,
    /// The request's fields (`referer`, `user_agent` are looked up only when logged).
    pub headers: Option<&'a HeaderMap>,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// From the first attempt's start to the backend's response head.
    pub upstream_time: Option<Duration>,
    /// The route's name (its label in the metrics).
    pub route: Option<&'a str>,
    /// The TLS connection's version (`TLSv1.3`), for HTTPS listeners.
    pub tls_version: Option<&'a str>,
    /// The trace the request is part of (32 hex digits), with `[tracing]`.
    pub trace_id: Option<&'a str>,
}

/// `[access_log]` as last applied; `None`: the standard fields in the process's format.
static CONFIGURED: ArcSwapOption<AccessFormat> = ArcSwapOption::const_empty();
/// Whether a line shows `upstream_ms` (so the request path times the backend).
static UPSTREAM_TIME: AtomicBool = AtomicBool::new(false);

/// Applies a config's `[access_log]` (from the reloader, with each config it applies).
pub fn configure(format: &AccessFormat) {
    let configured = (*format != AccessFormat::default()).then(|| Arc::new(format.clone()));
    UPSTREAM_TIME.store(format.uses(Var::UpstreamMs), Ordering::Relaxed);
    CONFIGURED.store(configured);
}

/// Whether access lines show the backend's time (`upstream_ms`).
pub fn wants_upstream_time() -> bool {
    UPSTREAM_TIME.load(Ordering::Relaxed)
}

/// Whether access lines are logged (`RUST_LOG` enables target `access` at INFO).
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// The line format, set once by [`crate::telemetry::init`].
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

pub(super) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// Every thread's buffer, for [`flush`].
static BUFFERS: Mutex<Vec<Arc<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's buffer (registered in [`BUFFERS`]) and its line scratch space.
    static LOCAL: (Arc<Mutex<Vec<u8>>>, RefCell<Vec<u8>>) = {
        let buffer = Arc::new(Mutex::new(Vec::with_capacity(CHUNK)));
        BUFFERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer.clone());
        (buffer, RefCell::new(Vec::with_capacity(512)))
    };
}

/// Logs one request.
pub fn log(line: &AccessLine<'_>) {
    let process = FORMAT.get().copied().unwrap_or(LogFormat::Text);
    let configured = CONFIGURED.load();
    let (shape, extra) = match configured.as_deref() {
        Some(f) => (&f.shape, &f.fields[..]),
        None => (&Shape::Default, &[][..]),
    };
    LOCAL.with(|(buffer, scratch)| {
        let Ok(mut text) = scratch.try_borrow_mut() else {
            return;
        };
        text.clear();
        let now = SystemTime::now();
        let write = |text: &mut Vec<u8>, cut: bool| match (shape, process) {
            (Shape::Template(pieces), _) => {
                super::access_template::write(text, line, pieces, now, cut)
            }
            (Shape::Json, _) | (Shape::Default, LogFormat::Json) => {
                json(text, line, extra, now, cut)
            }
            (Shape::Text, _) | (Shape::Default, LogFormat::Text) => {
                plain(text, line, extra, now, cut)
            }
        };
        write(&mut text, false);
        if text.len() > CHUNK {
            text.clear();
            write(&mut text, true);
        }
        // The lock is this thread's own: only `flush` takes it from elsewhere.
        let mut pending = buffer.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.is_empty() && pending.len() + text.len() > CHUNK {
            write_out(&mut pending);
        }
        pending.extend_from_slice(&text);
        if pending.len() >= CHUNK {
            write_out(&mut pending);
        }
    });
}

/// Writes out every thread's buffered lines.
pub fn flush() {
    let buffers = BUFFERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for buffer in buffers {
        let mut pending = buffer.lock().unwrap_or_else(PoisonError::into_inner);
        write_out(&mut pending);
    }
}

fn write_out(pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    // A failed write to stderr has nowhere to be reported; the lines are dropped.
    let _ = std::io::stderr().lock().write_all(pending);
    pending.clear();
}

/// A field's value, and how each format writes it.
pub(super) enum Value<'a> {
    /// Bare in text, a JSON string.
    Word(&'a str),
    /// Quoted in text (as `Debug` quotes), a JSON string.
    Quoted(&'a str),
    /// A number in both.
    Number(u64),
    /// An IP address (`-` when none): bare in text, a JSON string.
    Ip(Option<IpAddr>),
    /// An address and port (`-` when none): bare in text, a JSON string.
    Socket(Option<SocketAddr>),
    /// Milliseconds with three decimals (`-` when none): bare in text, a JSON string.
    Millis(Option<Duration>),
    /// The line's time (templates only: JSON and text lines start with it).
    Time,
}

/// A variable's value on a line.
pub(super) fn value<'a>(l: &'a AccessLine<'a>, var: Var) -> Value<'a> {
    let header = |name| {
        l.headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    match var {
        Var::Listener => Value::Word(l.listener),
        Var::Client => Value::Ip(l.client),
        Var::Time => Value::Time,
        Var::Method => Value::Word(l.method),
        Var::Host => Value::Quoted(l.host),
        Var::Path => Value::Quoted(l.path),
        Var::Protocol => Value::Word(l.protocol),
        Var::Status => Value::Number(u64::from(l.status)),
        Var::Bytes => Value::Number(l.bytes as u64),
        Var::BytesReceived => Value::Number(l.bytes_received),
        Var::Referer => Value::Quoted(header(REFERER)),
        Var::UserAgent => Value::Quoted(header(USER_AGENT)),
        Var::DurationMs => Value::Millis(Some(l.duration)),
        Var::Upstream => Value::Socket(l.upstream),
        Var::UpstreamMs => Value::Millis(l.upstream_time),
        Var::RequestId => Value::Quoted(l.request_id),
        Var::Route => Value::Quoted(l.route.unwrap_or("-")),
        Var::TlsVersion => Value::Word(l.tls_version.unwrap_or("-")),
        Var::TraceId => Value::Word(l.trace_id.unwrap_or("-")),
    }
}

/// A JSON line: the standard fields, then `extra`; with `cut`, text fields are cut at
/// [`cut_at`].
fn json(out: &mut Vec<u8>, l: &AccessLine<'_>, extra: &[Var], now: SystemTime, cut: bool) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\"");
    for &var in STANDARD.iter().chain(extra) {
        let (name, value) = (var.name(), value(l, var));
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Value::Word(s) | Value::Quoted(s) if cut => {
                let (s, was_cut) = prefix(s, cut_at(name), json_len);
                json_str(out, s);
                mark(out, was_cut);
            }
            Value::Word(s) | Value::Quoted(s) => json_str(out, s),
            Value::Number(n) => number(out, n),
            Value::Ip(_) | Value::Socket(_) => {
                out.push(b'"');
                address(out, &value);
                out.push(b'"');
            }
            Value::Millis(d) => {
                out.push(b'"');
                opt_millis(out, d);
                out.push(b'"');
            }
            Value::Time => {
                out.push(b'"');
                timestamp(out, now);
                out.push(b'"');
            }
        }
    }
    out.extend_from_slice(b",\"target\":\"access\"}\n");
}

/// A text line: the standard fields, then `extra`; with `cut`, text fields are cut at
/// [`cut_at`].
fn plain(out: &mut Vec<u8>, l: &AccessLine<'_>, extra: &[Var], now: SystemTime, cut: bool) {
    timestamp(out, now);
    out.extend_from_slice(b"  INFO access:");
    for &var in STANDARD.iter().chain(extra) {
        let (name, value) = (var.name(), value(l, var));
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        match value {
            Value::Word(s) if cut => {
                let (s, was_cut) = prefix(s, cut_at(name), str::len);
                out.extend_from_slice(s.as_bytes());
                if was_cut {
                    out.extend_from_slice(CUT.as_bytes());
                }
            }
            Value::Quoted(s) if cut => {
                let (s, was_cut) = prefix(s, cut_at(name), debug_len);
                quoted(out, s);
                mark(out, was_cut);
            }
            Value::Word(s) => out.extend_from_slice(s.as_bytes()),
            Value::Quoted(s) => quoted(out, s),
            Value::Number(n) => number(out, n),
            Value::Ip(_) | Value::Socket(_) => address(out, &value),
            Value::Millis(d) => opt_millis(out, d),
            Value::Time => timestamp(out, now),
        }
    }
    out.push(b'\n');
}

thread_local! {
    /// The last second [`timestamp`] wrote, and its `2026-11-22T19:02:34.` text: the
    /// calendar arithmetic runs once a second, not once a line.
    static SECOND: Cell<(u64, [u8; SECOND_TEXT])> = const { Cell::new((u64::MAX, [0; SECOND_TEXT])) };
}

/// The length of `2026-11-22T19:02:34.`.
const SECOND_TEXT: usize = 20;

/// `2026-11-22T19:02:34.933300Z` (UTC, microseconds), as the other log lines.
pub(super) fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, text) = SECOND.get();
    if cached == secs {
        out.extend_from_slice(&text);
    } else {
        let start = out.len();
        date_time(out, secs);
        // Past the year 9999 the text is longer and not cached.
        if let Ok(text) = <[u8; SECOND_TEXT]>::try_from(&out[start..]) {
            SECOND.set((secs, text));
        }
    }
    padded(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// `2026-11-22T19:02:34.` for `secs` since the epoch.
fn date_time(out: &mut Vec<u8>, secs: u64) {
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    padded(out, year.max(0) as u64, 4);
    out.push(b'-');
    padded(out, month as u64, 2);
    out.push(b'-');
    padded(out, day as u64, 2);
    out.push(b'T');
    padded(out, day_secs / 3600, 2);
    out.push(b':');
    padded(out, day_secs / 60 % 60, 2);
    out.push(b':');
    padded(out, day_secs % 60, 2);
    out.push(b'.');
}

/// A duration in milliseconds with three decimals, or `-`.
pub(super) fn opt_millis(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => millis(out, d),
        None => out.push(b'-'),
    }
}

/// A duration in milliseconds with three decimals.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    number(out, micros / 1000);
    out.push(b'.');
    padded(out, micros % 1000, 3);
}

pub(super) fn number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` in at least `width` digits (zeros in front).
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = 1;
    let mut rest = n / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    number(out, n);
}

/// An address field: IPv4 written digit by digit (most lines), IPv6 through `Display`.
pub(super) fn address(out: &mut Vec<u8>, value: &Value<'_>) {
    match *value {
        Value::Ip(Some(ip)) => out.extend_from_slice(IpText::new(ip).as_bytes()),
        Value::Socket(Some(SocketAddr::V4(a))) => {
            out.extend_from_slice(IpText::new(IpAddr::V4(*a.ip())).as_bytes());
            out.push(b':');
            number(out, u64::from(a.port()));
        }
        Value::Socket(Some(a)) => {
            let _ = write!(out, "{a}");
        }
        _ => out.push(b'-'),
    }
}

/// A JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !s
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\')
    {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The longest prefix of `s` (whole characters) that `len` measures at most `max` bytes,
/// and whether it is shorter than `s`.
pub(super) fn prefix(s: &str, max: usize, len: fn(&str) -> usize) -> (&str, bool) {
    if len(s) <= max {
        return (s, false);
    }
    let mut used = 0;
    for (at, c) in s.char_indices() {
        used += len(&s[at..at + c.len_utf8()]);
        if used > max {
            return (&s[..at], true);
        }
    }
    (s, false)
}

/// Puts [`CUT`] inside the closing quote just written, when the value was cut.
pub(super) fn mark(out: &mut Vec<u8>, was_cut: bool) {
    if was_cut && out.pop() == Some(b'"') {
        out.extend_from_slice(CUT.as_bytes());
        out.push(b'"');
    }
}

/// The bytes [`json_str`] writes for `s`, quotes excluded.
fn json_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' => 2,
            0..0x20 | 0x7f => 6,
            _ => 1,
        })
        .sum()
}

/// At least the bytes [`quoted`] writes for `s`, quotes excluded (`Debug`'s escapes; a
/// `'`, which `Debug` leaves alone in a string, is counted as escaped).
fn debug_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c.escape_debug().len() {
            // Itself: its UTF-8 bytes. An escape is ASCII, one byte a character.
            1 => c.len_utf8(),
            n => n,
        })
        .sum()
}

/// A string as Rust's `Debug` writes it (the text format's quoted fields).
fn quoted(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            listener: "https",
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET",
            host: "a\"b.test",
            path: "/x\\y",
            status: 200,
            upstream: None,
            duration: Duration::from_micros(1_234_567),
            bytes: 19,
            request_id: "abc",
            protocol: "HTTP/1.1",
            headers: None,
            bytes_received: 0,
            upstream_time: None,
            route: None,
            tls_version: None,
            trace_id: None,
        }
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::new(1_795_374_154, 933_300_123);
        timestamp(&mut out, t);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-22T19:02:34.933300Z"
        );
        let mut out = Vec::new();
        timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn addresses_and_padding_are_written_as_display_does() {
        for text in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            address(&mut out, &Value::Ip(Some(ip)));
            assert_eq!(out, ip.to_string().as_bytes());
        }
        for text in ["10.1.2.3:8080", "127.0.0.1:0", "[2001:db8::1]:443"] {
            let a: SocketAddr = text.parse().unwrap();
            let mut out = Vec::new();
            address(&mut out, &Value::Socket(Some(a)));
            assert_eq!(out, text.as_bytes());
        }
        let mut out = Vec::new();
        address(&mut out, &Value::Socket(None));
        assert_eq!(out, b"-");
        let mut out = Vec::new();
        for (n, width) in [(7, 3), (0, 2), (123_456, 6), (1_234, 2)] {
            padded(&mut out, n, width);
            out.push(b' ');
        }
        assert_eq!(out, b"007 00 123456 1234 ");
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        let t = UNIX_EPOCH + Duration::new(1_795_374_154, 5_000);
        for (at, text) in [
            (t, "2026-11-22T19:02:34.000005Z"),
            (t + Duration::from_micros(10), "2026-11-22T19:02:34.000015Z"),
            (t + Duration::from_secs(1), "2026-11-22T19:02:35.000005Z"),
            (t, "2026-11-22T19:02:34.000005Z"),
        ] {
            let mut out = Vec::new();
            timestamp(&mut out, at);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let mut out = Vec::new();
        json(&mut out, &line(), &[], UNIX_EPOCH, false);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["target"], "access");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["host"], "a\"b.test");
        assert_eq!(v["path"], "/x\\y");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "-");
        assert_eq!(v["duration_ms"], "1234.567");
        assert_eq!(v["bytes"], 19);
        assert!(out.ends_with(b"}\n"));
    }

    /// A line with every field as long as it can get, escapes everywhere.
    fn worst<'a>(
        path: &'a str,
        host: &'a str,
        name: &'a str,
        headers: &'a HeaderMap,
    ) -> AccessLine<'a> {
        AccessLine {
            listener: name,
            client: Some(
                "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                    .parse()
                    .unwrap(),
            ),
            method: name,
            host,
            path,
            status: 599,
            upstream: Some(
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                    .parse()
                    .unwrap(),
            ),
            duration: Duration::MAX,
            bytes: usize::MAX,
            // The longest id a client may send, all of it escaped in JSON.
            request_id: "\"\\".repeat(64).leak(),
            protocol: name,
            headers: Some(headers),
            bytes_received: u64::MAX,
            upstream_time: Some(Duration::MAX),
            route: Some(name),
            tls_version: Some(name),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
    }

    /// Every field that is not a standard one (the time is the line's own).
    const EXTRA: [Var; 8] = [
        Var::Protocol,
        Var::BytesReceived,
        Var::Referer,
        Var::UserAgent,
        Var::UpstreamMs,
        Var::Route,
        Var::TlsVersion,
        Var::TraceId,
    ];

    /// The line `log` would buffer for `l`, with `extra` fields.
    fn logged(l: &AccessLine<'_>, format: LogFormat, extra: &[Var]) -> Vec<u8> {
        let write = match format {
            LogFormat::Json => json,
            LogFormat::Text => plain,
        };
        let mut out = Vec::new();
        write(&mut out, l, extra, UNIX_EPOCH, false);
        if out.len() > CHUNK {
            out.clear();
            write(&mut out, l, extra, UNIX_EPOCH, true);
        }
        out
    }

    #[test]
    fn no_line_is_longer_than_one_write() {
        let quotes = "\"".repeat(8192);
        let controls = "\u{1}".repeat(32 * 1024);
        let wide = "é".repeat(4096);
        for (path, host, name) in [
            (quotes.as_str(), controls.as_str(), controls.as_str()),
            (controls.as_str(), quotes.as_str(), wide.as_str()),
            (wide.as_str(), wide.as_str(), quotes.as_str()),
        ] {
            let mut headers = HeaderMap::new();
            for field in ["referer", "user-agent"] {
                let value = http::HeaderValue::from_bytes(host.as_bytes())
                    .unwrap_or_else(|_| http::HeaderValue::try_from("\"".repeat(8192)).unwrap());
                headers.insert(field, value);
            }
            let l = worst(path, host, name, &headers);
            for (format, extra) in [
                (LogFormat::Json, &[][..]),
                (LogFormat::Text, &[][..]),
                (LogFormat::Json, &EXTRA[..]),
                (LogFormat::Text, &EXTRA[..]),
            ] {
                let out = logged(&l, format, extra);
                assert!(out.len() <= CHUNK, "{format:?}: {} bytes", out.len());
                assert!(out.ends_with(b"\n"), "{format:?}");
                let text = String::from_utf8(out).unwrap();
                if format == LogFormat::Json {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let path = v["path"].as_str().unwrap();
                    assert!(path.ends_with(CUT) && l.path.starts_with(&path[..path.len() - 3]));
                    assert_eq!(v["request_id"], l.request_id, "never cut");
                } else {
                    assert!(text.contains("…\" status=599"), "{text}");
                }
                if !extra.is_empty() {
                    assert!(text.contains("user_agent"), "{text}");
                }
            }
        }
    }

    #[test]
    fn a_long_path_is_cut_only_when_the_line_would_be_too_long() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let fits = "/a".repeat(1800);
            let out = logged(
                &AccessLine {
                    path: &fits,
                    ..line()
                },
                format,
                &[],
            );
            assert!(out.len() <= CHUNK, "{format:?}");
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(&fits) && !text.contains(CUT), "{format:?}");
            let long = "/a".repeat(3000);
            let out = logged(
                &AccessLine {
                    path: &long,
                    ..line()
                },
                format,
                &[],
            );
            let text = String::from_utf8(out).unwrap();
            assert!(
                !text.contains(&long)
                    && text.contains(&format!("{}{CUT}", &long[..cut_at("path")])),
                "{format:?}"
            );
        }
    }

    #[test]
    fn prefixes_end_on_whole_characters() {
        assert_eq!(prefix("abc", 3, str::len), ("abc", false));
        assert_eq!(prefix("abcd", 3, str::len), ("abc", true));
        assert_eq!(prefix("éé", 3, str::len), ("é", true));
        assert_eq!(prefix("a\"b", 2, json_len), ("a", true));
        assert_eq!(prefix("a\u{1}", 6, json_len), ("a", true));
        assert_eq!(prefix("a\u{1}", 7, json_len), ("a\u{1}", false));
        assert_eq!(
            debug_len("a\"\n\u{1}"),
            format!("{:?}", "a\"\n\u{1}").len() - 2
        );
    }

    #[test]
    fn text_lines_quote_like_debug() {
        let mut out = Vec::new();
        plain(&mut out, &line(), &[], UNIX_EPOCH, false);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000Z  INFO access: listener=https client=192.0.2.7 \
             method=GET host=\"a\\\"b.test\" path=\"/x\\\\y\" status=200 upstream=- \
             duration_ms=1234.567 bytes=19 request_id=\"abc\"\n"
        );
    }
}
