//! Validation of a route's client-facing policy: body size, WebSocket, `allow`/`deny`,
//! `max_in_flight` and `rate_limit` (`auth` in `auth.rs`).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::file::{RateLimitFile, RouteFile};
use crate::config::edge::{access_list, bad_value, opt_size};
use crate::config::model::{AccessList, DEFAULT_MAX_BODY_SIZE};
use crate::config::validate::{duration, positive, Checker};
use crate::routes::filters::rate_limit::{RateKey, RateLimit};

/// A route's client-facing settings.
pub(super) struct RouteEdge {
    pub(super) max_body_size: u64,
    pub(super) websocket: bool,
    /// `None` when the route admits every client.
    pub(super) access: Option<Arc<AccessList>>,
    pub(super) max_in_flight: Option<u32>,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) auth: Option<crate::config::model::RouteAuth>,
}

/// A route's `max_body_size`, `websocket`, `allow`/`deny` and `max_in_flight`.
pub(super) fn route(
    c: &mut Checker<'_>,
    r: &RouteFile,
    upstreams: &[crate::config::model::Upstream],
) -> RouteEdge {
    let access = access_list(c, &r.allow, &r.deny);
    RouteEdge {
        max_body_size: opt_size(c, &r.max_body_size, (0, ""), DEFAULT_MAX_BODY_SIZE),
        websocket: r.websocket.unwrap_or(false),
        access: (!access.admits_all()).then(|| Arc::new(access)),
        max_in_flight: r
            .max_in_flight
            .is_some()
            .then(|| positive(c, &r.max_in_flight, "max_in_flight", 1)),
        rate_limit: r.rate_limit.as_ref().and_then(|rl| rate_limit(c, rl)),
        auth: r
            .auth
            .as_ref()
            .and_then(|a| super::auth::auth(c, a, upstreams)),
    }
}

/// A route's `rate_limit`; `per` defaults to one second, `burst` to 0, `key` to the
/// client address.
fn rate_limit(c: &mut Checker<'_>, rl: &Spanned<RateLimitFile>) -> Option<RateLimit> {
    let f = rl.get_ref();
    let per = f
        .per
        .as_ref()
        .and_then(|v| duration(c, v, Duration::from_millis(1)))
        .unwrap_or(Duration::from_secs(1));
    let key = match &f.key {
        None => Some(RateKey::ClientIp),
        Some(k) => match k.get_ref().as_str() {
            "client_ip" => Some(RateKey::ClientIp),
            "global" => Some(RateKey::Global),
            other => match other
                .strip_prefix("header:")
                .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            {
                Some(name) => Some(RateKey::Header(name)),
                None => {
                    bad_value(
                        c,
                        k,
                        "rate_limit.key",
                        "must be \"client_ip\", \"global\" or \"header:NAME\"",
                    );
                    None
                }
            },
        },
    };
    if f.requests.is_none() {
        bad_value(
            c,
            rl,
            "rate_limit",
            "needs requests = N (per `per`, default 1s)",
        );
        return None;
    }
    let zero = f.requests.as_ref().is_some_and(|r| *r.get_ref() == 0);
    let requests = positive(c, &f.requests, "rate_limit.requests", 1);
    if zero {
        return None;
    }
    Some(RateLimit {
        requests,
        per,
        burst: f.burst.as_ref().map_or(0, |b| *b.get_ref()),
        key: key?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::from_str;
    use crate::config::tests::errors;
    use crate::routes::filters::rate_limit::RateKey;

    const ROUTE: &str =
        "\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn rate_limits_validate() {
        let src = format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n{ROUTE}rate_limit = {{ requests = 100 }}\n\n[[route]]\npath_prefix = \"/b\"\nupstream = \"u\"\nrate_limit = {{ requests = 5, per = \"1m\", burst = 2, key = \"header:X-Api-Key\" }}\n"
        );
        let cfg = from_str(Path::new("/gw.toml"), &src).unwrap();
        let a = cfg.routes[0].rate_limit.as_ref().expect("a limit");
        assert_eq!(
            (a.requests, a.per, a.burst),
            (100, Duration::from_secs(1), 0)
        );
        assert_eq!(a.key, RateKey::ClientIp);
        let b = cfg.routes[1].rate_limit.as_ref().expect("b limit");
        assert_eq!(
            (b.requests, b.per, b.burst),
            (5, Duration::from_secs(60), 2)
        );
        assert_eq!(
            b.key,
            RateKey::Header(http::HeaderName::from_static("x-api-key"))
        );

        let errs = errors(&format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n{ROUTE}rate_limit = {{ burst = 5 }}\n\n[[route]]\npath_prefix = \"/b\"\nupstream = \"u\"\nrate_limit = {{ requests = 0, per = \"soon\", key = \"cookie:x\" }}\n"
        ));
        let expect = [
            ":10:14: rate_limit needs requests",
            ":15:36: \"soon\" is not a duration",
            ":15:50: rate_limit.key must be",
            ":15:27: rate_limit.requests must be at least 1",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for want in expect {
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "{want:?} not in {errs:#?}"
            );
        }
    }
}
