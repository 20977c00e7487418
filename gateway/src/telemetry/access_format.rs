//! The access line's shape as `[access_log]` sets it: the standard fields in JSON or
//! text (the process's log format unless `format` says), with extra `fields` after
//! them, or an nginx `log_format`-style template of `$variables`.

/// A value an access line can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Listener,
    Client,
    Time,
    Method,
    Host,
    Path,
    Protocol,
    Status,
    Bytes,
    BytesReceived,
    Referer,
    UserAgent,
    DurationMs,
    Upstream,
    UpstreamMs,
    RequestId,
    Route,
    TlsVersion,
    /// The request's OpenTelemetry trace id (with `[tracing]`).
    TraceId,
}

/// Every variable, by name.
const VARS: [(&str, Var); 19] = [
    ("listener", Var::Listener),
    ("client", Var::Client),
    ("time", Var::Time),
    ("method", Var::Method),
    ("host", Var::Host),
    ("path", Var::Path),
    ("protocol", Var::Protocol),
    ("status", Var::Status),
    ("bytes", Var::Bytes),
    ("bytes_received", Var::BytesReceived),
    ("referer", Var::Referer),
    ("user_agent", Var::UserAgent),
    ("duration_ms", Var::DurationMs),
    ("upstream", Var::Upstream),
    ("upstream_ms", Var::UpstreamMs),
    ("request_id", Var::RequestId),
    ("route", Var::Route),
    ("tls_version", Var::TlsVersion),
    ("trace_id", Var::TraceId),
];

/// The names, for error messages.
pub const VAR_NAMES: &str = "listener, client, time, method, host, path, protocol, status, bytes, bytes_received, referer, user_agent, duration_ms, upstream, upstream_ms, request_id, route, tls_version, trace_id";

/// The fields of every JSON or text line, in order (`time` is the line's timestamp).
pub const STANDARD: [Var; 10] = [
    Var::Listener,
    Var::Client,
    Var::Method,
    Var::Host,
    Var::Path,
    Var::Status,
    Var::Upstream,
    Var::DurationMs,
    Var::Bytes,
    Var::RequestId,
];

impl Var {
    pub fn from_name(name: &str) -> Option<Self> {
        VARS.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    /// Its name: `VARS`, by the enum's order (checked by the tests).
    pub fn name(self) -> &'static str {
        VARS[self as usize].0
    }
}

/// A template's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Box<str>),
    Var(Var),
}

/// How lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The process's log format (`GATEWAY_LOG_FORMAT`).
    Default,
    Json,
    Text,
    Template(Box<[Piece]>),
}

/// `[access_log]`, validated (the default: the standard fields in the process's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFormat {
    pub shape: Shape,
    /// Fields after the standard ones (JSON and text only).
    pub fields: Box<[Var]>,
}

impl Default for AccessFormat {
    fn default() -> Self {
        Self {
            shape: Shape::Default,
            fields: Box::new([]),
        }
    }
}

impl AccessFormat {
    /// Whether any line needs `var` (beyond the standard fields).
    pub fn uses(&self, var: Var) -> bool {
        match &self.shape {
            Shape::Template(pieces) => pieces.contains(&Piece::Var(var)),
            _ => STANDARD.contains(&var) || self.fields.contains(&var),
        }
    }
}

/// What is wrong with a template, and where in it (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub name: String,
}

/// Reads a template: `$name` or `${name}` are variables; any other `$` is itself.
pub fn parse_template(text: &str) -> Result<Box<[Piece]>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let braced = bytes.get(i + 1) == Some(&b'{');
        let start = i + 1 + usize::from(braced);
        let end = start
            + bytes[start.min(bytes.len())..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
        if bytes[i] != b'$' || end == start {
            // Not a variable: copy the character (whole, for UTF-8).
            let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
            literal.push_str(&text[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        let name = &text[start..end];
        if braced && bytes.get(end) != Some(&b'}') {
            return Err(TemplateError {
                offset: i,
                name: text[i..end].to_owned(),
            });
        }
        let Some(var) = Var::from_name(name) else {
            return Err(TemplateError {
                offset: i,
                name: name.to_owned(),
            });
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
        }
        pieces.push(Piece::Var(var));
        i = end + usize::from(braced);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal.into()));
    }
    Ok(pieces.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_read_variables_plain_and_braced() {
        let pieces = parse_template("$client - [$time] \"${method}x $path\" $$ 5$ é").unwrap();
        let want = [
            Piece::Var(Var::Client),
            Piece::Text(" - [".into()),
            Piece::Var(Var::Time),
            Piece::Text("] \"".into()),
            Piece::Var(Var::Method),
            Piece::Text("x ".into()),
            Piece::Var(Var::Path),
            Piece::Text("\" $$ 5$ é".into()),
        ];
        assert_eq!(&*pieces, &want);
        for (name, var) in VARS {
            assert_eq!(Var::from_name(name), Some(var));
            assert_eq!(var.name(), name);
            assert!(VAR_NAMES.contains(name));
        }
    }

    #[test]
    fn unknown_variables_are_errors_at_their_offset() {
        let err = parse_template("ok $status $remote_addr").unwrap_err();
        assert_eq!(
            err,
            TemplateError {
                offset: 11,
                name: "remote_addr".into()
            }
        );
        let err = parse_template("${status").unwrap_err();
        assert_eq!(err.offset, 0);
    }
}
