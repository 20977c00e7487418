//! A real Prometheus server (Debian's `prometheus` package) on a free port of 127.0.0.1,
//! its HTTP API, and `promtool`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::Outcome;

/// How long Prometheus gets to answer `/-/ready`.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `prometheus`; killed when dropped (its log is printed if the test panics).
pub struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config` (prometheus.yml text) into a temporary directory, starts
    /// `prometheus` on it with its storage there and the web API on a free port, and
    /// returns once `/-/ready` answers 200. Panics if the binary is missing or it exits.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let port = crate::gateway::reserve_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create prometheus log"))
            .spawn()
            .expect("run prometheus (Debian package `prometheus`)");
        let mut prometheus = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            if prometheus.get("/-/ready").0 == 200 {
                return prometheus;
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "prometheus not ready:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What Prometheus wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path_and_query` from the web API (HTTP/1.0: one read to the end, no chunks):
    /// the status (0 when the connection failed) and the body.
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(API_TIMEOUT));
        let req = format!("GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// GET an API endpoint (`/api/v1/...`) with `params` (URL-encoded here): its `data`,
    /// or the API's error (`errorType: error`) as text.
    pub fn api(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        let (status, body) = self.get(&format!("{endpoint}?{}", query.join("&")));
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("{endpoint} answered {status}, not JSON ({e}): {body}"))?;
        if json["status"] == "success" {
            Ok(json["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                json["errorType"].as_str().unwrap_or("?"),
                json["error"].as_str().unwrap_or(&body)
            ))
        }
    }

    /// The instant vector `expr` evaluates to now: one `{metric, value}` object per series
    /// (a scalar comes back as one sample without labels).
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") | Some("string") => Ok(vec![serde_json::json!({
                "metric": {},
                "value": data["result"],
            })]),
            other => Err(format!(
                "{expr}: result type {other:?}, not an instant vector"
            )),
        }
    }

    /// The values of `label` on the series `selector` selects (what Grafana's
    /// `label_values(selector, label)` lists), sorted.
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let data = self.api(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector)],
        )?;
        let mut values: Vec<String> = data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        values.sort();
        Ok(values)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `promtool` (from Debian's `prometheus` package) with `args` in `dir`.
pub fn promtool(dir: &Path, args: &[&str]) -> Outcome {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool (Debian package `prometheus`)")
        .into()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The vector selectors in the PromQL expression `expr`, as written (`name{matchers}`,
/// without a range or offset), in order. Found by a small lexer: an identifier is a
/// selector unless it is a keyword, a function or aggregation (followed by `(`, `by` or
/// `without`), or a label name (inside braces, or in the list after `by`, `without`,
/// `on`, `ignoring`, `group_left`, `group_right`). Ranges and subqueries are skipped.
pub fn selectors(expr: &str) -> Vec<String> {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
    ];
    let tokens = lex(expr);
    let is = |i: usize, text: &str| tokens.get(i).is_some_and(|t| t.text == text);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let word = token.text.to_ascii_lowercase();
        if token.ident && GROUPING.contains(&word.as_str()) {
            // A label list follows (group_left/right may go without one).
            i = if is(i + 1, "(") {
                closing(&tokens, i + 1) + 1
            } else {
                i + 1
            };
        } else if token.ident
            && (KEYWORDS.contains(&word.as_str())
                || is(i + 1, "(")
                || tokens.get(i + 1).is_some_and(|t| {
                    ["by", "without"].contains(&t.text.to_ascii_lowercase().as_str())
                }))
        {
            i += 1;
        } else if token.ident || token.text == "{" {
            // A selector: a metric name, its matchers, or both.
            let end = if token.text == "{" {
                closing(&tokens, i)
            } else if is(i + 1, "{") {
                closing(&tokens, i + 1)
            } else {
                i
            };
            let last = tokens.get(end).map_or(expr.len(), |t| t.end);
            found.push(expr[token.start..last].to_owned());
            i = end + 1;
        } else if token.text == "[" {
            i = closing(&tokens, i) + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// One token of a PromQL expression: `text` is `expr[start..end]`.
struct Token<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    ident: bool,
}

/// Splits `expr` into identifiers, strings, numbers/durations and one-character
/// punctuation; whitespace and `#` comments are dropped.
fn lex(expr: &str) -> Vec<Token<'_>> {
    let bytes = expr.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let ident_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
        let ident = ident_start(b);
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if b == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if matches!(b, b'"' | b'\'' | b'`') {
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                i += if bytes[i] == b'\\' && b != b'`' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else if ident || b.is_ascii_digit() || b == b'.' {
            // Identifiers; numbers and durations ("0.99", "5m", "1e3") alike.
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':' | b'.'))
            {
                i += 1;
            }
        } else {
            // One byte of punctuation (multi-byte characters: the whole character).
            i += expr[i..].chars().next().map_or(1, char::len_utf8);
        }
        tokens.push(Token {
            text: &expr[start..i],
            start,
            end: i,
            ident,
        });
    }
    tokens
}

/// The index of the token closing the bracket at `open` (the last token if unclosed).
fn closing(tokens: &[Token<'_>], open: usize) -> usize {
    let (up, down) = match tokens[open].text {
        "(" => ("(", ")"),
        "[" => ("[", "]"),
        _ => ("{", "}"),
    };
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.text == up {
            depth += 1;
        } else if t.text == down {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    tokens.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::selectors;

    #[test]
    fn selectors_are_found_and_label_names_functions_keywords_are_not() {
        assert_eq!(
            selectors(r#"up{job="gateway"} == 0"#),
            [r#"up{job="gateway"}"#]
        );
        assert_eq!(selectors(r#"absent(up{job="gw"})"#), [r#"up{job="gw"}"#]);
        let ratio = r#"(sum by (job, route) (rate(req_total{code=~"5..", a="}"}[2m])) or vector(0))
            / sum without(le) (rate(req_total[2m] offset 5m)) > 0.05 and on (job) group_left (x) other"#;
        assert_eq!(
            selectors(ratio),
            [r#"req_total{code=~"5..", a="}"}"#, "req_total", "other"]
        );
        assert_eq!(
            selectors("histogram_quantile(0.99, sum(rate(h_bucket[5m:1m])) by (le)) - time()"),
            ["h_bucket"]
        );
        assert_eq!(
            selectors(r#"min by (cert) (expiry{a="b"}) - time() < 14 * 24 * 3600"#),
            [r#"expiry{a="b"}"#]
        );
        assert_eq!(
            selectors(r#"{__name__="up"} unless foo:bar"#),
            [r#"{__name__="up"}"#, "foo:bar"]
        );
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_characters() {
        assert_eq!(
            super::url_encode(r#"rate(x{a=~"5.."}[1m]) > 0"#),
            "rate%28x%7Ba%3D~%225..%22%7D%5B1m%5D%29%20%3E%200"
        );
    }
}
