//! Forward auth (nginx's `auth_request`) against a real auth service process (`authsvc`,
//! answering by the `session` cookie as oauth2-proxy does): 2xx with the listed fields
//! copied onto the request (a client's forged copies never reach hello), 401 with and
//! without `signin`, 403, 500, a slow service and a stopped one (both 503); what the
//! auth service is sent (the original method, URI and host, the listed fields, no body).

use std::time::{Duration, Instant};

use e2e::{curl, AuthService, Curled, Gateway, Hello};

fn gateway(hello: &Hello, forward: &str) -> Gateway {
    Gateway::start(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.hello]\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ forward = {{ {forward} }} }}\n",
        hello.addr
    ))
}

fn url_form(auth: &AuthService, extra: &str) -> String {
    format!(
        "url = \"http://{}/oauth2/auth\", request_headers = [\"cookie\"], response_headers = [\"x-auth-request-user\", \"x-auth-request-email\"]{extra}",
        auth.addr
    )
}

fn get(gw: &Gateway, session: Option<&str>, extra: &[&str]) -> Curled {
    let url = format!(
        "http://127.0.0.1:{}/shop/cart?echo_headers=1&x=1",
        gw.port("http")
    );
    let cookie = session.map(|s| format!("session={s}"));
    let mut args = vec!["-D", "-", "-H", "Host: shop.test"];
    if let Some(cookie) = &cookie {
        args.extend(["-b", cookie]);
    }
    args.extend_from_slice(extra);
    curl("127.0.0.1", &url, &args)
}

#[test]
fn a_2xx_lets_the_request_through_with_the_listed_fields() {
    let hello = Hello::spawn("h");
    let auth = AuthService::spawn(&[]);
    let gw = gateway(&hello, &url_form(&auth, ""));
    let forged = [
        "-H",
        "X-Auth-Request-User: admin",
        "-H",
        "X-Auth-Request-Email: admin@evil.test",
    ];
    let got = get(&gw, Some("ok-ann"), &forged);
    assert_eq!(got.status, "200", "{}", got.body);
    assert_eq!(
        got.echoed("x-auth-request-user"),
        Some("ann"),
        "{}",
        got.body
    );
    assert_eq!(got.echoed("x-auth-request-email"), Some("ann@example.test"));
    assert!(
        !got.body.contains("admin"),
        "a forged field reached hello: {}",
        got.body
    );
    assert!(
        got.body.contains("cookie: session=ok-ann"),
        "cookies reach the backend: {}",
        got.body
    );
    // What the auth service was asked: a GET with the original request's facts, the
    // listed fields, and no body even for a POST with one.
    let posted = get(
        &gw,
        Some("ok-ann"),
        &["-X", "POST", "--data-binary", "secret body"],
    );
    assert_eq!(posted.status, "200", "{}", posted.body);
    let seen = auth.last();
    for line in [
        "GET /oauth2/auth\n",
        "x-forwarded-method: POST\n",
        "x-forwarded-uri: /shop/cart?echo_headers=1&x=1\n",
        "x-forwarded-host: shop.test\n",
        "cookie: session=ok-ann\n",
        "body-bytes: 0\n",
    ] {
        assert!(seen.contains(line), "{line:?} not in:\n{seen}");
    }
    assert!(!seen.contains("x-auth-request-user"), "{seen}");
}

#[test]
fn refusals_become_401_302_403_or_503() {
    let hello = Hello::spawn("h");
    let auth = AuthService::spawn(&[]);
    let gw = gateway(&hello, &url_form(&auth, ""));
    let got = get(&gw, None, &[]);
    assert_eq!(got.status, "401", "{}", got.body);
    assert!(
        got.body.contains("www-authenticate: Bearer realm=\"test\""),
        "{}",
        got.body
    );
    assert_eq!(get(&gw, Some("forbidden"), &[]).status, "403");
    assert_eq!(get(&gw, Some("broken"), &[]).status, "503", "fail closed");
    assert_eq!(hello.requests(), 0, "nothing refused reached hello");

    let signin = ", signin = \"https://auth.example.test/oauth2/start?rd=$request_url\"";
    let gw = gateway(&hello, &url_form(&auth, signin));
    let got = get(&gw, None, &[]);
    assert_eq!(got.status, "302", "{}", got.body);
    let want = "location: https://auth.example.test/oauth2/start?rd=http%3A%2F%2Fshop.test%2Fshop%2Fcart%3Fecho_headers%3D1%26x%3D1";
    assert!(
        got.body
            .to_ascii_lowercase()
            .contains(&want.to_ascii_lowercase()),
        "{}",
        got.body
    );
}

#[test]
fn a_slow_or_stopped_auth_service_fails_closed() {
    let hello = Hello::spawn("h");
    let slow = AuthService::spawn(&["--delay-ms", "5000"]);
    let gw = gateway(&hello, &url_form(&slow, ", timeout = \"300ms\""));
    let started = Instant::now();
    assert_eq!(get(&gw, Some("ok-ann"), &[]).status, "503");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let mut down = AuthService::spawn(&[]);
    let gw = gateway(&hello, &url_form(&down, ""));
    assert_eq!(get(&gw, Some("ok-ann"), &[]).status, "200");
    down.stop();
    assert_eq!(get(&gw, Some("ok-ann"), &[]).status, "503");
    assert!(
        gw.log().contains("forward auth failed: 503"),
        "{}",
        gw.log()
    );
    assert_eq!(hello.requests(), 1);
}

#[test]
fn the_auth_service_may_be_an_upstream_of_the_config() {
    let hello = Hello::spawn("h");
    let auth = AuthService::spawn(&[]);
    let gw = Gateway::start(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.hello]\nservers = [\"{}\"]\n\n[upstream.oauth2]\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ forward = {{ upstream = \"oauth2\", path = \"/oauth2/auth\", request_headers = [\"cookie\"] }} }}\n",
        hello.addr, auth.addr
    ));
    assert_eq!(get(&gw, Some("ok-bo"), &[]).status, "200");
    assert_eq!(get(&gw, Some("nobody"), &[]).status, "401");
    assert!(
        auth.last().starts_with("GET /oauth2/auth\n"),
        "{}",
        auth.last()
    );
}

#[test]
fn refusals_hold_over_https_on_http1_and_http2() {
    let hello = Hello::spawn("h");
    let auth = AuthService::spawn(&[]);
    let certs = e2e::Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let gw = Gateway::start(&format!(
        "{}\n[upstream.hello]\nservers = [\"{}\"]\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ forward = {{ {} }} }}\n",
        e2e::https_listener(&tls),
        hello.addr,
        url_form(&auth, ", signin = \"https://auth.example.test/start?rd=$request_url\"")
    ));
    let url = format!("https://127.0.0.1:{}/x?echo_headers=1", gw.port("https"));
    for version in ["--http1.1", "--http2"] {
        let to_signin = curl("127.0.0.1", &url, &[version, "-D", "-"]);
        assert_eq!(to_signin.status, "302", "{version}: {}", to_signin.body);
        assert!(
            to_signin
                .body
                .to_ascii_lowercase()
                .contains("location: https://auth.example.test/start?rd=https%3a%2f%2f127.0.0.1"),
            "{version}: {}",
            to_signin.body
        );
        let forbidden = curl("127.0.0.1", &url, &[version, "-b", "session=forbidden"]);
        assert_eq!(forbidden.status, "403", "{version}");
        let broken = curl("127.0.0.1", &url, &[version, "-b", "session=broken"]);
        assert_eq!(broken.status, "503", "{version}");
        let admitted = curl("127.0.0.1", &url, &[version, "-b", "session=ok-ann"]);
        assert_eq!(admitted.status, "200", "{version}: {}", admitted.body);
        assert_eq!(
            admitted.echoed("x-auth-request-user"),
            Some("ann"),
            "{version}"
        );
    }
}
