//! CORS policies: origin patterns, preflights and actual requests.

use std::time::Duration;

use http::header::{ORIGIN, VARY};
use http::{HeaderMap, HeaderValue, Method};

use super::{Cors, CorsRequest, OriginPattern, DEFAULT_METHODS};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn policy(origins: &[&str], credentials: bool) -> Cors {
    Cors::new(
        origins
            .iter()
            .map(|o| OriginPattern::parse(o).unwrap())
            .collect(),
        &strings(&["GET", "POST"]),
        &strings(&["content-type"]),
        &strings(&["x-request-id"]),
        credentials,
        Some(Duration::from_secs(3600)),
    )
}

fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn origins_parse() {
    assert_eq!(OriginPattern::parse("*"), Ok(OriginPattern::Any));
    assert_eq!(
        OriginPattern::parse("HTTPS://App.Example.com"),
        Ok(OriginPattern::Exact("https://app.example.com".into()))
    );
    assert_eq!(
        OriginPattern::parse("https://*.example.com:8443"),
        Ok(OriginPattern::Wildcard {
            scheme: "https://".into(),
            suffix: ".example.com:8443".into()
        })
    );
    assert!(OriginPattern::parse("http://[::1]:3000").is_ok());
    assert!(OriginPattern::parse("http://localhost:3000").is_ok());
    for bad in [
        "app.example.com",
        "https://app.example.com/",
        "https://a.example.com/path",
        "https://user@a.example.com",
        "https://a.*.example.com",
        "https://*example.com",
        "https://*.",
        "https://a..b",
        "https://a.test:0",
        "https://a.test:99999",
        "https://a.test:+80",
        "https://[::1",
        "https://[::1]x",
        "1http://a.test",
        "://a.test",
    ] {
        assert!(OriginPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn wildcards_cover_subdomains_of_the_same_scheme_and_port() {
    let w = OriginPattern::parse("https://*.example.com").unwrap();
    assert!(w.covers(b"https://a.example.com"));
    assert!(w.covers(b"https://a.b.example.com"));
    assert!(w.covers(b"HTTPS://A.EXAMPLE.COM"));
    assert!(!w.covers(b"https://example.com"), "one label at least");
    assert!(!w.covers(b"http://a.example.com"), "the scheme counts");
    assert!(!w.covers(b"https://a.example.com:8443"), "the port counts");
    assert!(!w.covers(b"https://a.example.com.evil.test"));
    assert!(!w.covers(b"https://evil.test/.example.com"));
    assert!(!w.covers(b"https://evilexample.com"));
    assert!(!w.covers(b"https://.example.com"));
    assert!(OriginPattern::Any.covers(b"https://anything.test"));
    assert!(
        !OriginPattern::Any.covers(b"null"),
        "opaque origins are never allowed"
    );
}

#[test]
fn a_matching_preflight_is_answered_with_the_policy() {
    let cors = policy(&["https://app.example.com", "https://*.example.com"], true);
    let h = request(&[
        ("origin", "https://x.example.com"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ]);
    let CorsRequest::Preflight(answer) = cors.request(&Method::OPTIONS, &h) else {
        panic!("a preflight");
    };
    assert_eq!(
        answer["access-control-allow-origin"], "https://x.example.com",
        "the origin itself"
    );
    assert_eq!(answer["access-control-allow-methods"], "GET, POST");
    assert_eq!(answer["access-control-allow-headers"], "content-type");
    assert_eq!(answer["access-control-allow-credentials"], "true");
    assert_eq!(answer["access-control-max-age"], "3600");
    assert!(answer[VARY].to_str().unwrap().contains("origin"));
    assert!(answer.get("access-control-expose-headers").is_none());
}

#[test]
fn star_lists_echo_what_was_asked() {
    let cors = Cors::new(
        vec![OriginPattern::Any],
        &strings(&["*"]),
        &strings(&["*"]),
        &[],
        false,
        None,
    );
    let h = request(&[
        ("origin", "https://any.test"),
        ("access-control-request-method", "PATCH"),
        ("access-control-request-headers", "x-a, x-b"),
    ]);
    let CorsRequest::Preflight(answer) = cors.request(&Method::OPTIONS, &h) else {
        panic!("a preflight");
    };
    assert_eq!(answer["access-control-allow-origin"], "https://any.test");
    assert_eq!(answer["access-control-allow-methods"], "PATCH");
    assert_eq!(answer["access-control-allow-headers"], "x-a, x-b");
    assert!(answer.get("access-control-allow-credentials").is_none());
    assert!(answer.get("access-control-max-age").is_none());
    let defaults = Cors::new(
        vec![OriginPattern::Any],
        &strings(&DEFAULT_METHODS),
        &[],
        &[],
        false,
        None,
    );
    let CorsRequest::Preflight(answer) = defaults.request(&Method::OPTIONS, &h) else {
        panic!("a preflight");
    };
    assert_eq!(answer["access-control-allow-methods"], "GET, HEAD, POST");
    assert!(
        answer.get("access-control-allow-headers").is_none(),
        "none allowed: left out"
    );
}

#[test]
fn actual_requests_get_the_origin_back_and_others_nothing() {
    let cors = policy(&["https://app.example.com"], true);
    let h = request(&[("origin", "https://app.example.com")]);
    let CorsRequest::Actual(origin) = cors.request(&Method::GET, &h) else {
        panic!("an actual request");
    };
    let mut resp = HeaderMap::new();
    cors.response(Some(&origin), &mut resp);
    assert_eq!(
        resp["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(resp["access-control-allow-credentials"], "true");
    assert_eq!(resp["access-control-expose-headers"], "x-request-id");
    assert_eq!(resp[VARY], "origin");

    // OPTIONS without Access-Control-Request-Method is an actual request.
    assert!(matches!(
        cors.request(&Method::OPTIONS, &h),
        CorsRequest::Actual(_)
    ));
    for outside in [
        request(&[("origin", "https://evil.test")]),
        request(&[
            ("origin", "https://evil.test"),
            ("access-control-request-method", "GET"),
        ]),
        request(&[("access-control-request-method", "GET")]),
        HeaderMap::new(),
    ] {
        assert!(matches!(
            cors.request(&Method::OPTIONS, &outside),
            CorsRequest::Pass
        ));
        assert!(matches!(
            cors.request(&Method::GET, &outside),
            CorsRequest::Pass
        ));
    }
    let mut resp = HeaderMap::new();
    resp.insert(ORIGIN, HeaderValue::from_static("unrelated"));
    cors.response(None, &mut resp);
    assert!(
        resp.keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "no CORS headers"
    );
    assert_eq!(resp[VARY], "origin", "the response still varies by Origin");
}
