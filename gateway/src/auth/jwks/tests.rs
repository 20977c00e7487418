//! Key sets: what is read, what is left out, what is refused.

use super::*;

/// A 2048-bit RSA key's JWK and tokens it signed (made once with Python's PyJWT).
pub(crate) const RSA_JWKS: &str = r#"{"keys": [{"kty": "RSA", "key_ops": ["verify"], "n": "zYPX9cCrG-OHbYgfStys4OiXk8MNu-T7RqFZYZgRg8DemNjbppwd15AYssYtutvo1zKIJwiW7TC9xoovbi00GFCA3q4E1co3rF-7XmZ1kkh0ymqhdkBs7thTRXG2GSJS8mtk8TFGrvzll23taITvRPMR-iR-vaj2u5R_CjEXBdCxf-ZGgGodilRrTn6Q0Arqm59mRyiFzd3JBYU6ahFYN_yLNDnWo2pAuJGYqZZBl-ZJ6Q9KWq_ZFUX0IWK9h3vjyktmcePeX9M3bZQxJzXQo4dGY2uCd_C0043y8PzdNhZXzd80-WkoYm2TvLIdFqxxa-DkLLUaSTtisw86ropBDQ", "e": "AQAB", "kid": "rsa-1"}]}"#;
/// `{"sub":"ann","iss":"https://idp.test","aud":"shop","exp":4102444800}`, RS256.
pub(crate) const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbm4iLCJpc3MiOiJodHRwczovL2lkcC50ZXN0IiwiYXVkIjoic2hvcCIsImV4cCI6NDEwMjQ0NDgwMH0.t25risILyT5lO3-06fAyTUt19tWqzmZdW5Ws2Y5Qpcb5-jg0EAWwr5kjiyFqIxfdNG_Pjlk3yffx_VjRGUa_79NxhsHiugxr6d22sdNq4wAPaC17yjk6aBn3AMDljRUWyq3DPadf2uEHnSaV79fNFjE2C4e5YBrdVmCSkXXfk_IchgXq5-Zfp-3OEJhddX9F1Hn1s2f1P1IOfHL-mzl2q4AzkBoYa5leSXppJD2LKb8r_-qKtWEfY36b5QSfu3cKhv3Jw6VugYKZzr6x-7-9ujQnmhLMBnLFDGzrilQ0vnv06zfENpkoDD-Ulkf0Cs-xnwgH5akrUni_9pmaPJ6MTQ";
/// The same claims, PS256.
pub(crate) const PS256_TOKEN: &str = "eyJhbGciOiJQUzI1NiIsImtpZCI6InJzYS0xIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbm4iLCJpc3MiOiJodHRwczovL2lkcC50ZXN0IiwiYXVkIjoic2hvcCIsImV4cCI6NDEwMjQ0NDgwMH0.cSM10yBZGVcpK4KlwDrcSRCKQQwEEHBRTsZpZVfXW_UMZ2IPlZPWHKQvOauIH3XQqnYUuWLu0JCfyFeh3OECuTV1s1EOIdb6evm6bIfjL2lVRQU-WmZX4_d2dE9NNnFxRPryd4cBoZ0dyb_v2Rs-7fdoGa11WjIp-MnwmZWCPm6qJQqob44wYcZ37xMCqItSzsG8skPLUS9YjAazhAo1e8uy9qhTfhnplamjJDZHC1ENQyXZH08VslhlT2-z6fqKUbk_HSF1cSb8GF9UIaqyeYaSbajn4_QBhOEb5FhQ_YKAdvaTxUvxGLLRlLomVzabsXfnSk83bBn0Kxdj4jkYag";

fn signed_parts(token: &str) -> (&str, Vec<u8>) {
    let (signed, sig) = token.rsplit_once('.').unwrap();
    (signed, URL_SAFE_NO_PAD.decode(sig).unwrap())
}

#[test]
fn rsa_keys_verify_pkcs1_and_pss_signatures_by_kid() {
    let set = KeySet::parse(RSA_JWKS.as_bytes()).unwrap();
    assert!(set.has_kid("rsa-1"));
    let (signed, sig) = signed_parts(RS256_TOKEN);
    assert!(set.verify(Alg::Rs256, Some("rsa-1"), signed.as_bytes(), &sig));
    assert!(
        set.verify(Alg::Rs256, None, signed.as_bytes(), &sig),
        "no kid: any key"
    );
    assert!(!set.verify(Alg::Rs256, Some("other"), signed.as_bytes(), &sig));
    assert!(
        !set.verify(Alg::Ps256, Some("rsa-1"), signed.as_bytes(), &sig),
        "wrong alg"
    );
    assert!(
        !set.verify(Alg::Es256, Some("rsa-1"), signed.as_bytes(), &sig),
        "wrong key type"
    );
    let tampered = signed.replace("eyJzdWIiOiJhbm4i", "eyJzdWIiOiJib2Ii");
    assert!(!set.verify(Alg::Rs256, None, tampered.as_bytes(), &sig));
    let (signed, sig) = signed_parts(PS256_TOKEN);
    assert!(set.verify(Alg::Ps256, Some("rsa-1"), signed.as_bytes(), &sig));
}

#[test]
fn refused_algorithms_are_not_algorithms() {
    for name in ["none", "HS256", "HS384", "HS512", "rs256", ""] {
        assert_eq!(Alg::from_name(name), None, "{name}");
    }
    assert_eq!(Alg::from_name("EdDSA"), Some(Alg::EdDsa));
}

#[test]
fn keys_for_other_uses_and_types_are_left_out() {
    let json = r#"{"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc", "x": "AA", "y": "AA"},
        {"kty": "RSA", "alg": "HS256", "kid": "odd", "n": "AA", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    ]}"#;
    let set = KeySet::parse(json.as_bytes()).unwrap();
    assert!(set.has_kid("ed"));
    assert!(!set.has_kid("hmac") && !set.has_kid("enc") && !set.has_kid("odd"));
}

#[test]
fn bad_sets_are_errors_that_name_the_key() {
    let cases = [
        ("[]", "not a JWKS"),
        (r#"{"keys": []}"#, "no signing key"),
        (r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#, "no signing key"),
        (
            r#"{"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"}]}"#,
            "key 0 (kid \"a\"): RSA key shorter than 2048 bits",
        ),
        (
            r#"{"keys": [{"kty": "RSA", "e": "AQAB"}]}"#,
            "key 0: RSA key without n",
        ),
        (
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "!!", "y": "AA"}]}"#,
            "not base64url",
        ),
        (
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
            "EC coordinates of the wrong length",
        ),
        (
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "ES256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
            "alg does not fit",
        ),
    ];
    for (json, want) in cases {
        let err = KeySet::parse(json.as_bytes()).unwrap_err();
        let text = crate::error_chain(&err);
        assert!(text.contains(want), "{json}: {text}");
    }
}
