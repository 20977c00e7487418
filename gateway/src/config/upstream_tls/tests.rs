//! Unit tests for `protocol`, `tls` and `max_streams`.

use std::path::{Path, PathBuf};

use crate::config::tests::errors;
use crate::config::*;

fn upstream(table: &str) -> Upstream {
    let src =
        format!("[upstream.u]\n{table}\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"u\"\n");
    let config = from_str(Path::new("/etc/gw/gateway.toml"), &src).expect("valid");
    config.upstreams.into_iter().next().expect("one upstream")
}

#[test]
fn plain_http1_is_the_default() {
    let u = upstream("servers = [\"hello:80\"]");
    assert_eq!(u.protocol, Protocol::Http1);
    assert!(u.tls.is_none());
    assert_eq!(u.max_streams, 100);
}

#[test]
fn the_contract_example_parses() {
    let u = upstream(
        r#"servers = ["greeter:50051"]
protocol = "h2"
tls = { ca = "upstream-ca", server_name = "Greeter.Internal", client_cert = "/etc/gateway/upstream-client" }
max_streams = 50
health = { grpc = true, service = "greeter.v1.Greeter" }"#,
    );
    assert_eq!(u.protocol, Protocol::H2);
    assert_eq!(u.max_streams, 50);
    let tls = u.tls.expect("tls");
    assert_eq!(
        tls.ca.expect("ca").path,
        PathBuf::from("/etc/gw/upstream-ca")
    );
    assert_eq!(
        tls.client_cert.expect("client cert").path,
        PathBuf::from("/etc/gateway/upstream-client")
    );
    assert_eq!(
        tls.server_name,
        UpstreamServerName::Name("greeter.internal".into())
    );
    assert!(!tls.insecure_skip_verify);
    let health = u.health.expect("active checks");
    assert_eq!(health.grpc.as_deref(), Some("greeter.v1.Greeter"));
}

#[test]
fn h2_and_auto_imply_tls_verified_against_the_servers_name() {
    for protocol in ["h2", "auto"] {
        let u = upstream(&format!(
            "servers = [\"greeter:50051\", \"greeter:50052\"]\nprotocol = \"{protocol}\""
        ));
        let tls = u.tls.expect("implied TLS");
        assert!(tls.ca.is_none(), "the system's roots");
        assert_eq!(tls.server_name, UpstreamServerName::Name("greeter".into()));
    }
    let ips = upstream("servers = [\"10.0.0.1:443\"]\ntls = {}");
    assert_eq!(
        ips.tls.expect("tls").server_name,
        UpstreamServerName::BackendIp
    );
    let k8s = upstream(
        "kubernetes = { service = \"greeter\", namespace = \"shop\", port = 443 }\ntls = {}",
    );
    assert_eq!(
        k8s.tls.expect("tls").server_name,
        UpstreamServerName::Name("greeter.shop.svc".into())
    );
    let h2c = upstream("servers = [\"greeter:50051\"]\nprotocol = \"h2c\"");
    assert!(h2c.tls.is_none());
    let grpc_default =
        upstream("servers = [\"greeter:50051\"]\nprotocol = \"h2c\"\nhealth = { grpc = true }");
    assert_eq!(
        grpc_default.health.expect("checks").grpc.as_deref(),
        Some("")
    );
}

#[test]
fn bad_combinations_are_located() {
    let table = |body: &str| {
        format!("[upstream.u]\n{body}\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"u\"\n")
    };
    let cases = [
        (
            "servers = [\"g:1\"]\nprotocol = \"h3\"",
            "line 3, column 12|unknown variant `h3`, expected one of `http1`, `h2c`, `h2`, `auto`",
        ),
        (
            "servers = [\"g:1\"]\nprotocol = \"h2c\"\ntls = { ca = \"ca\" }",
            "/etc/gw/gateway.toml:4:7: tls h2c is HTTP/2 without TLS",
        ),
        (
            "servers = [\"g:1\"]\nmax_streams = 10",
            "/etc/gw/gateway.toml:3:15: max_streams applies to HTTP/2 backends",
        ),
        (
            "servers = [\"g:1\"]\nprotocol = \"h2c\"\nmax_streams = 0",
            "/etc/gw/gateway.toml:4:15: max_streams must be at least 1",
        ),
        (
            "servers = [\"g:1\"]\nhealth = { grpc = true }",
            "/etc/gw/gateway.toml:3:19: health.grpc gRPC runs over HTTP/2",
        ),
        (
            "servers = [\"a:1\", \"b:1\"]\ntls = {}",
            "/etc/gw/gateway.toml:3:7: tls the servers have different host names",
        ),
        (
            "servers = [\"g:1\"]\ntls = { server_name = \"not a name\" }",
            "/etc/gw/gateway.toml:3:23: tls.server_name must be a DNS name or an IP",
        ),
        (
            "servers = [\"g:1\"]\ntls = { ca = \"ca\", insecure_skip_verify = true }",
            "/etc/gw/gateway.toml:3:43: tls.insecure_skip_verify = true verifies nothing",
        ),
        (
            "servers = [\"g:1\"]\ntls = { verify = false }",
            "line 3, column 9|unknown field `verify`",
        ),
    ];
    for (body, want) in cases {
        let errs = errors(&table(body));
        let found = |e: &String| match want.split_once('|') {
            Some((at, what)) => e.contains(at) && e.contains(what),
            None => e.starts_with(want),
        };
        assert!(
            errs.iter().any(found),
            "{body}:\nwant {want}\ngot {errs:#?}"
        );
    }
}
