//! The chain's hooks: what runs, in which order, and nothing for a route without filters.

use std::time::Duration;

use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{Chain, OnRequest, RequestHead};
use crate::routes::filters::compression::{Algorithm, Compression};
use crate::routes::filters::cors::{Cors, OriginPattern};
use crate::routes::filters::headers::HeaderModifier;
use crate::routes::filters::redirect::{Redirect, Scheme};
use crate::routes::filters::rewrite::{PathRewrite, Rewrite};

fn name(n: &'static str) -> HeaderName {
    HeaderName::from_static(n)
}

fn cors() -> Cors {
    Cors::new(
        vec![OriginPattern::parse("https://app.test").unwrap()],
        &["GET".to_owned()],
        &[],
        &[],
        false,
        Some(Duration::from_secs(60)),
    )
}

fn head<'a>(method: &'a Method, target: &'a str, headers: &'a mut HeaderMap) -> RequestHead<'a> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    RequestHead {
        method,
        scheme: Scheme::Https,
        authority: Some("a.test:8443"),
        path,
        query,
        headers,
    }
}

fn forward(chain: &Chain, method: Method, target: &str, headers: &mut HeaderMap) -> super::Forward {
    match chain.on_request(&mut head(&method, target, headers)) {
        OnRequest::Forward(f) => f,
        OnRequest::Answer(a) => panic!("answered {a:?}"),
    }
}

#[test]
fn a_route_without_filters_changes_nothing() {
    let chain = Chain::default();
    assert!(chain.is_empty());
    let mut req = HeaderMap::new();
    req.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    req.insert("origin", HeaderValue::from_static("https://app.test"));
    let f = forward(&chain, Method::GET, "/a?b", &mut req);
    assert!(f.target.is_none() && f.host.is_none());
    assert_eq!(req.len(), 2);
    let mut resp = HeaderMap::new();
    resp.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    assert!(chain
        .on_response(&f.exchange, StatusCode::OK, &mut resp)
        .is_none());
    assert_eq!(resp.len(), 1, "no Vary, nothing");
}

#[test]
fn request_hooks_run_in_order() {
    let chain = Chain {
        request_headers: Some(HeaderModifier {
            remove: vec![name("accept-encoding")],
            set: vec![(name("x-env"), HeaderValue::from_static("prod"))],
            add: vec![],
        }),
        rewrite: Some(Rewrite {
            path: Some(PathRewrite::Prefix {
                matched: "/api".into(),
                with: "/v2".into(),
            }),
            host: Some(HeaderValue::from_static("internal.test")),
        }),
        compression: Some(Compression::default()),
        ..Chain::default()
    };
    assert!(!chain.is_empty());
    let mut req = HeaderMap::new();
    req.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let f = forward(&chain, Method::GET, "/api/x?q=1", &mut req);
    assert_eq!(f.target.as_deref(), Some("/v2/x?q=1"));
    assert_eq!(f.host.unwrap(), "internal.test");
    assert_eq!(req["x-env"], "prod");
    assert!(
        req.get(ACCEPT_ENCODING).is_none(),
        "removed on the way up..."
    );
    let mut resp = HeaderMap::new();
    resp.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let encoder = chain
        .on_response(&f.exchange, StatusCode::OK, &mut resp)
        .unwrap();
    assert_eq!(
        encoder.algorithm(),
        Algorithm::Gzip,
        "...after the client's was read"
    );
    assert_eq!(resp[CONTENT_ENCODING], "gzip");
}

#[test]
fn preflight_first_then_redirect_both_with_response_headers() {
    let chain = Chain {
        cors: Some(cors()),
        redirect: Some(Redirect {
            scheme: None,
            host: Some("new.test".into()),
            port: None,
            path: None,
            status: StatusCode::MOVED_PERMANENTLY,
        }),
        response_headers: Some(HeaderModifier {
            set: vec![(name("x-served-by"), HeaderValue::from_static("gateway"))],
            ..HeaderModifier::default()
        }),
        ..Chain::default()
    };
    let mut req = HeaderMap::new();
    req.insert("origin", HeaderValue::from_static("https://app.test"));
    req.insert(
        "access-control-request-method",
        HeaderValue::from_static("GET"),
    );
    let OnRequest::Answer(a) = chain.on_request(&mut head(&Method::OPTIONS, "/x", &mut req)) else {
        panic!("a preflight is answered");
    };
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(a.headers["access-control-max-age"], "60");
    assert_eq!(a.headers["x-served-by"], "gateway");

    req.remove("access-control-request-method");
    let OnRequest::Answer(a) = chain.on_request(&mut head(&Method::GET, "/x?y", &mut req)) else {
        panic!("a redirect is answered");
    };
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.headers[LOCATION], "https://new.test:8443/x?y");
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(a.headers[VARY], "origin");
    assert_eq!(a.headers["x-served-by"], "gateway");
}

#[test]
fn response_hooks_run_in_order() {
    let chain = Chain {
        cors: Some(cors()),
        response_headers: Some(HeaderModifier {
            remove: vec![name("server")],
            set: vec![(
                name("cache-control"),
                HeaderValue::from_static("no-transform"),
            )],
            ..HeaderModifier::default()
        }),
        compression: Some(Compression::default()),
        ..Chain::default()
    };
    let mut req = HeaderMap::new();
    req.insert("origin", HeaderValue::from_static("https://app.test"));
    req.insert(ACCEPT_ENCODING, HeaderValue::from_static("br"));
    let f = forward(&chain, Method::GET, "/x", &mut req);
    let mut resp = HeaderMap::new();
    resp.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp.insert("server", HeaderValue::from_static("backend"));
    let encoder = chain.on_response(&f.exchange, StatusCode::OK, &mut resp);
    assert!(
        encoder.is_none(),
        "the modifier's no-transform is seen by compression"
    );
    assert_eq!(resp["access-control-allow-origin"], "https://app.test");
    assert!(resp.get("server").is_none());
    assert_eq!(resp[CACHE_CONTROL], "no-transform");

    let mut early = HeaderMap::new();
    assert!(chain
        .on_response(&f.exchange, StatusCode::CONTINUE, &mut early)
        .is_none());
    assert!(early.is_empty(), "1xx responses are left alone");
}
