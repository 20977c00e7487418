//! `[[route]]` and `[compression]` validation: the issue's contract, defaults, and a
//! located error for each kind of mistake.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::config::{from_str, Config};
use crate::routes::filters::compression::{Algorithm, Compression, Levels, MediaRange};
use crate::routes::filters::cors::CorsRequest;
use crate::routes::filters::redirect::{Origin, Scheme};
use crate::routes::filters::rewrite::PathRewrite;
use crate::routes::{HostPattern, PathMatch, Request, Table, ValueMatch};

const UPSTREAMS: &str =
    "[upstream.v1]\nservers = [\"127.0.0.1:1\"]\n[upstream.v2]\nservers = [\"127.0.0.1:2\"]\n";

/// The issue's example route, as written there.
const CONTRACT: &str = r#"
[[route]]
host = "shop.example.com"
path = { prefix = "/api" }
method = "POST"
headers = [{ name = "x-canary", value = "always" }, { name = "x-env", regex = "^(dev|qa)$" }]
query = [{ name = "debug", value = "1" }]
backends = [{ upstream = "v1", weight = 90 }, { upstream = "v2", weight = 10 }]
request_headers = { set = { "x-env" = "prod" }, add = { "x-tag" = "a" }, remove = ["x-debug"] }
response_headers = { set = { "cache-control" = "no-store" }, remove = ["server", "x-powered-by"] }
rewrite = { path_prefix = "/v2" }
compression = true
cors = { allow_origins = ["https://app.example.com", "https://*.example.com"], allow_methods = ["GET", "POST"], allow_headers = ["content-type"], expose_headers = ["x-request-id"], allow_credentials = true, max_age = "1h" }

[[route]]
host = ["a.example.com", "*.b.example.com"]
path = { exact = "/login" }
redirect = { scheme = "https", host = "new.example.com", port = 8443, path_prefix = "/new", status = 301 }

[[route]]
path = { regex = "^/v[0-9]+/items" }
upstream = "v1"
rewrite = { path = "/fixed", host = "internal.example" }

[compression]
enabled = true
algorithms = ["zstd", "br", "gzip"]
min_size = "1KiB"
types = ["text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml"]
"#;

fn load(src: &str) -> Config {
    from_str(Path::new("/gw.toml"), &format!("{UPSTREAMS}{src}")).unwrap()
}

/// The rendered errors of `src` (after the two upstreams, 4 lines), which must fail.
pub(super) fn errors(src: &str) -> Vec<String> {
    match from_str(Path::new("/gw.toml"), &format!("{UPSTREAMS}{src}")) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(errs) => errs.iter().map(|e| crate::error_chain(e)).collect(),
    }
}

/// `src` fails with exactly `expect` (each a substring of one error, in order).
pub(super) fn fails(src: &str, expect: &[&str]) {
    let errs = errors(src);
    if std::env::var_os("SHOW_ERRORS").is_some() {
        for e in &errs {
            eprintln!("{e}");
        }
    }
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for (err, want) in errs.iter().zip(expect) {
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn the_contract_validates() {
    let cfg = load(CONTRACT);
    assert_eq!(cfg.rules.len(), 3);
    let shop = &cfg.rules[0];
    assert_eq!(
        shop.matches.hosts,
        [HostPattern::Exact("shop.example.com".into())]
    );
    assert_eq!(shop.matches.path, PathMatch::Prefix("/api".into()));
    assert_eq!(shop.matches.method, Some(Method::POST));
    assert_eq!(shop.matches.headers.len(), 2);
    assert!(matches!(
        shop.matches.headers[1].value,
        ValueMatch::Regex(_)
    ));
    assert_eq!(shop.matches.query[0].name, "debug");
    assert_eq!(
        shop.backends.as_ref().unwrap().entries(),
        &[(0, 90), (1, 10)]
    );
    let chain = &shop.chain;
    let req = chain.request_headers.as_ref().unwrap();
    assert_eq!((req.remove.len(), req.set.len(), req.add.len()), (1, 1, 1));
    assert_eq!(chain.response_headers.as_ref().unwrap().remove.len(), 2);
    assert_eq!(
        chain.rewrite.as_ref().unwrap().path,
        Some(PathRewrite::Prefix {
            matched: "/api".into(),
            with: "/v2".into()
        })
    );
    assert_eq!(chain.compression.as_ref(), Some(&Compression::default()));
    let cors = chain.cors.as_ref().unwrap();
    let mut h = HeaderMap::new();
    h.insert("origin", HeaderValue::from_static("https://x.example.com"));
    h.insert(
        "access-control-request-method",
        HeaderValue::from_static("POST"),
    );
    let CorsRequest::Preflight(answer) = cors.request(&Method::OPTIONS, &h) else {
        panic!("a preflight");
    };
    assert_eq!(answer["access-control-max-age"], "3600");
    assert_eq!(answer["access-control-allow-credentials"], "true");

    let login = &cfg.rules[1];
    assert_eq!(login.matches.hosts.len(), 2);
    assert_eq!(login.backends, None, "a redirect has no backends");
    let redirect = login.chain.redirect.as_ref().unwrap();
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    let mut location = String::new();
    let origin = Origin {
        scheme: Scheme::Http,
        authority: Some("a.example.com"),
        path: "/login",
        query: "x=1",
    };
    redirect.location(&origin, &mut location);
    assert_eq!(
        location, "https://new.example.com:8443/new?x=1",
        "prefix /login replaced"
    );

    let items = &cfg.rules[2];
    assert_eq!(
        items.matches.path,
        PathMatch::Regex("^/v[0-9]+/items".into())
    );
    assert_eq!(
        items.chain.rewrite.as_ref().unwrap().host.as_ref().unwrap(),
        "internal.example"
    );
    assert_eq!(cfg.compression, Compression::default());

    // The legacy view proxy::Router reads.
    assert_eq!(cfg.routes[0].path_prefix, "/api");
    assert_eq!(cfg.routes[0].upstream, 0);
    assert_eq!(cfg.routes[2].path_prefix, "/");
}

#[test]
fn the_table_routes_the_contract() {
    let cfg = load(CONTRACT);
    let table = Table::new(cfg.rules.iter().map(|r| &r.matches));
    let mut h = HeaderMap::new();
    h.insert("x-canary", HeaderValue::from_static("always"));
    h.insert("x-env", HeaderValue::from_static("qa"));
    let get = |host, path, query, method: &Method, h: &HeaderMap| {
        table.lookup(&Request {
            host,
            path,
            query,
            method,
            headers: h,
        })
    };
    assert_eq!(
        get("shop.example.com", "/api/x", "debug=1", &Method::POST, &h),
        Some(0)
    );
    assert_eq!(
        get("shop.example.com", "/api/x", "", &Method::POST, &h),
        None
    );
    assert_eq!(
        get("x.b.example.com", "/login", "", &Method::GET, &h),
        Some(1)
    );
    assert_eq!(get("other", "/v2/items/1", "", &Method::GET, &h), Some(2));
}

#[test]
fn the_contract_loads_whole_and_routes_are_labelled_as_nginx_locations() {
    let cfg = from_str(Path::new("/gw.toml"), &format!("{UPSTREAMS}{CONTRACT}")).unwrap();
    assert!(!cfg.rules.is_empty());
    let served = "[[route]]\nhost = [\"a.test\", \"*.b.test\"]\npath = { exact = \"/a\" }\nmethod = \"POST\"\nheaders = [{ name = \"x-canary\", value = \"1\" }]\nquery = [{ name = \"debug\", value = \"1\" }]\nbackends = [{ upstream = \"v1\", weight = 9 }, { upstream = \"v2\", weight = 1 }]\n[[route]]\npath = { regex = \"^/v[0-9]+/\" }\nupstream = \"v2\"\n[[route]]\npath_prefix = \"/b\"\nupstream = \"v2\"\n";
    let cfg = from_str(Path::new("/gw.toml"), &format!("{UPSTREAMS}{served}")).unwrap();
    assert_eq!(cfg.rules.len(), 3);
    assert_eq!(cfg.rules[0].label(), "POST a.test,*.b.test=/a");
    assert_eq!(cfg.rules[1].label(), "~^/v[0-9]+/");
    assert_eq!(cfg.rules[2].label(), "/b");
}

#[test]
fn defaults() {
    let cfg = load("[[route]]\nupstream = \"v2\"\n[[route]]\npath_prefix = \"/x\"\nupstream = \"v1\"\ncompression = false\n");
    let r = &cfg.rules[0];
    assert!(r.matches.hosts.is_empty());
    assert_eq!(r.matches.path, PathMatch::Prefix("/".into()));
    assert_eq!(r.backends.as_ref().unwrap().entries(), &[(1, 1)]);
    assert_eq!(
        r.chain.compression,
        Some(Compression::default()),
        "[compression] is on by default"
    );
    assert!(
        cfg.rules[1].chain.is_empty(),
        "compression = false: no filter at all"
    );
    let c = Compression::default();
    assert!(c.enabled);
    assert_eq!(
        c.algorithms,
        [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip]
    );
    assert_eq!(c.min_size, 1024);
    assert_eq!(c.types.len(), 5);
    assert_eq!(
        c.levels,
        Levels {
            gzip: 2,
            br: 2,
            zstd: 1
        }
    );
}

#[test]
fn compression_section_and_route_overrides() {
    let cfg = load(
        "[compression]\nenabled = false\nalgorithms = [\"gzip\"]\nmin_size = \"256B\"\ntypes = [\"*/*\"]\nlevels = { gzip = 6, zstd = 3 }\n[[route]]\nupstream = \"v1\"\n[[route]]\npath_prefix = \"/z\"\nupstream = \"v1\"\ncompression = true\n",
    );
    assert!(
        cfg.rules[0].chain.compression.is_none(),
        "off unless the route says so"
    );
    let c = cfg.rules[1].chain.compression.as_ref().unwrap();
    assert_eq!(c.algorithms, [Algorithm::Gzip]);
    assert_eq!(c.min_size, 256);
    assert_eq!(c.types, [MediaRange::Any]);
    assert_eq!(
        c.levels,
        Levels {
            gzip: 6,
            br: 2,
            zstd: 3
        }
    );
}

#[test]
fn duplicates_need_the_same_host_path_and_conditions() {
    let ok = load(
        "[[route]]\npath_prefix = \"/a\"\nupstream = \"v1\"\n[[route]]\npath_prefix = \"/a\"\nupstream = \"v2\"\nheaders = [{ name = \"x-canary\", value = \"1\" }]\n[[route]]\npath = { exact = \"/a\" }\nupstream = \"v2\"\n[[route]]\nhost = \"a.test\"\npath_prefix = \"/a\"\nupstream = \"v2\"\n",
    );
    assert_eq!(ok.rules.len(), 4);
    fails(
        "[[route]]\nhost = [\"a.test\", \"b.test\"]\npath = { regex = \"^/x\" }\nupstream = \"v1\"\n[[route]]\nhost = \"B.test\"\npath = { regex = \"^/x\" }\nupstream = \"v2\"\n",
        &[":9:1: a route for the same host, path and conditions is already defined at line 5"],
    );
}

#[test]
fn cors_max_age_and_methods_defaults() {
    let cfg = load("[[route]]\nupstream = \"v1\"\ncors = { allow_origins = [\"*\"] }\n");
    let cors = cfg.rules[0].chain.cors.as_ref().unwrap();
    let mut h = HeaderMap::new();
    h.insert("origin", HeaderValue::from_static("https://x.test"));
    h.insert(
        "access-control-request-method",
        HeaderValue::from_static("DELETE"),
    );
    let CorsRequest::Preflight(answer) = cors.request(&Method::OPTIONS, &h) else {
        panic!("a preflight");
    };
    assert_eq!(answer["access-control-allow-methods"], "GET, HEAD, POST");
    assert!(answer.get("access-control-max-age").is_none());
    let _ = Duration::ZERO;
}

mod errors;
