//! Validation of a route's `auth`: which scheme, and its settings. A forward auth
//! `url` becomes an upstream of its own (`auth:HOST:PORT`), pooled and balanced like any;
//! so does a JWKS URL (`jwks:HOST:PORT`, over TLS for `https://`).

use http::uri::Uri;
use http::HeaderName;
use toml::Spanned;

use super::file::{AuthFile, ForwardAuthFile, RouteFile};
use crate::config::edge::bad_value;
use crate::config::model::*;
use crate::config::validate::{opt_duration, Checker};

/// A route's `auth`: exactly one scheme.
pub(super) fn auth(
    c: &mut Checker<'_>,
    raw: &Spanned<AuthFile>,
    upstreams: &[Upstream],
) -> Option<RouteAuth> {
    let file = raw.get_ref();
    match (&file.basic, &file.forward, &file.jwt) {
        (Some(basic), None, None) => basic_auth(c, basic.get_ref()),
        (None, Some(forward), None) => forward_auth(c, forward, upstreams).map(RouteAuth::Forward),
        (None, None, Some(jwt)) => super::auth_jwt::jwt_auth(c, jwt.get_ref(), upstreams),
        _ => {
            let reason = "needs one scheme: basic = { users = \"FILE\" }, forward = { url = \"...\" } or jwt = { jwks = \"...\" }";
            bad_value(c, raw, "auth", reason);
            None
        }
    }
}

fn basic_auth(c: &mut Checker<'_>, basic: &super::file::BasicAuthFile) -> Option<RouteAuth> {
    let realm = match &basic.realm {
        Some(realm) => {
            let text = realm.get_ref();
            let quotable = !text.is_empty()
                && text.len() <= 128
                && text
                    .chars()
                    .all(|ch| (' '..='~').contains(&ch) && ch != '"' && ch != '\\');
            if !quotable {
                let reason =
                    "must be 1 to 128 printable ASCII characters without quotes or backslashes";
                bad_value(c, realm, "auth.basic.realm", reason);
                return None;
            }
            text.clone()
        }
        None => DEFAULT_REALM.to_owned(),
    };
    Some(RouteAuth::Basic {
        users: c.base_dir.join(basic.users.get_ref()),
        at: c.at(basic.users.span()),
        realm,
    })
}

fn forward_auth(
    c: &mut Checker<'_>,
    raw: &Spanned<ForwardAuthFile>,
    upstreams: &[Upstream],
) -> Option<ForwardAuth> {
    let f = raw.get_ref();
    let (name, path) = match (&f.url, &f.upstream) {
        (Some(url), None) => {
            let (authority, path) = parse_url(c, url)?;
            (implicit_name(&authority), path)
        }
        (None, Some(upstream)) => {
            let path = match &f.path {
                Some(p) if !p.get_ref().starts_with('/') => {
                    bad_value(c, p, "auth.forward.path", "must start with '/'");
                    return None;
                }
                Some(p) => p.get_ref().clone(),
                None => "/".to_owned(),
            };
            (upstream.get_ref().clone(), path)
        }
        _ => {
            let reason =
                "needs url = \"http://HOST:PORT/PATH\", or upstream = \"NAME\" (with path)";
            bad_value(c, raw, "auth.forward", reason);
            return None;
        }
    };
    let Some(upstream) = upstreams.iter().position(|u| u.name == name) else {
        let field = "auth.forward.upstream";
        let v = f.upstream.as_ref().or(f.url.as_ref())?;
        bad_value(c, v, field, "names no [upstream.NAME] of this file");
        return None;
    };
    let names = |c: &mut Checker<'_>, list: &Option<Vec<Spanned<String>>>, field: &'static str| {
        let mut out = Vec::new();
        for name in list.iter().flatten() {
            match HeaderName::try_from(name.get_ref().as_str()) {
                Ok(n) => out.push(n),
                Err(_) => bad_value(c, name, field, "is not a header name"),
            }
        }
        out
    };
    let request_headers = names(c, &f.request_headers, "auth.forward.request_headers");
    let response_headers = names(c, &f.response_headers, "auth.forward.response_headers");
    let signin = match &f.signin {
        Some(s) => {
            let text = s.get_ref();
            let absolute = text.starts_with("https://") || text.starts_with("http://");
            if !(absolute || text.starts_with('/'))
                || http::HeaderValue::try_from(text.as_str()).is_err()
            {
                bad_value(
                    c,
                    s,
                    "auth.forward.signin",
                    "must be an http(s) URL or a path",
                );
                return None;
            }
            Some(text.clone())
        }
        None => None,
    };
    Some(ForwardAuth {
        upstream,
        path,
        request_headers,
        response_headers,
        signin,
        timeout: opt_duration(c, &f.timeout, DEFAULT_AUTH_TIMEOUT),
    })
}

/// `http://HOST[:PORT]/PATH`: its `HOST:PORT` (port 80 by default) and path and query.
fn parse_url(c: &mut Checker<'_>, url: &Spanned<String>) -> Option<(String, String)> {
    match url_target(url.get_ref()) {
        None => {
            let reason = "must be a URL: http://HOST:PORT/PATH";
            bad_value(c, url, "auth.forward.url", reason);
            None
        }
        Some(t) if t.tls => {
            let reason = "must be http://: for TLS to the auth service, define an [upstream] with tls and use upstream = \"NAME\"";
            bad_value(c, url, "auth.forward.url", reason);
            None
        }
        Some(t) => Some((t.authority, t.path)),
    }
}

/// The implicit upstream of a forward auth URL's `HOST:PORT`.
fn implicit_name(authority: &str) -> String {
    format!("auth:{authority}")
}

/// The upstreams the routes' forward auth and JWKS URLs need (one per kind and
/// `HOST:PORT`), with the defaults of an `[upstream]` table; a JWKS URL's is over TLS
/// (the system's roots) for `https://`. Malformed URLs are reported by the routes.
pub(in crate::config) fn implicit_upstreams(
    c: &Checker<'_>,
    routes: &[Spanned<RouteFile>],
) -> Vec<Upstream> {
    let mut out: Vec<Upstream> = Vec::new();
    for route in routes {
        let Some(auth) = route.get_ref().auth.as_ref() else {
            continue;
        };
        let auth = auth.get_ref();
        let forward = auth.forward.as_ref().and_then(|f| f.get_ref().url.as_ref());
        let jwks = auth.jwt.as_ref().map(|j| &j.get_ref().jwks);
        let (url, tls_allowed) = match (forward, jwks) {
            (Some(url), _) => (url, false),
            (None, Some(url)) => (url, true),
            (None, None) => continue,
        };
        let Some(target) = url_target(url.get_ref()) else {
            continue;
        };
        if target.tls && !tls_allowed {
            continue;
        }
        let name = match tls_allowed {
            false => implicit_name(&target.authority),
            true => super::auth_jwt::implicit_name(&target),
        };
        if out.iter().any(|u| u.name == name) {
            continue;
        }
        let Ok(server) = super::super::upstream::parse_server(&target.authority) else {
            continue;
        };
        let tls = target.tls.then(|| UpstreamTls {
            ca: None,
            server_name: match target.host.parse::<std::net::IpAddr>() {
                Ok(_) => UpstreamServerName::BackendIp,
                Err(_) => UpstreamServerName::Name(target.host.clone()),
            },
            client_cert: None,
            insecure_skip_verify: false,
            at: c.at(url.span()),
        });
        out.push(Upstream {
            name,
            discovery: Discovery::Servers(vec![server]),
            balance: Balance::RoundRobin,
            health: None,
            passive: PassiveHealth {
                unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
                cooldown: DEFAULT_COOLDOWN,
            },
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                read: DEFAULT_READ_TIMEOUT,
                write: DEFAULT_WRITE_TIMEOUT,
                idle: DEFAULT_IDLE_TIMEOUT,
            },
            protocol: Protocol::Http1,
            tls,
            max_streams: DEFAULT_MAX_STREAMS,
        });
    }
    out
}

/// An `http(s)://HOST[:PORT]/PATH` URL's parts.
pub(super) struct UrlTarget {
    pub(super) tls: bool,
    pub(super) host: String,
    /// `HOST:PORT` (ports 80 and 443 by default; IPv6 hosts in brackets).
    pub(super) authority: String,
    pub(super) path: String,
}

pub(super) fn url_target(url: &str) -> Option<UrlTarget> {
    let uri = url.parse::<Uri>().ok()?;
    let tls = match uri.scheme_str()? {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let a = uri.authority()?;
    let port = a.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = a
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Some(UrlTarget {
        tls,
        authority: format!("{}:{port}", a.host()),
        host,
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::tests::errors;
    use crate::config::{from_str, JwksSource, RouteAuth, UpstreamServerName};

    const HEAD: &str = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn basic_auth_reads_its_file_path_and_realm() {
        let src = format!("{HEAD}auth = {{ basic = {{ users = \"users/auth\" }} }}\n");
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Basic { users, realm, at }) = &cfg.routes[0].auth else {
            panic!("basic auth");
        };
        assert_eq!(users, &PathBuf::from("/etc/gw/users/auth"));
        assert_eq!(realm, "restricted");
        assert_eq!((at.line, at.column), (10, 28));
    }

    #[test]
    fn a_forward_url_gets_an_upstream_of_its_own() {
        let src = format!(
            "{HEAD}auth = {{ forward = {{ url = \"http://oauth2-proxy:4180/oauth2/auth?x=1\", response_headers = [\"X-User\"] }} }}\n"
        );
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Forward(f)) = &cfg.routes[0].auth else {
            panic!("forward auth");
        };
        let upstream = &cfg.upstreams[f.upstream];
        assert_eq!(upstream.name, "auth:oauth2-proxy:4180");
        assert_eq!(f.path, "/oauth2/auth?x=1");
        assert_eq!(
            f.response_headers,
            vec![http::HeaderName::from_static("x-user")]
        );
        assert_eq!(f.timeout, std::time::Duration::from_secs(2));
        assert!(f.signin.is_none());
    }

    #[test]
    fn jwt_auth_reads_a_file_or_a_url_with_its_own_upstream() {
        let src = format!(
            "{HEAD}auth = {{ jwt = {{ jwks = \"jwks/keys.json\", issuer = \"https://idp.test\", audiences = [\"shop\"], claims_to_headers = {{ sub = \"X-User\", \"realm.role\" = \"x-role\" }}, leeway = \"5s\" }} }}\n"
        );
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Jwt(j)) = &cfg.routes[0].auth else {
            panic!("jwt auth");
        };
        assert_eq!(
            j.jwks,
            JwksSource::File(PathBuf::from("/etc/gw/jwks/keys.json"))
        );
        assert_eq!(j.issuer.as_deref(), Some("https://idp.test"));
        assert_eq!(j.audiences, ["shop"]);
        let claims: Vec<_> = j
            .claims_to_headers
            .iter()
            .map(|(c, h)| (c.as_str(), h.as_str()))
            .collect();
        assert_eq!(claims, [("realm.role", "x-role"), ("sub", "x-user")]);
        assert_eq!(j.leeway, std::time::Duration::from_secs(5));

        let src = format!(
            "{HEAD}auth = {{ jwt = {{ jwks = \"https://idp.example.com/.well-known/jwks.json\" }} }}\n"
        );
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Jwt(j)) = &cfg.routes[0].auth else {
            panic!("jwt auth");
        };
        let JwksSource::Url { upstream, path, .. } = &j.jwks else {
            panic!("a URL");
        };
        assert_eq!(path, "/.well-known/jwks.json");
        let u = &cfg.upstreams[*upstream];
        assert_eq!(u.name, "jwks+tls:idp.example.com:443");
        let tls = u.tls.as_ref().expect("https: TLS");
        assert_eq!(
            tls.server_name,
            UpstreamServerName::Name("idp.example.com".into())
        );
        assert!(tls.ca.is_none(), "the system's roots");
        assert_eq!(
            j.leeway,
            std::time::Duration::from_secs(60),
            "the default leeway"
        );

        let src = format!("{HEAD}auth = {{ jwt = {{ jwks = \"http://127.0.0.1:8080/keys\" }} }}\n");
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Jwt(j)) = &cfg.routes[0].auth else {
            panic!("jwt auth");
        };
        let JwksSource::Url { upstream, .. } = &j.jwks else {
            panic!("a URL");
        };
        assert_eq!(cfg.upstreams[*upstream].name, "jwks:127.0.0.1:8080");
        assert!(cfg.upstreams[*upstream].tls.is_none());
    }

    #[test]
    fn auth_errors_are_located() {
        let cases = [
            ("auth = {}", ":10:8: auth needs one scheme"),
            (
                "auth = { basic = { users = \"u\", realm = \"say \\\"hi\\\"\" } }",
                ":10:41: auth.basic.realm must be 1 to 128 printable ASCII",
            ),
            (
                "auth = { basic = { realm = \"x\" } }",
                "missing field `users`",
            ),
            ("auth = { oauth = {} }", "unknown field `oauth`"),
            (
                "auth = { basic = { users = \"u\" }, jwt = { jwks = \"k\" } }",
                ":10:8: auth needs one scheme",
            ),
            (
                "auth = { jwt = { jwks = \"ftp://idp/keys\" } }",
                ":10:25: auth.jwt.jwks must be a file or a URL",
            ),
            (
                "auth = { jwt = { jwks = \"https://\" } }",
                ":10:25: auth.jwt.jwks must be a file or a URL",
            ),
            (
                "auth = { jwt = { jwks = \"\" } }",
                ":10:25: auth.jwt.jwks must name a file or a URL",
            ),
            (
                "auth = { jwt = { jwks = \"k\", issuer = \"\" } }",
                ":10:39: auth.jwt.issuer must not be empty",
            ),
            (
                "auth = { jwt = { jwks = \"k\", audiences = [\"\"] } }",
                ":10:43: auth.jwt.audiences must not be empty",
            ),
            (
                "auth = { jwt = { jwks = \"k\", claims_to_headers = { sub = \"Host\" } } }",
                ":10:58: auth.jwt.claims_to_headers names a field a claim may not set",
            ),
            (
                "auth = { jwt = { jwks = \"k\", claims_to_headers = { sub = \"a b\" } } }",
                ":10:58: auth.jwt.claims_to_headers is not a header name",
            ),
            (
                "auth = { jwt = { jwks = \"k\", leeway = \"soon\" } }",
                ":10:39:",
            ),
            (
                "auth = { jwt = { jwks = \"k\", algorithms = [\"HS256\"] } }",
                "unknown field `algorithms`",
            ),
            (
                "auth = { jwt = { issuer = \"x\" } }",
                "missing field `jwks`",
            ),
            (
                "auth = { forward = { url = \"https://auth.test/check\" } }",
                ":10:28: auth.forward.url must be http://: for TLS to the auth service",
            ),
            (
                "auth = { forward = { url = \"not a url\" } }",
                ":10:28: auth.forward.url must be a URL",
            ),
            (
                "auth = { forward = { upstream = \"nope\" } }",
                ":10:33: auth.forward.upstream names no [upstream.NAME]",
            ),
            (
                "auth = { forward = { upstream = \"u\", path = \"x\" } }",
                ":10:45: auth.forward.path must start with '/'",
            ),
            ("auth = { forward = {} }", ":10:20: auth.forward needs url"),
            (
                "auth = { forward = { upstream = \"u\", request_headers = [\"bad header\"] } }",
                ":10:57: auth.forward.request_headers is not a header name",
            ),
            (
                "auth = { forward = { upstream = \"u\", signin = \"javascript:x\" } }",
                ":10:47: auth.forward.signin must be an http(s) URL or a path",
            ),
        ];
        let mut wrong = Vec::new();
        for (line, want) in cases {
            let errs = errors(&format!("{HEAD}{line}\n"));
            if !errs.iter().any(|e| e.contains(want)) {
                wrong.push(format!("{line}: want {want}, got {errs:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
