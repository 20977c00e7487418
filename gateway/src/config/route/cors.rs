//! Validation of a route's `cors = { ... }`.

use std::time::Duration;

use toml::Spanned;

use super::file::CorsFile;
use super::{bad_value, push, RouteError};
use crate::config::validate::{duration, Checker};
use crate::routes::filters::cors::{Cors, OriginPattern, DEFAULT_METHODS, STAR_WITH_CREDENTIALS};
use crate::routes::filters::is_token;

/// `cors = { ... }`.
pub(super) fn cors(c: &mut Checker<'_>, raw: &Option<Spanned<CorsFile>>) -> Option<Option<Cors>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let r = raw.get_ref();
    let credentials = r.allow_credentials.unwrap_or(false);
    let mut ok = true;
    let mut origins = Vec::new();
    match &r.allow_origins {
        None => {
            let hint = "list the origins allowed, such as [\"https://app.example.com\"]";
            push(
                c,
                raw.span(),
                RouteError::Empty {
                    field: "cors.allow_origins",
                    hint,
                },
            );
            ok = false;
        }
        Some(list) if list.get_ref().is_empty() => {
            let hint = "list the origins allowed, such as [\"https://app.example.com\"]";
            push(
                c,
                list.span(),
                RouteError::Empty {
                    field: "cors.allow_origins",
                    hint,
                },
            );
            ok = false;
        }
        Some(list) => {
            for o in list.get_ref() {
                match OriginPattern::parse(o.get_ref()) {
                    Ok(OriginPattern::Any) if credentials => {
                        star_with_credentials(c, o, "cors.allow_origins entry");
                        ok = false;
                    }
                    Ok(p) => origins.push(p),
                    Err(reason) => {
                        let value = o.get_ref().clone();
                        bad_value(c, o.span(), "cors.allow_origins entry", value, reason);
                        ok = false;
                    }
                }
            }
        }
    }
    let tokens = |c: &mut Checker<'_>, list: &[Spanned<String>], field: &'static str| {
        let mut good = true;
        for t in list {
            if t.get_ref() == "*" && credentials {
                star_with_credentials(c, t, field);
                good = false;
            } else if t.get_ref() != "*" && !is_token(t.get_ref()) {
                let reason = "is not a token (or \"*\")";
                let value = t.get_ref().clone();
                bad_value(c, t.span(), field, value, reason);
                good = false;
            }
        }
        good.then(|| {
            list.iter()
                .map(|t| t.get_ref().clone())
                .collect::<Vec<String>>()
        })
    };
    let methods = match &r.allow_methods {
        None => Some(DEFAULT_METHODS.iter().map(|m| m.to_string()).collect()),
        Some(list) if list.get_ref().is_empty() => {
            let hint = "leave it out for GET, HEAD and POST, or list methods (or \"*\")";
            push(
                c,
                list.span(),
                RouteError::Empty {
                    field: "cors.allow_methods",
                    hint,
                },
            );
            None
        }
        Some(list) => tokens(c, list.get_ref(), "cors.allow_methods entry"),
    };
    let headers = tokens(
        c,
        r.allow_headers.as_deref().unwrap_or_default(),
        "cors.allow_headers entry",
    );
    let expose = tokens(
        c,
        r.expose_headers.as_deref().unwrap_or_default(),
        "cors.expose_headers entry",
    );
    let max_age: Option<Option<Duration>> = match &r.max_age {
        Some(v) => duration(c, v, Duration::ZERO).map(Some),
        None => Some(None),
    };
    let (methods, headers, expose, max_age) = (methods?, headers?, expose?, max_age?);
    ok.then(|| {
        Some(Cors::new(
            origins,
            &methods,
            &headers,
            &expose,
            credentials,
            max_age,
        ))
    })
}

fn star_with_credentials(c: &mut Checker<'_>, v: &Spanned<String>, field: &'static str) {
    let value = v.get_ref().clone();
    bad_value(c, v.span(), field, value, STAR_WITH_CREDENTIALS);
}
