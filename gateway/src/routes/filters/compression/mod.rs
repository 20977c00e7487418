//! Response compression (nginx's `gzip`, `brotli` and `zstd` modules; Envoy's
//! compressor filter): a coding negotiated from the request's `Accept-Encoding`, the
//! response checked for eligibility, its head edited, and its body streamed through
//! an [`Encoder`].

mod encoder;
mod negotiate;

pub use encoder::{EncodeError, Encoder};
pub use negotiate::negotiate;

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// A content coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Zstd = 0,
    Brotli = 1,
    Gzip = 2,
}

impl Algorithm {
    /// Every algorithm, each at its own index.
    pub const ALL: [Self; 3] = [Self::Zstd, Self::Brotli, Self::Gzip];

    /// Its name in `Accept-Encoding`, `Content-Encoding` and `[compression] algorithms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Brotli => "br",
            Self::Gzip => "gzip",
        }
    }

    /// The algorithm called `name` in the config.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether `coding` (from `Accept-Encoding`) names this algorithm.
    fn names(self, coding: &[u8]) -> bool {
        coding.eq_ignore_ascii_case(self.as_str().as_bytes())
            || (self == Self::Gzip && coding.eq_ignore_ascii_case(b"x-gzip"))
    }
}

/// The validated `[compression]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// Whether routes compress unless they say otherwise (`compression = false`).
    pub enabled: bool,
    /// Preference order when the client accepts several equally; never empty.
    pub algorithms: Vec<Algorithm>,
    /// Responses with a `Content-Length` below this are sent as they are.
    pub min_size: u64,
    /// Media types compressed (`text/*` covers every `text/` subtype).
    pub types: Vec<MediaRange>,
    pub levels: Levels,
}

/// Compression level per algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// 1 (fastest) to 9.
    pub gzip: u32,
    /// 0 (fastest) to 11.
    pub br: u32,
    /// 1 (fastest) to 19.
    pub zstd: i32,
}

pub const DEFAULT_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip];
pub const DEFAULT_MIN_SIZE: u64 = 1024;
pub const DEFAULT_TYPES: [&str; 5] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "image/svg+xml",
];
/// Measured on a 64 KiB JSON body (see the commit that chose them): zlib-ng's gzip
/// level 2 is smaller than zlib's level 1 (nginx's `gzip_comp_level` default) at half
/// its CPU (zlib-ng's level 1 is a quicker strategy with 30% larger output); br 2
/// halves br 1's output for 10% more CPU; zstd 1 is as small as 2 and 3.
pub const DEFAULT_LEVELS: Levels = Levels {
    gzip: 2,
    br: 2,
    zstd: 1,
};
/// The levels each algorithm takes.
pub const GZIP_LEVELS: std::ops::RangeInclusive<u32> = 1..=9;
pub const BR_LEVELS: std::ops::RangeInclusive<u32> = 0..=11;
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: true,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            min_size: DEFAULT_MIN_SIZE,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| MediaRange::parse(t).ok())
                .collect(),
            levels: DEFAULT_LEVELS,
        }
    }
}

/// One `types` entry (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRange {
    /// `*/*`
    Any,
    /// `text/*`: the type, with the slash (`text/`).
    Type(String),
    /// `application/json`
    Exact(String),
}

impl MediaRange {
    /// Parses `type/subtype`, `type/*` or `*/*` (no parameters).
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let lower = value.to_ascii_lowercase();
        let Some((ty, sub)) = lower.split_once('/') else {
            return Err("must be a media type such as \"application/json\" or \"text/*\"");
        };
        if !super::is_token(ty) || !super::is_token(sub) {
            return Err("must be type/subtype with token characters, without parameters");
        }
        match (ty, sub) {
            ("*", "*") => Ok(Self::Any),
            ("*", _) => Err("a wildcard type needs a wildcard subtype (\"*/*\")"),
            (_, "*") => Ok(Self::Type(format!("{ty}/"))),
            _ => Ok(Self::Exact(lower)),
        }
    }

    /// Whether the media type `ty` (`type/subtype`, any case) is covered.
    fn covers(&self, ty: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::Type(prefix) => {
                ty.len() > prefix.len()
                    && ty[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            Self::Exact(t) => ty.eq_ignore_ascii_case(t.as_bytes()),
        }
    }
}

impl Compression {
    /// The coding for the response to this request: `None` for `HEAD`, for a request
    /// that says `Cache-Control: no-transform`, or when nothing it accepts is offered.
    pub fn request(&self, method: &Method, headers: &HeaderMap) -> Option<Algorithm> {
        // Cheapest first: most requests that accept nothing say nothing.
        let fields = headers.get_all(ACCEPT_ENCODING);
        if method == Method::HEAD || fields.iter().next().is_none() || no_transform(headers) {
            return None;
        }
        negotiate(fields.iter().map(HeaderValue::as_bytes), &self.algorithms)
    }

    /// Edits the head of a response to a request that negotiated `coding`, and
    /// returns the encoder its body goes through when it is to be compressed.
    ///
    /// An eligible response (a listed type, at least `min_size` or of unknown length,
    /// not already encoded, not partial, not `no-transform`, and a status with a body)
    /// gets `Vary: Accept-Encoding` whether or not it is compressed; a compressed one
    /// gets `Content-Encoding`, loses `Content-Length` and `Accept-Ranges`, and a strong
    /// `ETag` turns weak.
    pub fn response(
        &self,
        coding: Option<Algorithm>,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Option<Encoder> {
        if !self.eligible(status, headers) {
            return None;
        }
        super::vary(headers, "accept-encoding");
        let coding = coding?;
        let encoder = Encoder::new(coding, &self.levels).ok()?;
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
        headers.remove(CONTENT_LENGTH);
        headers.remove(ACCEPT_RANGES);
        if let Some(weak) = headers.get(ETAG).and_then(weaken) {
            headers.insert(ETAG, weak);
        }
        Some(encoder)
    }

    fn eligible(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let code = status.as_u16();
        if code < 200 || matches!(code, 204 | 206 | 304) {
            return false;
        }
        // The length first: small responses (most API answers) end here.
        let long_enough = match headers.get(CONTENT_LENGTH) {
            None => true,
            Some(len) => digits(len.as_bytes()).is_some_and(|n| n >= self.min_size),
        };
        if !long_enough {
            return false;
        }
        let Some(ty) = headers.get(CONTENT_TYPE) else {
            return false;
        };
        let ty = ty.as_bytes();
        let ty = ty[..ty.iter().position(|&b| b == b';').unwrap_or(ty.len())].trim_ascii();
        if !self.types.iter().any(|r| r.covers(ty)) {
            return false;
        }
        let encoded = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
        !(encoded || headers.contains_key(CONTENT_RANGE) || no_transform(headers))
    }
}

/// A `Content-Length` value as a number (`None`: not all digits, empty or too large).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether `Cache-Control` has `no-transform`.
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
    })
}

/// A strong entity tag made weak (`"x"` → `W/"x"`); `None` when it is weak already or
/// not an entity tag.
fn weaken(etag: &HeaderValue) -> Option<HeaderValue> {
    let tag = etag.as_bytes();
    if !tag.starts_with(b"\"") {
        return None;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag);
    HeaderValue::from_bytes(&weak).ok()
}

#[cfg(test)]
mod tests;
