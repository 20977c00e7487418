//! Configuration errors, each located in the file it came from.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A position in a config file, printed as `file:line:column` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Turns a byte span of `source` into a line and column.
    pub(crate) fn from_span(file: &Path, source: &str, span: Range<usize>) -> Self {
        let start = span.start.min(source.len());
        let before = source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Self {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a duration setting is refused.
#[derive(Debug)]
pub enum DurationProblem {
    /// Not a duration at all.
    Unparsable(humantime::DurationError),
    /// Below the setting's smallest value.
    TooShort { min: Duration },
    /// Above the longest any setting takes.
    TooLong { max: Duration },
}

impl fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unparsable(e) => write!(f, "{e} (write it like \"10s\", \"500ms\" or \"1m\")"),
            Self::TooShort { min } => {
                write!(f, "must be at least {}", humantime::format_duration(*min))
            }
            Self::TooLong { max } => {
                write!(f, "must be at most {}", humantime::format_duration(*max))
            }
        }
    }
}

impl ConfigError {
    /// Where in the file the error is, when it points at a value.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Read { .. } | Self::Parse { .. } => None,
            Self::DuplicateListenerName { at, .. }
            | Self::DuplicateListenAddress { at, .. }
            | Self::BadListenAddress { at, .. }
            | Self::RedirectOnTls { at }
            | Self::RedirectPortUnused { at }
            | Self::BadRedirectPort { at }
            | Self::NoCerts { at }
            | Self::EmptyServers { at, .. }
            | Self::BadServer { at, .. }
            | Self::UnknownUpstream { at, .. }
            | Self::BadHost { at, .. }
            | Self::BadPathPrefix { at, .. }
            | Self::UnmatchablePathPrefix { at, .. }
            | Self::DuplicateRoute { at, .. }
            | Self::BadThreads { at }
            | Self::BadDuration { at, .. }
            | Self::UpstreamSource { at, .. }
            | Self::HashKeyMissing { at }
            | Self::HashKeyUnused { at }
            | Self::BadHashKey { at, .. }
            | Self::BadValue { at, .. }
            | Self::BadNameserver { at, .. }
            | Self::BadUpstreamName { at, .. }
            | Self::BadSize { at, .. }
            | Self::BadNetwork { at, .. }
            | Self::BadRedisUrl { at, .. }
            | Self::UnknownLogVariable { at, .. }
            | Self::Route { at, .. } => Some(at),
        }
    }
}

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid config", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{at}: listener name {name:?} is already used at line {first_line}")]
    DuplicateListenerName {
        at: Location,
        name: String,
        first_line: usize,
    },
    #[error("{at}: address {addr} is already used by listener {other:?}")]
    DuplicateListenAddress {
        at: Location,
        addr: SocketAddr,
        other: String,
    },
    #[error("{at}: {value:?} is not a listen address: expected IP:PORT such as \"0.0.0.0:8443\"")]
    BadListenAddress { at: Location, value: String },
    #[error("{at}: redirect_to_https is for plain HTTP listeners; this one has tls")]
    RedirectOnTls { at: Location },
    #[error("{at}: redirect_port is set but redirect_to_https is not true")]
    RedirectPortUnused { at: Location },
    #[error("{at}: redirect_port must be between 1 and 65535")]
    BadRedirectPort { at: Location },
    #[error("{at}: tls.certs is empty: list at least one directory holding tls.crt and tls.key")]
    NoCerts { at: Location },
    #[error("{at}: upstream {upstream:?} has no servers")]
    EmptyServers { at: Location, upstream: String },
    #[error("{at}: {value:?} is not a server address: {reason}")]
    BadServer {
        at: Location,
        value: String,
        reason: &'static str,
    },
    #[error("{at}: route names upstream {name:?}, which is not defined (defined: {defined})")]
    UnknownUpstream {
        at: Location,
        name: String,
        defined: String,
    },
    #[error("{at}: {value:?} is not a host: {reason}")]
    BadHost {
        at: Location,
        value: String,
        reason: &'static str,
    },
    #[error("{at}: path_prefix {value:?} must start with '/'")]
    BadPathPrefix { at: Location, value: String },
    #[error("{at}: path_prefix {value:?} can never match: {reason}")]
    UnmatchablePathPrefix {
        at: Location,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{at}: a route for the same host, path and conditions is already defined at line {first_line}"
    )]
    DuplicateRoute { at: Location, first_line: usize },
    #[error("{at}: threads must be at least 1")]
    BadThreads { at: Location },
    #[error("{at}: {value:?} is not a duration: {problem}")]
    BadDuration {
        at: Location,
        value: String,
        problem: DurationProblem,
    },
    #[error("{at}: upstream {upstream:?} needs exactly one of `servers` and `kubernetes`")]
    UpstreamSource { at: Location, upstream: String },
    #[error("{at}: balance = \"consistent_hash\" needs hash_key (\"header:NAME\", \"cookie:NAME\", \"client_ip\" or \"path\")")]
    HashKeyMissing { at: Location },
    #[error("{at}: hash_key is only used with balance = \"consistent_hash\"")]
    HashKeyUnused { at: Location },
    #[error("{at}: {value:?} is not a hash key: expected \"header:NAME\", \"cookie:NAME\", \"client_ip\" or \"path\"")]
    BadHashKey { at: Location, value: String },
    #[error("{at}: access_log: unknown variable {name:?} (known: {known})")]
    UnknownLogVariable {
        at: Location,
        name: String,
        known: &'static str,
    },
    #[error("{at}: {field} {reason}")]
    BadValue {
        at: Location,
        field: &'static str,
        reason: &'static str,
    },
    #[error(
        "{at}: {value:?} is not a nameserver address: expected IP:PORT such as \"10.96.0.10:53\""
    )]
    BadNameserver { at: Location, value: String },
    #[error("{at}: upstream name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.'")]
    BadUpstreamName { at: Location, name: String },
    #[error("{at}: {value:?} is not a size: {reason}")]
    BadSize {
        at: Location,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{at}: {value:?} is not a Redis URL (redis://[user:password@]host:port[/db]): {reason}"
    )]
    BadRedisUrl {
        at: Location,
        value: String,
        reason: String,
    },
    #[error("{at}: {field} entry {value:?} {reason}")]
    BadNetwork {
        at: Location,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A problem with a route's matches, destination or filters, or `[compression]`.
    #[error("{at}")]
    Route {
        at: Location,
        #[source]
        source: super::route::RouteError,
    },
}
