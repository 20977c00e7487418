//! JWT auth on a route: tokens made by PyJWT (RS256/384/512, PS256/384/512, ES256/384,
//! EdDSA) and signed by the openssl command (RS256, ES256, EdDSA) pass, with claims sent on as fields (a client's forged copies
//! never reach hello) and `Authorization` unchanged; expired, not-yet-valid, wrong
//! audience or issuer, unknown `kid`, `alg: none`, HMAC and tampered tokens get a 401
//! with a Bearer `invalid_token` challenge. Keys from a file (changed live, the way a
//! Secret is) and from a URL served by a real web server: a rotated key is fetched at
//! once, and the last good keys keep serving once the server is gone.

use std::path::Path;
use std::time::Duration;

use e2e::jwt::{pyjwt_tokens, OpensslKeys, StaticServer};
use e2e::{curl, wait_until, Certs, Curled, Gateway, Hello, Volume};
use serde_json::json;

const ISSUER: &str = "https://idp.test";

fn gateway(hello: &Hello, jwks: &str) -> Gateway {
    gateway_with_env(hello, jwks, &[], "")
}

/// With `env` for the gateway and `extra` lines on the route.
fn gateway_with_env(hello: &Hello, jwks: &str, env: &[(&str, &str)], extra: &str) -> Gateway {
    Gateway::start_with_env(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.hello]\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ jwt = {{ jwks = \"{jwks}\", issuer = \"{ISSUER}\", audiences = [\"shop\"], claims_to_headers = {{ sub = \"x-user\" }}, leeway = \"5s\" }} }}\n{extra}\n",
        hello.addr
    ), env)
}

fn get(gw: &Gateway, token: Option<&str>) -> Curled {
    let url = format!("http://127.0.0.1:{}/?echo_headers=1", gw.port("http"));
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-D", "-", "-H", "x-user: forged"];
    if let Some(auth) = &auth {
        args.extend(["-H", auth]);
    }
    curl("127.0.0.1", &url, &args)
}

/// Passes as `sub`, with the token reaching hello unchanged and no forged `x-user`.
fn assert_passes(got: &Curled, sub: &str, token: &str) {
    assert_eq!(got.status, "200", "{}", got.body);
    assert_eq!(got.echoed("x-user"), Some(sub), "{}", got.body);
    assert!(!got.body.contains("forged"), "{}", got.body);
    assert!(
        got.body.contains(&format!("authorization: Bearer {token}")),
        "{}",
        got.body
    );
}

fn assert_refused(got: &Curled, case: &str, description: &str) {
    assert_eq!(got.status, "401", "{case}: {}", got.body);
    let want = format!(
        "www-authenticate: Bearer error=\"invalid_token\", error_description=\"{description}\""
    );
    assert!(
        got.body
            .to_ascii_lowercase()
            .contains(&want.to_ascii_lowercase()),
        "{case}: {}",
        got.body
    );
    assert!(
        got.body.ends_with(r#"{"error":"unauthorized"}"#),
        "{case}: {}",
        got.body
    );
}

#[test]
fn pyjwt_tokens_pass_or_are_refused_for_the_right_reason() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(dir.path(), ISSUER, "shop");
    let gw = gateway(&hello, &dir.path().join("jwks.json").display().to_string());
    let token = |name: &str| tokens[name].as_str().expect("a token").to_owned();
    let algorithms = [
        "rs256", "rs384", "rs512", "ps256", "ps384", "ps512", "es256", "es384", "eddsa",
    ];
    for name in algorithms {
        assert_passes(&get(&gw, Some(&token(name))), "py-ann", &token(name));
    }
    let refused = [
        ("expired", "token expired"),
        ("not_yet", "token not yet valid"),
        ("wrong_audience", "wrong audience"),
        ("wrong_issuer", "wrong issuer"),
        ("unknown_kid", "unknown signing key"),
        ("alg_none", "algorithm not accepted"),
        ("hs256", "algorithm not accepted"),
        ("tampered", "bad signature"),
    ];
    for (name, description) in refused {
        assert_refused(&get(&gw, Some(&token(name))), name, description);
    }
    assert_refused(&get(&gw, None), "no token", "no bearer token");
    // Only the passing requests reached hello.
    assert_eq!(hello.requests(), algorithms.len() as u64);
}

#[test]
fn openssl_signed_tokens_pass_and_a_changed_file_applies_live() {
    let hello = Hello::spawn("h");
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let keys = OpensslKeys::new(keys_dir.path());
    let secret = tempfile::tempdir().expect("tempdir");
    let mut vol = Volume::create(secret.path(), &[("jwks.json", keys.jwks().as_bytes())]);
    let gw = gateway(&hello, &vol.dir().join("jwks.json").display().to_string());
    let claims = |sub: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({"sub": sub, "iss": ISSUER, "aud": ["shop"], "exp": now + 600})
    };
    for alg in ["RS256", "ES256", "EdDSA"] {
        let token = keys.sign(alg, &claims(alg));
        assert_passes(&get(&gw, Some(&token)), alg, &token);
    }
    // The Secret is updated to PyJWT's keys: openssl's tokens stop passing, PyJWT's start.
    let py_dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(py_dir.path(), ISSUER, "shop");
    let py_jwks = std::fs::read(py_dir.path().join("jwks.json")).expect("jwks.json");
    let es256 = keys.sign("ES256", &claims("ES256"));
    vol.update(&[("jwks.json", &py_jwks)]);
    let py = tokens["es256"].as_str().expect("token");
    wait_until(
        Duration::from_secs(20),
        "the new JWKS file to apply",
        || (get(&gw, Some(py)).status == "200").then_some(()),
    );
    assert_refused(&get(&gw, Some(&es256)), "old key", "unknown signing key");
    // A broken file: the last good keys keep serving, and the log says where.
    vol.update(&[("jwks.json", b"{\"keys\": 7}")]);
    wait_until(
        Duration::from_secs(20),
        "the bad JWKS to be reported",
        || gw.log().contains("bad JWKS file").then_some(()),
    );
    assert_passes(&get(&gw, Some(py)), "py-ann", py);
}

#[test]
fn a_jwks_url_is_fetched_refetched_for_a_new_kid_and_outlives_its_server() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(dir.path(), ISSUER, "shop");
    let token = |name: &str| tokens[name].as_str().expect("a token").to_owned();
    let mut server = StaticServer::serve(dir.path());
    let url = format!("http://127.0.0.1:{}/jwks.json", server.port);
    let gw = gateway(&hello, &url);
    // The first request waits for the first fetch rather than failing.
    assert_passes(&get(&gw, Some(&token("es256"))), "py-ann", &token("es256"));
    assert_refused(
        &get(&gw, Some(&token("rotated"))),
        "not yet rotated",
        "unknown signing key",
    );
    // The IdP rotates: a token with the new kid makes the gateway fetch again.
    std::fs::copy(
        dir.path().join("jwks-rotated.json"),
        dir.path().join("jwks.json"),
    )
    .expect("rotate");
    wait_until(
        Duration::from_secs(20),
        "the rotated key to be fetched",
        || (get(&gw, Some(&token("rotated"))).status == "200").then_some(()),
    );
    // The IdP goes away; a token naming an unknown kid makes the gateway try it (at
    // most every few seconds) and fail.
    server.stop();
    wait_until(Duration::from_secs(30), "a failed JWKS fetch", || {
        assert_refused(
            &get(&gw, Some(&token("unknown_kid"))),
            "unknown",
            "unknown signing key",
        );
        gw.log().contains("JWKS fetch failed").then_some(())
    });
    // Tokens never seen before still pass on the last good keys.
    assert_passes(
        &get(&gw, Some(&token("es256_other"))),
        "py-bo",
        &token("es256_other"),
    );
    assert_passes(
        &get(&gw, Some(&token("rotated_other"))),
        "py-cy",
        &token("rotated_other"),
    );
}

#[test]
fn a_jwks_over_https_is_verified_and_kept_across_reloads() {
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let idp = certs.server("idp", &["127.0.0.1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(dir.path(), ISSUER, "shop");
    let token = |name: &str| tokens[name].as_str().expect("a token").to_owned();
    let mut server = StaticServer::serve_tls(dir.path(), &idp);
    let url = format!("https://127.0.0.1:{}/jwks.json", server.port);
    // The system's roots do not know the dev CA: no keys, so every token is refused.
    let untrusting = gateway(&hello, &url);
    assert_refused(
        &get(&untrusting, Some(&token("es256"))),
        "untrusted IdP",
        "no signing keys",
    );
    assert!(
        untrusting.log().contains("JWKS fetch failed"),
        "{}",
        untrusting.log()
    );
    drop(untrusting);
    // SSL_CERT_FILE names the roots to trust instead.
    let ca = certs.ca().display().to_string();
    let gw = gateway_with_env(&hello, &url, &[("SSL_CERT_FILE", &ca)], "");
    assert_passes(&get(&gw, Some(&token("es256"))), "py-ann", &token("es256"));
    // The IdP goes away, then the config changes: the fetched keys stay.
    server.stop();
    let config = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(gw.config_path(), format!("{config}\n# changed\n")).expect("write config");
    wait_until(Duration::from_secs(20), "the reload", || {
        gw.log()
            .contains("config and certificates reloaded")
            .then_some(())
    });
    assert_passes(
        &get(&gw, Some(&token("es256_other"))),
        "py-bo",
        &token("es256_other"),
    );
}

#[test]
fn refusals_and_claims_hold_over_https_on_http1_and_http2() {
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(dir.path(), ISSUER, "shop");
    let token = |name: &str| tokens[name].as_str().expect("a token").to_owned();
    let gw = Gateway::start(&format!(
        "{}\n[upstream.hello]\nservers = [\"{}\"]\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n\
         auth = {{ jwt = {{ jwks = \"{}\", issuer = \"{ISSUER}\", audiences = [\"shop\"], claims_to_headers = {{ sub = \"x-user\" }} }} }}\n",
        e2e::https_listener(&tls),
        hello.addr,
        dir.path().join("jwks.json").display()
    ));
    let url = format!("https://127.0.0.1:{}/?echo_headers=1", gw.port("https"));
    for version in ["--http1.1", "--http2"] {
        let get = |token: Option<&str>| {
            let auth = token.map(|t| format!("Authorization: Bearer {t}"));
            let mut args = vec![version, "-D", "-", "-H", "x-user: forged"];
            if let Some(auth) = &auth {
                args.extend(["-H", auth]);
            }
            curl("127.0.0.1", &url, &args)
        };
        assert_refused(&get(None), version, "no bearer token");
        assert_refused(&get(Some(&token("expired"))), version, "token expired");
        assert_refused(
            &get(Some(&token("alg_none"))),
            version,
            "algorithm not accepted",
        );
        assert_passes(&get(Some(&token("es256"))), "py-ann", &token("es256"));
    }
}

#[test]
fn a_rate_limit_keyed_by_a_claim_counts_each_verified_user() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = pyjwt_tokens(dir.path(), ISSUER, "shop");
    let token = |name: &str| tokens[name].as_str().expect("a token").to_owned();
    let jwks = dir.path().join("jwks.json").display().to_string();
    let limit = "rate_limit = { requests = 1, per = \"1m\", burst = 0, key = \"header:x-user\" }";
    let gw = gateway_with_env(&hello, &jwks, &[], limit);
    // Every request also sends `x-user: forged`: the key is the claim, not that.
    for _ in 0..3 {
        assert_eq!(
            get(&gw, Some(&token("expired"))).status,
            "401",
            "refused: not counted"
        );
    }
    assert_eq!(get(&gw, Some(&token("es256"))).status, "200");
    assert_eq!(
        get(&gw, Some(&token("es256"))).status,
        "429",
        "py-ann's one request used"
    );
    assert_eq!(
        get(&gw, Some(&token("es256_other"))).status,
        "200",
        "py-bo has its own"
    );
}

#[test]
fn a_bad_jwks_file_stops_a_start_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        r#"{"keys": [{"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"}]}"#,
    )
    .expect("write");
    let out = Gateway::run_expecting_exit(&jwt_only(&jwks));
    assert!(out.code.is_some_and(|c| c != 0), "{out:?}");
    let text = &out.stderr;
    assert!(text.contains(":10:25: bad JWKS file"), "{text}");
    assert!(text.contains("RSA key shorter than 2048 bits"), "{text}");
    assert!(text.contains("kid \"short\""), "{text}");
}

fn jwt_only(jwks: &Path) -> String {
    format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n\
         [[route]]\nupstream = \"u\"\nauth = {{ jwt = {{ jwks = \"{}\" }} }}\n",
        jwks.display()
    )
}
