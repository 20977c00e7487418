//! Validation of a route's `auth = { jwt = {...} }`: where its keys come from (a file,
//! or a URL fetched through an implicit upstream), and the claims it checks and sends on.

use http::HeaderName;

use super::auth::{url_target, UrlTarget};
use super::file::JwtAuthFile;
use crate::config::edge::bad_value;
use crate::config::model::*;
use crate::config::validate::{duration, Checker};

/// Fields a claim may not set: framing, routing and the credentials themselves.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "authorization",
];

pub(super) fn jwt_auth(
    c: &mut Checker<'_>,
    f: &JwtAuthFile,
    upstreams: &[Upstream],
) -> Option<RouteAuth> {
    let text = f.jwks.get_ref();
    let jwks = if text.contains("://") {
        let Some(target) = url_target(text) else {
            let reason = "must be a file or a URL: https://HOST[:PORT]/PATH";
            bad_value(c, &f.jwks, "auth.jwt.jwks", reason);
            return None;
        };
        let name = implicit_name(&target);
        let upstream = upstreams.iter().position(|u| u.name == name)?;
        JwksSource::Url {
            url: text.clone(),
            upstream,
            path: target.path,
        }
    } else if text.is_empty() {
        bad_value(c, &f.jwks, "auth.jwt.jwks", "must name a file or a URL");
        return None;
    } else {
        JwksSource::File(c.base_dir.join(text))
    };
    let issuer = match &f.issuer {
        Some(i) if i.get_ref().is_empty() => {
            bad_value(c, i, "auth.jwt.issuer", "must not be empty");
            None
        }
        i => i.as_ref().map(|i| i.get_ref().clone()),
    };
    let mut audiences = Vec::new();
    for a in f.audiences.iter().flatten() {
        match a.get_ref().is_empty() {
            true => bad_value(c, a, "auth.jwt.audiences", "must not be empty"),
            false => audiences.push(a.get_ref().clone()),
        }
    }
    let mut claims_to_headers = Vec::new();
    for (claim, header) in f.claims_to_headers.iter().flatten() {
        let name = HeaderName::try_from(header.get_ref().as_str());
        match name {
            Ok(name) if RESERVED.contains(&name.as_str()) => {
                let reason = "names a field a claim may not set (framing, Host, Authorization)";
                bad_value(c, header, "auth.jwt.claims_to_headers", reason);
            }
            Ok(_) if claim.is_empty() || claim.split('.').any(str::is_empty) => {
                let reason = "has an empty claim name (nested claims are `a.b`)";
                bad_value(c, header, "auth.jwt.claims_to_headers", reason);
            }
            Ok(name) => claims_to_headers.push((claim.clone(), name)),
            Err(_) => bad_value(
                c,
                header,
                "auth.jwt.claims_to_headers",
                "is not a header name",
            ),
        }
    }
    let leeway = match &f.leeway {
        Some(v) => duration(c, v, std::time::Duration::ZERO)?,
        None => DEFAULT_JWT_LEEWAY,
    };
    Some(RouteAuth::Jwt(JwtAuth {
        jwks,
        at: c.at(f.jwks.span()),
        issuer,
        audiences,
        claims_to_headers,
        leeway,
    }))
}

/// The implicit upstream of a JWKS URL: `jwks:HOST:PORT`, `jwks+tls:` for `https://`.
pub(super) fn implicit_name(target: &UrlTarget) -> String {
    match target.tls {
        true => format!("jwks+tls:{}", target.authority),
        false => format!("jwks:{}", target.authority),
    }
}
