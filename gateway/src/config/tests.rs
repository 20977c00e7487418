//! Unit tests for parsing and validation.

use std::path::Path;

use super::*;

const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:9090"

[[listener]]
name = "https"
listen = "0.0.0.0:8443"
tls = { certs = ["tls", "/abs/other"] }

[[listener]]
name = "http"
listen = "0.0.0.0:8080"
redirect_to_https = true
redirect_port = 8443

[upstream.hello]
servers = ["hello:80", "10.0.0.1:8080", "[::1]:81"]

[[route]]
path_prefix = "/"
upstream = "hello"

[[route]]
host = "*.Example.com"
path_prefix = "/api"
upstream = "hello"
"#;

/// The rendered errors of `src`, which must not validate.
pub(super) fn errors(src: &str) -> Vec<String> {
    match from_str(Path::new("/etc/gw/gateway.toml"), src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(errs) => errs.iter().map(|e| crate::error_chain(e)).collect(),
    }
}

#[test]
fn parses_the_contract_example() {
    let cfg = from_str(Path::new("/etc/gw/gateway.toml"), GOOD).unwrap();
    let admin = cfg.admin.unwrap();
    assert_eq!(admin.addr, "127.0.0.1:9090".parse().unwrap());
    assert_eq!((admin.at.line, admin.at.column), (3, 10));
    assert_eq!(cfg.listeners.len(), 2);
    let ListenerKind::Https { certs, .. } = &cfg.listeners[0].kind else {
        panic!("first listener is https");
    };
    assert_eq!(
        certs[0].path,
        Path::new("/etc/gw/tls"),
        "relative to the config dir"
    );
    assert_eq!(certs[1].path, Path::new("/abs/other"));
    assert_eq!(
        cfg.listeners[1].kind,
        ListenerKind::RedirectToHttps { port: Some(8443) }
    );
    assert_eq!(
        cfg.upstreams[0].discovery,
        Discovery::Servers(vec![
            ServerAddr::Name {
                host: "hello".into(),
                port: 80
            },
            ServerAddr::Ip("10.0.0.1:8080".parse().unwrap()),
            ServerAddr::Ip("[::1]:81".parse().unwrap()),
        ])
    );
    assert_eq!(cfg.routes[0].path_prefix, "/");
    assert_eq!(
        cfg.routes[1].host,
        Some(HostMatch::Suffix(".example.com".into()))
    );
    assert!(cfg.server.threads >= 1);
}

#[test]
fn unknown_key_is_located() {
    let errs = errors("[[listener]]\nname = \"a\"\nlisten = \"0.0.0.0:1\"\nlisen = 3\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("/etc/gw/gateway.toml"), "{}", errs[0]);
    assert!(errs[0].contains("line 4, column 1"), "{}", errs[0]);
    assert!(errs[0].contains("unknown field `lisen`"), "{}", errs[0]);
}

#[test]
fn every_validation_error_is_reported_with_its_position() {
    let src = r#"
[[listener]]
name = "a"
listen = "0.0.0.0:8080"

[[listener]]
name = "a"
listen = "127.0.0.1:8080"

[upstream.empty]
servers = []

[upstream.bad]
servers = ["nohost", "x:99999", "::1:80"]

[[route]]
upstream = "missing"
"#;
    let errs = errors(src);
    let expect = [
        "gateway.toml:7:8: listener name \"a\" is already used at line 3",
        "gateway.toml:8:10: address 127.0.0.1:8080 is already used by listener \"a\"",
        "gateway.toml:11:11: upstream \"empty\" has no servers",
        "gateway.toml:14:12: \"nohost\" is not a server address",
        "gateway.toml:14:22: \"x:99999\" is not a server address",
        "gateway.toml:14:33: \"::1:80\" is not a server address",
        "gateway.toml:17:12: route names upstream \"missing\", which is not defined",
    ];
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for (e, want) in errs.iter().zip(expect) {
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn listener_options_are_checked() {
    let errs = errors(
        r#"
[[listener]]
name = "t"
listen = "0.0.0.0:1"
tls = { certs = [] }

[[listener]]
name = "u"
listen = "0.0.0.0:2"
redirect_port = 443

[[listener]]
name = "v"
listen = "0.0.0.0:3"
tls = { certs = ["x"] }
redirect_to_https = true

[[listener]]
name = "w"
listen = "localhost:4"
"#,
    );
    assert!(errs[0].contains(":5:7: tls.certs is empty"), "{errs:#?}");
    assert!(
        errs[1].contains(":10:17: redirect_port is set"),
        "{errs:#?}"
    );
    assert!(
        errs[2].contains(":16:21: redirect_to_https is for plain"),
        "{errs:#?}"
    );
    assert!(
        errs[3].contains(":20:10: \"localhost:4\" is not a listen address"),
        "{errs:#?}"
    );
}

#[test]
fn route_hosts_and_prefixes_are_checked() {
    let errs = errors(
        r#"
[upstream.u]
servers = ["a:1"]
[[route]]
host = "a.*.com"
upstream = "u"
[[route]]
path_prefix = "api"
upstream = "u"
[[route]]
host = "x.com:80"
upstream = "u"
[[route]]
upstream = "u"
[[route]]
path_prefix = "/"
upstream = "u"
"#,
    );
    assert!(
        errs[0].contains(":5:8: \"a.*.com\" is not a host"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains(":8:15: path_prefix \"api\" must start"),
        "{errs:#?}"
    );
    assert!(
        errs[2].contains("give the host without a port"),
        "{errs:#?}"
    );
    assert!(
        errs[3].contains(
            ":15:1: a route for the same host, path and conditions is already defined at line 13"
        ),
        "{errs:#?}"
    );
}

#[test]
fn merge_slashes_is_a_server_setting_on_by_default() {
    let cfg = from_str(Path::new("/etc/gw/gateway.toml"), GOOD).unwrap();
    assert!(cfg.listeners.iter().all(|l| l.edge.merge_slashes));
    let off = format!("[server]\nmerge_slashes = false\n{GOOD}");
    let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &off).unwrap();
    assert!(cfg.listeners.iter().all(|l| !l.edge.merge_slashes));
    let errs = errors("[server]\nmerge_slashes = \"yes\"\n");
    assert!(errs[0].contains("line 2, column 17"), "{errs:#?}");
}

#[test]
fn path_prefixes_that_can_never_match_are_refused() {
    let route = |prefix: &str| {
        format!("[upstream.u]\nservers = [\"a:1\"]\n[[route]]\npath_prefix = {prefix:?}\nupstream = \"u\"\n")
    };
    for (prefix, reason) in [
        ("/a//b", "repeated slashes are merged"),
        ("/a/./b", "'.' and '..' segments"),
        ("/a/../b", "'.' and '..' segments"),
        ("/%7Euser", "are decoded before matching"),
        ("/a%2fb", "upper case"),
        ("/a%zz", "two hex digits"),
        ("/a b", "RFC 3986 path characters"),
        ("/a|b", "RFC 3986 path characters"),
        ("/caf\u{e9}", "RFC 3986 path characters"),
    ] {
        let errs = errors(&route(prefix));
        assert!(
            errs[0].contains(&format!(":4:15: path_prefix {prefix:?} can never match: "))
                && errs[0].contains(reason),
            "{prefix}: {errs:#?}"
        );
    }
    for ok in [
        "/",
        "/a/",
        "/a/.",
        "/a/..",
        "/.well-known",
        "/a%2F",
        "/a%2",
        "/a%",
        "/~u",
        "/a;b=c@d:e",
    ] {
        assert!(from_str(Path::new("/g.toml"), &route(ok)).is_ok(), "{ok}");
    }
    let kept = format!("[server]\nmerge_slashes = false\n{}", route("/a//b"));
    assert!(from_str(Path::new("/g.toml"), &kept).is_ok());
}

#[test]
fn server_entries() {
    use upstream::parse_server;
    assert_eq!(
        parse_server("Hello.NS.svc:80"),
        Ok(ServerAddr::Name {
            host: "hello.ns.svc".into(),
            port: 80
        })
    );
    assert!(parse_server("hello").is_err());
    assert!(parse_server("hello:0").is_err());
    assert!(parse_server("he llo:80").is_err());
    assert!(parse_server("-x:80").is_err());
}

#[test]
fn poll_interval_is_a_duration_string() {
    let cfg = from_str(
        Path::new("/g.toml"),
        "[reload]\npoll_interval = \"2s 500ms\"\n",
    )
    .unwrap();
    assert_eq!(
        cfg.reload.poll_interval,
        std::time::Duration::from_millis(2500)
    );
    let cfg = from_str(Path::new("/g.toml"), "").unwrap();
    assert_eq!(cfg.reload.poll_interval, DEFAULT_POLL_INTERVAL);
    let errs = errors("[reload]\npoll_interval = \"often\"\n");
    assert!(
        errs[0].contains(":2:17: \"often\" is not a duration"),
        "{errs:#?}"
    );
    let errs = errors("[reload]\npoll_interval = \"1ms\"\n");
    assert!(errs[0].contains("must be at least 100ms"), "{errs:#?}");
    let Err(errs) = from_str(Path::new("/g.toml"), "[reload]\npoll_interval = \"1ms\"\n") else {
        panic!("1ms accepted");
    };
    let min = std::time::Duration::from_millis(100);
    assert!(
        matches!(&errs[0], ConfigError::BadDuration { problem: DurationProblem::TooShort { min: m }, .. } if *m == min),
        "{errs:#?}"
    );
}

#[test]
fn upstream_policies_parse_with_defaults() {
    let cfg = from_str(
        Path::new("/g.toml"),
        r#"
[dns]
nameservers = ["127.0.0.1:5353"]
max_ttl = "10s"
[upstream.a]
servers = ["a:80"]
[upstream.b]
kubernetes = { service = "hello", port = "http" }
balance = "consistent_hash"
hash_key = "header:X-User"
health = { path = "/healthz", interval = "2s", unhealthy_after = 1 }
retries = 0
connect_timeout = "250ms"
"#,
    )
    .unwrap();
    assert_eq!(cfg.dns.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(
        (cfg.dns.min_ttl, cfg.dns.max_ttl),
        (DEFAULT_MIN_TTL, std::time::Duration::from_secs(10))
    );
    let a = &cfg.upstreams[0];
    assert_eq!(a.balance, Balance::RoundRobin);
    assert_eq!((a.retries, a.health.is_none()), (DEFAULT_RETRIES, true));
    assert_eq!(a.passive.unhealthy_after, DEFAULT_UNHEALTHY_AFTER);
    assert_eq!(a.timeouts.read, DEFAULT_READ_TIMEOUT);
    let b = &cfg.upstreams[1];
    assert_eq!(
        b.discovery,
        Discovery::Kubernetes(KubernetesService {
            service: "hello".into(),
            namespace: None,
            port: ServicePort::Name("http".into())
        })
    );
    assert_eq!(
        b.balance,
        Balance::ConsistentHash(HashKey::Header("x-user".into()))
    );
    let h = b.health.as_ref().unwrap();
    assert_eq!(
        (
            h.path.as_str(),
            h.interval,
            h.healthy_after,
            h.unhealthy_after
        ),
        ("/healthz", std::time::Duration::from_secs(2), 2, 1)
    );
    assert_eq!(b.passive.unhealthy_after, 1);
    assert_eq!(
        (b.retries, b.timeouts.connect),
        (0, std::time::Duration::from_millis(250))
    );
}

#[test]
fn upstream_policy_errors_are_located() {
    let errs = errors(
        r#"[upstream.a]
servers = ["a:80"]
kubernetes = { service = "a", port = 80 }
[upstream.b]
servers = ["b:80"]
balance = "consistent_hash"
[upstream.c]
servers = ["c:80"]
hash_key = "path"
[upstream.d]
servers = ["d:80"]
balance = "consistent_hash"
hash_key = "body"
[upstream.e]
servers = ["e:80"]
health = { path = "x", unhealthy_after = 0 }
read_timeout = "soon"
[upstream.f]
kubernetes = { service = "Hello", port = 0 }
"#,
    );
    let expect = [
        ":1:1: upstream \"a\" needs exactly one of `servers` and `kubernetes`",
        ":6:11: balance = \"consistent_hash\" needs hash_key",
        ":9:12: hash_key is only used with balance",
        ":13:12: \"body\" is not a hash key",
        ":16:19: health.path must start with '/'",
        ":16:42: health.unhealthy_after must be at least 1",
        ":17:16: \"soon\" is not a duration",
        ":19:26: kubernetes.service must be a lower-case DNS label",
        ":19:42: kubernetes.port must be a port name",
    ];
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for (e, want) in errs.iter().zip(expect) {
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    let errs = errors("[upstream.a]\nbalance = \"fastest\"\nservers = [\"a:1\"]\n");
    assert!(
        errs[0].contains("line 2, column 11") && errs[0].contains("unknown variant `fastest`"),
        "{errs:#?}"
    );
}

#[test]
fn admin_may_not_share_a_listener_address_and_durations_are_bounded() {
    let errs = errors(
        "[admin]\nlisten = \"127.0.0.1:8443\"\n[[listener]]\nname = \"https\"\nlisten = \"0.0.0.0:8443\"\n[reload]\npoll_interval = \"300000000000y\"\n",
    );
    assert!(
        errs[0].contains(":2:10: address 127.0.0.1:8443 is already used by listener \"https\""),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains(":7:17:") && errs[1].contains("must be at most 7days"),
        "{errs:#?}"
    );
}

#[test]
fn zero_threads_rejected() {
    let errs = errors("[server]\nthreads = 0\n");
    assert!(
        errs[0].contains(":2:11: threads must be at least 1"),
        "{errs:#?}"
    );
}

/// The defaults the README's reference tables give, as literal values: a default changed
/// in the code (or in the README) without the other fails here.
#[test]
fn every_default_is_the_one_the_readme_gives() {
    use std::time::Duration;
    let s = Duration::from_secs;
    let cfg = from_str(
        Path::new("/g.toml"),
        "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[upstream.u]\nservers = [\"a:1\"]\n[upstream.h]\nservers = [\"a:1\"]\nhealth = {}\n[[route]]\nupstream = \"u\"\n",
    )
    .unwrap();
    assert!(cfg.admin.is_none(), "no admin listener without [admin]");
    assert_eq!(
        (cfg.server.shutdown_delay, cfg.server.drain_timeout),
        (s(5), s(20))
    );
    assert_eq!(cfg.reload.poll_interval, s(10));
    assert!(cfg.dns.nameservers.is_empty(), "those of /etc/resolv.conf");
    assert_eq!((cfg.dns.min_ttl, cfg.dns.max_ttl), (s(1), s(30)));
    let l = &cfg.listeners[0];
    assert_eq!(l.kind, ListenerKind::Http, "no tls, no redirect");
    let e = &l.edge;
    assert_eq!(e.max_connections, 10_000);
    assert_eq!((e.max_header_size, e.max_uri_length), (32 * 1024, 8 * 1024));
    assert_eq!(
        (
            e.header_timeout,
            e.keepalive_timeout,
            e.tls_handshake_timeout
        ),
        (s(10), s(60), s(10))
    );
    assert_eq!(e.h2_max_concurrent_streams, 100);
    assert!(e.trusted_proxies.is_empty() && e.hsts.is_none() && !e.strict_sni);
    assert!(e.merge_slashes);
    let upstream = |name: &str| cfg.upstreams.iter().find(|u| u.name == name).unwrap();
    let u = upstream("u");
    assert_eq!(u.balance, Balance::RoundRobin);
    assert!(u.health.is_none(), "no active checks");
    assert_eq!((u.passive.unhealthy_after, u.passive.cooldown), (3, s(10)));
    assert_eq!(u.retries, 2);
    let t = &u.timeouts;
    assert_eq!(
        (t.connect, t.read, t.write, t.idle),
        (s(2), s(60), s(60), s(60))
    );
    let h = upstream("h").health.as_ref().unwrap();
    assert_eq!(
        (
            h.path.as_str(),
            h.interval,
            h.timeout,
            h.healthy_after,
            h.unhealthy_after
        ),
        ("/", s(5), s(1), 2, 3)
    );
    let passive = &upstream("h").passive;
    assert_eq!((passive.unhealthy_after, passive.cooldown), (3, s(10)));
    let r = &cfg.routes[0];
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.host, None, "any host");
    assert_eq!(r.max_body_size, 1024 * 1024);
    assert!(!r.websocket);
}
