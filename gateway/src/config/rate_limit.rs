//! Validation of `[rate_limit]`: the Redis that shares the routes' limits across
//! replicas (`shared`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::validate::{duration, Checker};
use crate::ratelimit::{OnError, Shared, DEFAULT_TIMEOUT};

/// `[rate_limit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    pub(crate) shared: Option<Spanned<SharedFile>>,
}

/// `shared = { redis = "redis://redis:6379", timeout = "5ms", on_error = "local" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedFile {
    pub(crate) redis: Spanned<String>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) on_error: Option<Spanned<String>>,
}

/// The validated `[rate_limit] shared`, if set.
pub(super) fn rate_limit(c: &mut Checker<'_>, raw: &RateLimitFile) -> Option<Shared> {
    let shared = raw.shared.as_ref()?.get_ref();
    let url = shared.redis.get_ref();
    let url_ok = match redis::Client::open(url.as_str()) {
        Ok(_) => true,
        Err(error) => {
            let at = c.at(shared.redis.span());
            let (value, reason) = (url.clone(), error.to_string());
            c.errors
                .push(ConfigError::BadRedisUrl { at, value, reason });
            false
        }
    };
    let timeout = shared
        .timeout
        .as_ref()
        .and_then(|t| duration(c, t, Duration::from_millis(1)))
        .unwrap_or(DEFAULT_TIMEOUT);
    let on_error = match shared.on_error.as_ref().map(|o| (o, o.get_ref().as_str())) {
        None | Some((_, "local")) => OnError::Local,
        Some((_, "allow")) => OnError::Allow,
        Some((_, "deny")) => OnError::Deny,
        Some((o, _)) => {
            let at = c.at(o.span());
            let reason = "must be \"local\", \"allow\" or \"deny\"";
            let field = "rate_limit.shared.on_error";
            c.errors.push(ConfigError::BadValue { at, field, reason });
            OnError::Local
        }
    };
    url_ok.then(|| Shared {
        url: url.clone(),
        timeout,
        on_error,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::from_str;
    use crate::config::tests::errors;
    use crate::ratelimit::OnError;

    const REST: &str = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn shared_limits_take_a_redis_url() {
        let cfg = from_str(Path::new("/gw.toml"), REST).unwrap();
        assert_eq!(cfg.rate_limit, None);
        let src = format!("[rate_limit]\nshared = {{ redis = \"redis://redis:6379\" }}\n\n{REST}");
        let shared = from_str(Path::new("/gw.toml"), &src)
            .unwrap()
            .rate_limit
            .unwrap();
        assert_eq!(shared.url, "redis://redis:6379");
        assert_eq!(shared.timeout, Duration::from_millis(5));
        assert_eq!(shared.on_error, OnError::Local);
        let src = format!("[rate_limit]\nshared = {{ redis = \"redis://10.0.0.1/2\", timeout = \"20ms\", on_error = \"deny\" }}\n\n{REST}");
        let shared = from_str(Path::new("/gw.toml"), &src)
            .unwrap()
            .rate_limit
            .unwrap();
        assert_eq!(
            (shared.timeout, shared.on_error),
            (Duration::from_millis(20), OnError::Deny)
        );
    }

    #[test]
    fn bad_shared_settings_are_located() {
        let errs = errors(&format!(
            "[rate_limit]\nshared = {{ redis = \"http://redis:6379\", timeout = \"soon\", on_error = \"ignore\" }}\n\n{REST}"
        ));
        let expect = [
            ":2:20: \"http://redis:6379\" is not a Redis URL",
            ":2:51: \"soon\" is not a duration",
            ":2:70: rate_limit.shared.on_error must be",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(expect) {
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
