//! Issue 18 is delivered in steps: every route field is parsed and validated, and all
//! but compression are applied by the request path. Until it is, a config that sets
//! `[compression]` or a route's `compression` is refused, naming the field, so that
//! nothing configured is silently ignored. (Removed when the request path applies
//! them; tests of the validation use `from_str_ungated`.)

use std::path::Path;

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
    r.compression
        .as_ref()
        .map(|v| ("compression", v.span()))
        .into_iter()
        .collect()
}
