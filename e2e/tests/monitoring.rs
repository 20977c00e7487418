//! The Grafana dashboard and the Prometheus alert rules shipped in `config/monitoring/`:
//! `promtool` checks the rules and runs their unit tests, and a real Prometheus scraping
//! real gateways evaluates every expression of both files through its HTTP API.
//!
//! How an expression "returns data" is judged: its instant value now is a non-empty
//! vector, and every vector selector inside it (`metric{matchers}`, under `absent()` or
//! `or vector(0)` too) selects series on its own, so a misspelt metric name, label name
//! in a selector or label value fails even where the whole expression would hide it. The
//! live setup makes every alert condition true (a gateway killed, a refused reload, an
//! upstream whose only backend is dead, a route answering 502, a certificate with 7 days
//! left), so each alert's whole expression, threshold included, must match, and exactly
//! the expected series: that is checked on Prometheus's own list of pending and firing
//! alerts. The one exception is `absent(...)`, which is empty while gateways are
//! scraped: its argument is checked instead. Whether alerts stay quiet when they should
//! is `promtool test rules`' part.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{
    promtool, raw_get, selectors, wait_until, Certs, Client, Gateway, Hello, Prometheus, Proto,
};
use yaml_rust2::{Yaml, YamlLoader};

/// The alerts the issue asks for (gateway down is two: a target down, no target at all).
const ALERTS: [&str; 6] = [
    "GatewayDown",
    "GatewayAbsent",
    "GatewayConfigReloadRefused",
    "GatewayHighErrorRatio",
    "GatewayUpstreamNoHealthyBackend",
    "GatewayCertificateExpiringSoon",
];
/// Panels the issue lists, by title.
const PANELS: [&str; 10] = [
    "Requests/s by route and upstream",
    "5xx ratio by route and upstream",
    "Latency percentiles",
    "p99 latency by route and upstream",
    "Backends by upstream and health",
    "Open connections by listener",
    "TLS handshakes/s by listener and version",
    "Config reloads by result",
    "Certificate expiry",
    "Spans/s exported and dropped",
];
/// What `$__rate_interval` becomes: Grafana makes it at least 4 scrape intervals (1 s here).
const RATE_INTERVAL: &str = "10s";
const SCRAPES: Duration = Duration::from_secs(90);

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring")
}

fn yaml(file: &str) -> Yaml {
    let text = std::fs::read_to_string(monitoring().join(file)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(docs.len(), 1, "{file}: one YAML document");
    docs.remove(0)
}

fn items(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(monitoring().join("gateway-dashboard.json")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("gateway-dashboard.json: {e}"))
}

/// Every panel that is not a row, with those nested in collapsed rows.
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let out = promtool(&monitoring(), &["check", "rules", "gateway-alerts.yaml"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out:?}"
    );
    let out = promtool(
        &monitoring(),
        &["test", "rules", "gateway-alerts.test.yaml"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("SUCCESS"), "{out:?}");

    // Every alert: the issue's set, a severity, a summary and a description.
    let rules = yaml("gateway-alerts.yaml");
    let mut names = BTreeSet::new();
    for group in items(&rules["groups"]) {
        for rule in items(&group["rules"]) {
            let name = rule["alert"].as_str().expect("only alerting rules");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{name}: severity"
            );
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or("");
                assert!(text.len() > 10, "{name}: {key}");
            }
            assert!(names.insert(name.to_owned()), "{name} twice");
        }
    }
    assert_eq!(names, BTreeSet::from(ALERTS.map(str::to_owned)));

    // Every alert has a unit test where it fires and one where it does not.
    let tests = yaml("gateway-alerts.test.yaml");
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in items(&tests["tests"]) {
        for case in items(&test["alert_rule_test"]) {
            let name = case["alertname"].as_str().unwrap().to_owned();
            if items(&case["exp_alerts"]).is_empty() {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    assert_eq!(fires, names, "alerts with a firing case");
    assert_eq!(quiet, names, "alerts with a case where they must not fire");
}

#[test]
fn the_prometheus_operator_rule_holds_the_same_groups() {
    let rule = yaml("gateway-prometheusrule.yaml");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert!(rule["metadata"]["name"].as_str().is_some());
    assert!(
        rule["spec"]["groups"] == yaml("gateway-alerts.yaml")["groups"],
        "spec.groups of gateway-prometheusrule.yaml differs from the groups of gateway-alerts.yaml"
    );
}

#[test]
fn the_dashboard_imports_anywhere_and_has_the_panels_of_the_issue() {
    let dash = dashboard();
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
    assert_eq!(ds["name"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(ds["label"], "Data source", "the README names the drop-down");
    let names: Vec<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    for name in ["job", "instance", "listener", "route", "upstream"] {
        assert!(names.contains(&name), "template variable {name}");
    }
    let ours = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], ours, "variable {}", v["name"]);
        // "All" stands for a regex of its own, not for a list of every value.
        if v["includeAll"] == true {
            assert_eq!(v["allValue"], ".*", "variable {}", v["name"]);
        }
    }
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id {} twice",
            p["id"]
        );
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{}",
            p["title"]
        );
    }
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap();
        // No data source is named: the variable picks one at import.
        assert_eq!(p["datasource"], ours, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert_eq!(t["datasource"], ours, "{title}");
            assert!(!t["expr"].as_str().unwrap().is_empty(), "{title}");
        }
    }
    let titles: Vec<&str> = panels(&dash)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for title in PANELS {
        assert!(titles.contains(&title), "no panel {title:?} in {titles:?}");
    }
}

/// The gateway under test: plain and TLS listeners (the TLS one also serves a
/// certificate with 7 days left), upstream `hello`, and upstream `dead` whose only
/// backend refuses connections (actively checked every second, so it stays unhealthy).
fn main_gateway(certs: &Certs, hello: &Hello, dead: std::net::SocketAddr) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let soon = certs.server_expiring_in("soon", &["soon.test"], Duration::from_secs(7 * 86_400));
    Gateway::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[[listener]]
name = "web"
listen = "127.0.0.1:{{{{port:web}}}}"

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}", "{soon}"] }}

[upstream.hello]
servers = ["{hello}"]

[upstream.dead]
servers = ["{dead}"]
retries = 0
health = {{ interval = "1s", unhealthy_after = 1 }}

[[route]]
path_prefix = "/"
upstream = "hello"

[[route]]
path_prefix = "/dead"
upstream = "dead"
"#,
        tls = tls.display(),
        soon = soon.display(),
        hello = hello.addr,
    ))
}

/// A second gateway, killed during the test: "a gateway is down".
fn second_gateway(hello: &Hello) -> Gateway {
    Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{{{{port:web}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
        hello.addr
    ))
}

/// A little load until `stop`, 10 rounds a second: GET / and /dead/x on the plain
/// listener (200 and 502) and GET / over a new TLS connection (a handshake), HTTP/1.1
/// and HTTP/2 in turn. Returns how many of each status it saw.
fn load(
    gw: &Gateway,
    ca: &Path,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<String, u64>> {
    let (web, https) = (gw.port("web"), gw.addr("https"));
    let client = Client::new(ca);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut seen = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                round += 1;
                for (what, status) in [
                    ("/", raw_get(web, "hello", "/", "").0),
                    ("/dead", raw_get(web, "hello", "/dead/x", "").0),
                ] {
                    *seen.entry(format!("{what} {status}")).or_default() += 1;
                }
                let proto = [Proto::H1, Proto::H2][round % 2];
                let status = client.get(https, "localhost", "/", proto).await.status;
                *seen.entry(format!("tls {status}")).or_default() += 1;
            }
            seen
        })
    })
}

/// Grafana's interpolation of `$name` / `${name}` in `text`, with `$__rate_interval`.
fn interpolate(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = text.replace("$__rate_interval", RATE_INTERVAL);
    // Longest names first, so that no name is taken for the start of another.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &values[name])
            .replace(&format!("${name}"), &values[name]);
    }
    assert!(!out.contains('$'), "unknown variable in {text}");
    out
}

/// Resolves the dashboard's query variables in order, as Grafana does on load, through
/// Prometheus's label values API (`label_values(selector, label)`): each must list
/// something. Returns what each variable stands for in queries.
fn resolve_variables(prom: &Prometheus, dash: &serde_json::Value) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap().to_owned();
        let query = var["query"]
            .as_str()
            .or(var["query"]["query"].as_str())
            .unwrap();
        let query = interpolate(query, &values);
        let args = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let (selector, label) = args.rsplit_once(',').unwrap_or(("", args));
        let found = prom
            .label_values(label.trim(), selector.trim())
            .unwrap_or_else(|e| panic!("variable {name}: {query}: {e}"));
        assert!(!found.is_empty(), "variable {name} lists nothing: {query}");
        // "All" (what an import selects) is the variable's allValue; without "All",
        // Grafana selects the first value.
        let value = if var["includeAll"] == true {
            var["allValue"].as_str().unwrap().to_owned()
        } else {
            found[0].clone()
        };
        values.insert(name, value);
    }
    values
}

/// Evaluates `expr` and each of its selectors; panics with `what` unless every one
/// returns series. Returns the expression's own result.
fn returns_data(prom: &Prometheus, what: &str, expr: &str) -> Vec<serde_json::Value> {
    let result = prom
        .query(expr)
        .unwrap_or_else(|e| panic!("{what}: {expr}: {e}"));
    for selector in selectors(expr) {
        let series = prom
            .query(&selector)
            .unwrap_or_else(|e| panic!("{what}: {selector}: {e}"));
        assert!(
            !series.is_empty(),
            "{what}: no series for {selector} (in {expr})"
        );
    }
    result
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// The labels `{{label}}` in a legend format.
fn legend_labels(format: &str) -> Vec<&str> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim()))
        .collect()
}

#[test]
fn prometheus_scraping_gateways_gives_data_to_every_panel_and_alert() {
    let hello = Hello::spawn("h");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let certs = Certs::new();
    let gw = main_gateway(&certs, &hello, dead);
    let gw2 = second_gateway(&hello);
    let (admin, admin2) = (gw.addr("admin").to_string(), gw2.addr("admin").to_string());
    let rules = monitoring().join("gateway-alerts.yaml");
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: [\"{admin}\", \"{admin2}\"]\n",
        rules.display()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let load = load(&gw, &certs.ca(), stop.clone());

    // A refused reload: the config file is replaced (written beside it, renamed over it)
    // by invalid TOML.
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let temporary = gw.config_path().with_extension("toml.new");
    std::fs::write(
        &temporary,
        format!("{config}\n[[route]\npath_prefix = \"/\"\n"),
    )
    .unwrap();
    std::fs::rename(&temporary, gw.config_path()).unwrap();
    let failures = "gateway_config_reloads_total{result=\"failure\"}";
    wait_until(Duration::from_secs(20), "the bad config refused", || {
        (gw.metric(failures)? >= 1.0).then_some(())
    });
    // A gateway down: scraped while it ran, then killed.
    wait_until(SCRAPES, "both gateways scraped", || {
        let up = prom.query("up{job=\"gateway\"} == 1").ok()?;
        (up.len() == 2).then_some(())
    });
    drop(gw2);

    // Every alert but GatewayAbsent becomes pending or firing, for exactly these series.
    let soon = certs.path("soon").display().to_string();
    let expected: BTreeSet<(String, String)> = [
        ("GatewayDown", format!("instance={admin2}")),
        ("GatewayConfigReloadRefused", format!("instance={admin}")),
        ("GatewayHighErrorRatio", "route=/dead".to_owned()),
        (
            "GatewayUpstreamNoHealthyBackend",
            "upstream=dead".to_owned(),
        ),
        ("GatewayCertificateExpiringSoon", format!("cert={soon}")),
    ]
    .into_iter()
    .map(|(a, l)| (a.to_owned(), l))
    .collect();
    let label_of = |alert: &serde_json::Value| {
        let labels = &alert["labels"];
        let key = match labels["alertname"].as_str().unwrap() {
            "GatewayDown" | "GatewayConfigReloadRefused" => "instance",
            "GatewayHighErrorRatio" => "route",
            "GatewayUpstreamNoHealthyBackend" => "upstream",
            "GatewayCertificateExpiringSoon" => "cert",
            _ => "job",
        };
        (
            labels["alertname"].as_str().unwrap().to_owned(),
            format!("{key}={}", labels[key].as_str().unwrap_or("")),
        )
    };
    let start = std::time::Instant::now();
    loop {
        let alerts = prom.api("/api/v1/alerts", &[]).unwrap();
        let active: BTreeSet<_> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(label_of)
            .collect();
        if active == expected {
            break;
        }
        assert!(
            start.elapsed() < SCRAPES,
            "active alerts {active:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Enough scrapes of the running gateway for the dashboard's rate windows.
    let full = format!("count_over_time(up{{instance=\"{admin}\"}}[{RATE_INTERVAL}]) >= 5");
    wait_until(SCRAPES, "5 scrapes in a rate window", || {
        (!prom.query(&full).ok()?.is_empty()).then_some(())
    });

    // The alert rules, as Prometheus loaded them: all evaluated without error.
    let groups = prom.api("/api/v1/rules", &[]).unwrap();
    let mut loaded = BTreeSet::new();
    for rule in groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let name = rule["name"].as_str().unwrap();
        let expr = rule["query"].as_str().unwrap();
        assert_eq!(rule["health"], "ok", "{name}: {rule}");
        // GatewayAbsent's absent(...) is empty while gateways are scraped; returns_data
        // still requires the selector inside it to select series.
        let result = returns_data(&prom, &format!("alert {name}"), expr);
        if !expr.contains("absent(") {
            assert!(!result.is_empty(), "alert {name}: {expr} matches nothing");
        }
        loaded.insert(name.to_owned());
    }
    assert_eq!(loaded, BTreeSet::from(ALERTS.map(str::to_owned)));

    // Every panel of the dashboard, with the variables as an import leaves them (All).
    let dash = dashboard();
    let vars = resolve_variables(&prom, &dash);
    assert_eq!(vars["job"], "gateway");
    let mut exprs = 0;
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().unwrap() {
            let expr = interpolate(t["expr"].as_str().unwrap(), &vars);
            let result = returns_data(&prom, title, &expr);
            assert!(!result.is_empty(), "panel {title:?}: no data from {expr}");
            assert!(
                result.iter().any(|s| value(s).is_finite()),
                "panel {title:?}: only NaN/Inf from {expr}: {result:?}"
            );
            // Each label the legend names is on every series.
            for label in legend_labels(t["legendFormat"].as_str().unwrap_or("")) {
                for s in &result {
                    assert!(
                        s["metric"][label].is_string(),
                        "panel {title:?}: no {label} on {s} from {expr}"
                    );
                }
            }
            exprs += 1;
        }
    }
    assert!(exprs >= 20, "{exprs} expressions");

    stop.store(true, Ordering::Relaxed);
    let seen = load.join().unwrap();
    let statuses: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["/ 200", "/dead 502", "tls 200"]),
        "{seen:?}"
    );
    drop(prom);
}
