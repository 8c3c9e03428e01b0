"""Access tokens: RS256 JWTs as IdentityServer writes them (iss, aud, client_id, sub, scope, exp, ...), signed
with a key made once per process and published as the discovery document's JWKS."""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "nmbrs_api"
KEY_ID = "nmbrs-sim-1"


class InvalidAccessToken(Exception):
    """Not a token this identity server signed, or past its `exp` on the simulated clock."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The claims the REST API needs from a verified access token."""

    consent_id: str
    client_id: str
    username: str
    scopes: list[str]
    expires_at: float


@functools.cache
def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    """The public signing key as a JSON Web Key Set."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_private_key().public_key()))
    jwk.update({"kid": KEY_ID, "use": "sig", "alg": "RS256"})
    return {"keys": [jwk]}


def issue(*, issuer: str, consent_id: str, client_id: str, username: str, user_id: str, scopes: list[str],
          now: float, lifetime: int) -> str:
    claims = {"iss": issuer, "aud": AUDIENCE, "nbf": int(now), "iat": int(now), "exp": int(now) + lifetime,
              "client_id": client_id, "sub": user_id, "idp": "local", "auth_time": int(now),
              "sid": consent_id, "name": username, "scope": list(scopes), "jti": secrets.token_hex(16).upper()}
    return jwt.encode(claims, _private_key(), algorithm="RS256", headers={"kid": KEY_ID, "typ": "at+jwt"})


def verify(token: str, now: float) -> AccessClaims:
    """Check the signature and audience with PyJWT and the expiry against the simulated clock."""
    claims = _decoded(token)
    if now >= claims.expires_at:
        raise InvalidAccessToken("the access token has expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _decoded(token: str) -> AccessClaims:
    """A token's claims (signature checked once: a signed token never changes)."""
    try:
        claims = jwt.decode(token, _public_key(), algorithms=["RS256"], audience=AUDIENCE,
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    except jwt.PyJWTError as exc:
        raise InvalidAccessToken(str(exc)) from None
    scopes = claims.get("scope") or []
    return AccessClaims(str(claims.get("sid", "")), str(claims.get("client_id", "")), str(claims.get("name", "")),
                        [scopes] if isinstance(scopes, str) else list(scopes), float(claims.get("exp", 0)))


@functools.cache
def _public_key() -> rsa.RSAPublicKey:
    return _private_key().public_key()
