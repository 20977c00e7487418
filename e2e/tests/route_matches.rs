//! Route matches and weighted backends through real clients on HTTP/1.1 and HTTP/2:
//! host lists, exact, regex and prefix paths, method, header and query matches, the
//! Gateway API's precedence between them (regexes tried before prefixes, as nginx
//! does), and a request split between upstreams by weight that follows a reload.
//! Each case names the upstream that must answer (hello's `x-hello-instance`): a
//! lookup that ignored a condition or ranked two routes the other way answers with
//! another one.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{request_to, Certs, Client, Gateway, Hello, Proto};
use http::Method;

const NAMES: [&str; 10] = [
    "exact", "regex1", "regex2", "prefix", "longer", "post", "canary", "env", "debug", "any",
];

const ROUTES: &str = r#"
[[route]]
host = ["shop.test", "*.shop.test"]
path = { exact = "/login" }
upstream = "exact"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { regex = "^/v[0-9]+/" }
upstream = "regex1"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { regex = "/items" }
upstream = "regex2"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api" }
upstream = "prefix"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api/v" }
upstream = "longer"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api" }
method = "POST"
upstream = "post"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api" }
headers = [{ name = "x-canary", value = "always" }, { name = "x-env", regex = "^(dev|qa)$" }]
upstream = "canary"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api" }
headers = [{ name = "X-Env", regex = "^(dev|qa)$" }]
upstream = "env"

[[route]]
host = ["shop.test", "*.shop.test"]
path = { prefix = "/api" }
query = [{ name = "debug", value = "1" }]
upstream = "debug"

[[route]]
upstream = "any"
"#;

fn upstreams(replicas: &[Hello]) -> String {
    NAMES
        .iter()
        .zip(replicas)
        .map(|(name, h)| format!("[upstream.{name}]\nservers = [\"{}\"]\n", h.addr))
        .collect()
}

fn listener(certs: &Certs) -> String {
    e2e::https_listener(&certs.server("routes", &["localhost"]))
}

/// (method, host, target, headers, the upstream that answers)
type Case<'a> = (
    &'a Method,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
);

#[tokio::test]
async fn each_match_kind_and_the_precedence_between_them() {
    let certs = Certs::new();
    let replicas = NAMES.map(Hello::spawn);
    let gw = Gateway::start(&format!(
        "{}{}{ROUTES}",
        listener(&certs),
        upstreams(&replicas)
    ));
    let client = Client::new(&certs.ca());
    let get = Method::GET;
    let post = Method::POST;
    let cases: &[Case<'_>] = &[
        // An exact path beats every regex and prefix; only that path.
        (&get, "shop.test", "/login", &[], "exact"),
        (&get, "shop.test", "/login/", &[], "any"),
        // Any host of the list, wildcard included, in any case and with a port.
        (&get, "x.Shop.Test:8443", "/login", &[], "exact"),
        (&get, "shop.test.other", "/login", &[], "any"),
        // Regexes before prefixes, the first matching one in file order; searched
        // in the path (not anchored unless written so), never in the query.
        (&get, "shop.test", "/v2/items", &[], "regex1"),
        (&get, "shop.test", "/api/items", &[], "regex2"),
        (&get, "shop.test", "/api/v1/x", &[], "longer"),
        (&get, "shop.test", "/api/x?q=/items", &[], "prefix"),
        (&get, "shop.test", "/w2/x", &[], "any"),
        // The longest prefix, on segment boundaries or not, as the prefix is written.
        (&get, "shop.test", "/api", &[], "prefix"),
        (&get, "shop.test", "/api/vx", &[], "longer"),
        // Same path: a method match first, then the most header matches, then query.
        (&post, "shop.test", "/api/x", &[], "post"),
        (
            &post,
            "shop.test",
            "/api/x",
            &[("x-canary", "always"), ("x-env", "qa")],
            "post",
        ),
        (
            &get,
            "shop.test",
            "/api/x",
            &[("x-canary", "always"), ("x-env", "qa")],
            "canary",
        ),
        (&get, "shop.test", "/api/x", &[("x-env", "dev")], "env"),
        (&get, "shop.test", "/api/x", &[("x-env", "prod")], "prefix"),
        (
            &get,
            "shop.test",
            "/api/x",
            &[("x-canary", "sometimes"), ("x-env", "qa")],
            "env",
        ),
        (
            &get,
            "shop.test",
            "/api/x?debug=1",
            &[("x-env", "qa")],
            "env",
        ),
        (&get, "shop.test", "/api/x?a=b&debug=1", &[], "debug"),
        (&get, "shop.test", "/api/x?debug=10", &[], "prefix"),
        // Query names and values as sent: not percent-decoded.
        (&get, "shop.test", "/api/x?debu%67=1", &[], "prefix"),
    ];
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = client
            .connect(gw.addr("https"), Some("localhost"), proto)
            .await
            .unwrap();
        for &(method, host, target, headers, want) in cases {
            let resp = conn
                .send(request_to(proto, method, host, target, headers))
                .await
                .unwrap();
            let what = format!("{proto:?} {method} {host}{target} {headers:?}");
            assert_eq!(resp.status, 200, "{what}");
            assert_eq!(resp.header("x-hello-instance"), want, "{what}");
        }
    }
}

/// How many of `n` requests each upstream answered, over one connection.
async fn split(client: &Client, gw: &Gateway, proto: Proto, n: usize) -> HashMap<String, usize> {
    let mut conn = client
        .connect(gw.addr("https"), Some("localhost"), proto)
        .await
        .unwrap();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let resp = conn.get("/").await.unwrap();
        assert_eq!(resp.status, 200);
        *seen
            .entry(resp.header("x-hello-instance").to_owned())
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn requests_split_by_weight_and_a_new_weight_applies_on_reload() {
    let certs = Certs::new();
    let [v1, v2, v3] = ["v1", "v2", "v3"].map(Hello::spawn);
    let upstreams: String = [("v1", &v1), ("v2", &v2), ("v3", &v3)]
        .iter()
        .map(|(name, h)| format!("[upstream.{name}]\nservers = [\"{}\"]\n", h.addr))
        .collect();
    let route = |w1: u32, w2: u32| {
        format!(
            "[[route]]\nbackends = [{{ upstream = \"v1\", weight = {w1} }}, {{ upstream = \"v2\", weight = {w2} }}, {{ upstream = \"v3\", weight = 0 }}]\n"
        )
    };
    let gw = Gateway::start(&format!("{}{upstreams}{}", listener(&certs), route(75, 25)));
    let client = Client::new(&certs.ca());
    // 2,000 requests at 25%: one standard deviation is ~1 point, the bound 5.
    const N: usize = 2000;
    for proto in [Proto::H1, Proto::H2] {
        let seen = split(&client, &gw, proto, N).await;
        let share = |name: &str| 100.0 * *seen.get(name).unwrap_or(&0) as f64 / N as f64;
        assert!((share("v1") - 75.0).abs() <= 5.0, "{proto:?}: {seen:?}");
        assert!((share("v2") - 25.0).abs() <= 5.0, "{proto:?}: {seen:?}");
        assert_eq!(seen.get("v3"), None, "weight 0 is never picked: {seen:?}");
    }

    // A kept-alive connection keeps working across the reload; the new weights apply
    // to its next requests.
    let mut conn = client
        .connect(gw.addr("https"), Some("localhost"), Proto::H1)
        .await
        .unwrap();
    assert_eq!(conn.get("/").await.unwrap().status, 200);
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), text.replace(&route(75, 25), &route(0, 1))).unwrap();
    // Polled until 20 answers in a row come from v2 (0.25^20 before the reload).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(Instant::now() < deadline, "the new weights never applied");
        let resp = conn.get("/").await.unwrap();
        assert_eq!(resp.status, 200, "no failed request across the reload");
        in_a_row = if resp.header("x-hello-instance") == "v2" {
            in_a_row + 1
        } else {
            0
        };
    }
    let seen = split(&client, &gw, Proto::H2, 200).await;
    assert_eq!(seen.get("v2"), Some(&200), "{seen:?}");
}
