//! Issue 18 is delivered in steps: every route field is parsed and validated, the
//! matches (hosts, path, method, headers, query) and weighted backends are applied by
//! the request path, the filters not yet. Until they are, a config that uses a field
//! the request path does not apply is refused, naming the field, so that nothing
//! configured is silently ignored. (Removed when the request path applies
//! them; tests of the validation use `from_str_ungated`.)

use std::path::Path;

use toml::Spanned;

use super::file::RouteFile;
use super::RouteError;
use crate::config::error::{ConfigError, Location};
use crate::config::file::FileConfig;

/// An error for each route field (and `[compression]`) the request path does not apply.
pub(in crate::config) fn unserved(file: &Path, source: &str, raw: &FileConfig) -> Vec<ConfigError> {
    let mut found: Vec<(&'static str, std::ops::Range<usize>)> = Vec::new();
    if let Some(section) = &raw.compression {
        found.push(("[compression]", section.span()));
    }
    for r in &raw.routes {
        found.extend(fields(r.get_ref()));
    }
    found
        .into_iter()
        .map(|(field, span)| ConfigError::Route {
            at: Location::from_span(file, source, span),
            source: RouteError::NotServedYet { field },
        })
        .collect()
}

fn fields(r: &RouteFile) -> Vec<(&'static str, std::ops::Range<usize>)> {
    fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
        v.as_ref().map(Spanned::span)
    }
    [
        ("request_headers", span(&r.request_headers)),
        ("response_headers", span(&r.response_headers)),
        ("rewrite", span(&r.rewrite)),
        ("redirect", span(&r.redirect)),
        ("compression", span(&r.compression)),
        ("cors", span(&r.cors)),
    ]
    .into_iter()
    .filter_map(|(field, span)| span.map(|s| (field, s)))
    .collect()
}
