//! Tokens signed here with ring (ES256, EdDSA) and by PyJWT (RS256, PS256: fixed ones
//! in `jwks/tests.rs`), checked by a route's JWT auth.

use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::*;
use crate::config::{JwksSource, Location};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 key (kid "ec-1") and an Ed25519 key (kid "ed-1"), with their JWKS.
struct Signer {
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self { ec, ed, rng }
    }

    fn jwks(&self) -> KeySet {
        let point = self.ec.public_key().as_ref();
        let json = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(self.ed.public_key().as_ref())},
        ]});
        KeySet::parse(json.to_string().as_bytes()).unwrap()
    }

    fn token(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match header["alg"].as_str() {
            Some("EdDSA") => self.ed.sign(signed.as_bytes()).as_ref().to_vec(),
            _ => self
                .ec
                .sign(&self.rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        format!("{signed}.{}", b64(&sig))
    }

    fn es256(&self, claims: serde_json::Value) -> String {
        self.token(json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}), claims)
    }
}

fn auth(keys: KeySet) -> Jwt {
    let config = JwtAuth {
        jwks: JwksSource::File("jwks.json".into()),
        at: Location {
            file: "gateway.toml".into(),
            line: 1,
            column: 1,
        },
        issuer: Some("https://idp.test".into()),
        audiences: vec!["shop".into(), "admin".into()],
        claims_to_headers: vec![
            ("sub".into(), HeaderName::from_static("x-user")),
            ("org.team".into(), HeaderName::from_static("x-team")),
            ("roles".into(), HeaderName::from_static("x-roles")),
        ],
        leeway: Duration::from_secs(30),
    };
    Jwt::new(config, file_keys(keys))
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    h
}

fn now() -> i64 {
    crate::reload::unix_now()
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "ann", "iss": "https://idp.test", "aud": ["other", "shop"], "exp": now() + 600,
           "org": {"team": "blue"}, "roles": ["a", "b"]})
}

#[tokio::test]
async fn a_valid_token_passes_and_its_claims_become_fields() {
    let s = Signer::new();
    let jwt = auth(s.jwks());
    let headers = bearer_headers(&s.es256(good_claims()));
    let verified = jwt.check(&headers).await.unwrap();
    let mut req = HeaderMap::new();
    req.insert("x-user", HeaderValue::from_static("forged"));
    req.insert("x-team", HeaderValue::from_static("forged"));
    jwt.apply(&verified, &mut req);
    assert_eq!(req.get("x-user").unwrap(), "ann");
    assert_eq!(req.get("x-team").unwrap(), "blue", "a nested claim");
    assert_eq!(req.get("x-roles").unwrap(), "a,b", "an array, joined");
    assert_eq!(
        req.get_all("x-user").iter().count(),
        1,
        "the client's copy removed"
    );
    // Again: from the cache (the same Arc).
    let again = jwt.check(&headers).await.unwrap();
    assert!(Arc::ptr_eq(&verified, &again));
    let ed = s.token(json!({"alg": "EdDSA", "kid": "ed-1"}), good_claims());
    assert!(jwt.check(&bearer_headers(&ed)).await.is_ok(), "Ed25519");
    let mut lower = HeaderMap::new();
    let value = format!("bearer {}", s.es256(good_claims()));
    lower.insert(AUTHORIZATION, HeaderValue::try_from(value).unwrap());
    assert!(
        jwt.check(&lower).await.is_ok(),
        "the scheme is case-insensitive"
    );
}

#[tokio::test]
async fn claims_that_do_not_hold_are_refused() {
    let s = Signer::new();
    let jwt = auth(s.jwks());
    let with = |patch: serde_json::Value| {
        let mut c = good_claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        s.es256(c)
    };
    let cases = [
        (with(json!({"exp": now() - 60})), Refusal::Expired),
        (with(json!({"nbf": now() + 600})), Refusal::NotYetValid),
        (with(json!({"iss": "https://evil.test"})), Refusal::Issuer),
        (with(json!({"aud": "other"})), Refusal::Audience),
        (with(json!({"aud": null})), Refusal::Audience),
        (with(json!({"exp": "tomorrow"})), Refusal::Malformed),
    ];
    for (token, want) in cases {
        assert_eq!(jwt.check(&bearer_headers(&token)).await.unwrap_err(), want);
    }
    // Within the leeway (30 s): taken.
    assert!(jwt
        .check(&bearer_headers(&with(json!({"exp": now() - 10}))))
        .await
        .is_ok());
    assert!(jwt
        .check(&bearer_headers(&with(json!({"nbf": now() + 10}))))
        .await
        .is_ok());
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let s = Signer::new();
    let jwt = auth(s.jwks());
    let good = s.es256(good_claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut claims = good_claims();
    claims["sub"] = json!("root");
    let tampered = format!("{head}.{}.{sig}", b64(claims.to_string().as_bytes()));
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"ec-1"}"#),
        b64(good_claims().to_string().as_bytes())
    );
    let hs256 = s.token(json!({"alg": "HS256", "kid": "ec-1"}), good_claims());
    let unknown = s.token(json!({"alg": "ES256", "kid": "ec-9"}), good_claims());
    let wrong_key = s.token(json!({"alg": "ES256", "kid": "ed-1"}), good_claims());
    let crit = s.token(
        json!({"alg": "ES256", "kid": "ec-1", "crit": ["b64"], "b64": false}),
        good_claims(),
    );
    let cases = [
        (tampered, Refusal::Signature),
        (none, Refusal::Algorithm),
        (hs256, Refusal::Algorithm),
        (unknown, Refusal::UnknownKey),
        (wrong_key, Refusal::Signature),
        (crit, Refusal::Malformed),
        ("a.b".to_owned(), Refusal::Malformed),
        ("!!.!!.!!".to_owned(), Refusal::Malformed),
    ];
    for (token, want) in cases {
        assert_eq!(
            jwt.check(&bearer_headers(&token)).await.unwrap_err(),
            want,
            "{token}"
        );
    }
    assert_eq!(
        jwt.check(&HeaderMap::new()).await.unwrap_err(),
        Refusal::Missing
    );
    let mut basic = HeaderMap::new();
    basic.insert(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
    assert_eq!(jwt.check(&basic).await.unwrap_err(), Refusal::Missing);
    let challenge = Refusal::Expired.challenge();
    assert!(challenge
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn a_token_without_exp_passes_and_numbers_become_json() {
    let s = Signer::new();
    let mut jwt = auth(s.jwks());
    jwt.config.claims_to_headers = vec![
        ("uid".into(), HeaderName::from_static("x-uid")),
        ("admin".into(), HeaderName::from_static("x-admin")),
        ("org".into(), HeaderName::from_static("x-org")),
        ("missing".into(), HeaderName::from_static("x-missing")),
    ];
    let token = s.es256(json!({"iss": "https://idp.test", "aud": "shop", "uid": 42, "admin": true, "org": {"team": "blue"}}));
    let verified = jwt.check(&bearer_headers(&token)).await.unwrap();
    let mut req = HeaderMap::new();
    req.insert("x-missing", HeaderValue::from_static("forged"));
    jwt.apply(&verified, &mut req);
    assert_eq!(req.get("x-uid").unwrap(), "42");
    assert_eq!(req.get("x-admin").unwrap(), "true");
    assert_eq!(req.get("x-org").unwrap(), r#"{"team":"blue"}"#);
    assert!(
        req.get("x-missing").is_none(),
        "an absent claim still removes the client's copy"
    );
}

#[tokio::test]
async fn a_keys_own_alg_is_the_only_one_it_checks() {
    let s = Signer::new();
    let point = s.ec.public_key().as_ref().to_vec();
    let json = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES384", "x": b64(&point[1..33]), "y": b64(&point[33..])},
    ]});
    // ES384 does not fit a P-256 key: refused at load.
    assert!(KeySet::parse(json.to_string().as_bytes()).is_err());
    let rsa = crate::auth::jwks::tests::RSA_JWKS
        .replace(r#""kty": "RSA""#, r#""kty": "RSA", "alg": "PS256""#);
    let jwt = auth(KeySet::parse(rsa.as_bytes()).unwrap());
    let rs256 = crate::auth::jwks::tests::RS256_TOKEN;
    assert_eq!(
        jwt.check(&bearer_headers(rs256)).await.unwrap_err(),
        Refusal::Signature
    );
    assert!(jwt
        .check(&bearer_headers(crate::auth::jwks::tests::PS256_TOKEN))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let s = Signer::new();
    let mut jwt = auth(s.jwks());
    jwt.config.leeway = Duration::ZERO;
    let token =
        s.es256(json!({"sub": "ann", "iss": "https://idp.test", "aud": "shop", "exp": now() + 1}));
    let headers = bearer_headers(&token);
    assert!(jwt.check(&headers).await.is_ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while jwt.check(&headers).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(jwt.check(&headers).await.unwrap_err(), Refusal::Expired);
}

#[tokio::test]
async fn pyjwt_rsa_tokens_pass() {
    let jwt_rs = {
        let set = KeySet::parse(crate::auth::jwks::tests::RSA_JWKS.as_bytes()).unwrap();
        auth(set)
    };
    for token in [
        crate::auth::jwks::tests::RS256_TOKEN,
        crate::auth::jwks::tests::PS256_TOKEN,
    ] {
        let verified = jwt_rs.check(&bearer_headers(token)).await.unwrap();
        let mut req = HeaderMap::new();
        jwt_rs.apply(&verified, &mut req);
        assert_eq!(req.get("x-user").unwrap(), "ann");
    }
}
