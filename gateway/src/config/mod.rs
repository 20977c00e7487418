//! Configuration: parse `gateway.toml` (`file.rs`) and validate it into the model
//! (`model.rs`); `reload` reads the file.

mod access_log;
mod edge;
mod error;
mod file;
mod listener;
mod model;
mod rate_limit;
mod route;
mod traces;
mod upstream;
mod upstream_tls;
mod validate;

use std::path::Path;

pub use error::{ConfigError, DurationProblem, Location};
pub use model::*;
pub use route::RouteError;

/// Where the config is read from when neither `--config` nor `$GATEWAY_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/gateway/config/gateway.toml";

/// Parses and validates `source` as if read from `path` (relative paths in it are
/// relative to `path`'s directory).
///
/// Returns every validation error found, not just the first; a parse error stops at once.
pub fn from_str(path: &Path, source: &str) -> Result<Config, Vec<ConfigError>> {
    validate::validate(path, source, parse(path, source)?)
}

fn parse(path: &Path, source: &str) -> Result<file::FileConfig, Vec<ConfigError>> {
    toml::from_str(source).map_err(|e| {
        vec![ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        }]
    })
}

#[cfg(test)]
mod tests;
