"""Keys and tokens made by PyJWT (an implementation independent of the gateway's).

Usage: pyjwt_tokens.py DIR ISSUER AUDIENCE

Writes DIR/jwks.json (an RSA, a P-256, a P-384 and an Ed25519 key) and DIR/jwks-rotated.json
(the same plus one more P-256 key, "py-new"), and prints a JSON object of tokens by
case name: valid ones for each algorithm, and the ones the gateway must refuse.
"""

import base64
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def jwk(algorithm, public_key, kid):
    key = json.loads(algorithm.to_jwk(public_key))
    key["kid"] = kid
    key["use"] = "sig"
    return key


def main():
    out_dir, issuer, audience = sys.argv[1:4]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec384_key = ec.generate_private_key(ec.SECP384R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    new_key = ec.generate_private_key(ec.SECP256R1())
    ghost_key = ec.generate_private_key(ec.SECP256R1())

    keys = [
        jwk(RSAAlgorithm, rsa_key.public_key(), "py-rsa"),
        jwk(ECAlgorithm, ec_key.public_key(), "py-ec"),
        jwk(ECAlgorithm, ec384_key.public_key(), "py-ec384"),
        jwk(OKPAlgorithm, ed_key.public_key(), "py-ed"),
    ]
    with open(f"{out_dir}/jwks.json", "w") as f:
        json.dump({"keys": keys}, f)
    rotated = keys + [jwk(ECAlgorithm, new_key.public_key(), "py-new")]
    with open(f"{out_dir}/jwks-rotated.json", "w") as f:
        json.dump({"keys": rotated}, f)

    now = int(time.time())
    claims = {"sub": "py-ann", "iss": issuer, "aud": audience, "exp": now + 3600, "iat": now}

    def token(key, alg, kid, **changes):
        body = dict(claims)
        body.update(changes)
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    es256 = token(ec_key, "ES256", "py-ec")
    head, _, sig = es256.split(".")
    forged = dict(claims, sub="root")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    tokens = {
        "rs256": token(rsa_key, "RS256", "py-rsa"),
        "ps256": token(rsa_key, "PS256", "py-rsa"),
        "rs384": token(rsa_key, "RS384", "py-rsa"),
        "rs512": token(rsa_key, "RS512", "py-rsa"),
        "ps384": token(rsa_key, "PS384", "py-rsa"),
        "ps512": token(rsa_key, "PS512", "py-rsa"),
        "es384": token(ec384_key, "ES384", "py-ec384"),
        "es256": es256,
        "es256_other": token(ec_key, "ES256", "py-ec", sub="py-bo"),
        "eddsa": token(ed_key, "EdDSA", "py-ed"),
        "expired": token(ec_key, "ES256", "py-ec", exp=now - 3600),
        "not_yet": token(ec_key, "ES256", "py-ec", nbf=now + 3600),
        "wrong_audience": token(ec_key, "ES256", "py-ec", aud="elsewhere"),
        "wrong_issuer": token(ec_key, "ES256", "py-ec", iss="https://evil.test"),
        "unknown_kid": token(ghost_key, "ES256", "py-ghost"),
        "alg_none": jwt.encode(claims, None, algorithm="none", headers={"kid": "py-ec"}),
        "hs256": jwt.encode(claims, "a-shared-secret-of-32-bytes-long", algorithm="HS256",
                            headers={"kid": "py-ec"}),
        "tampered": f"{head}.{forged_body}.{sig}",
        "rotated": token(new_key, "ES256", "py-new"),
        "rotated_other": token(new_key, "ES256", "py-new", sub="py-cy"),
    }
    print(json.dumps(tokens))


if __name__ == "__main__":
    main()
