"""Access tokens: short-lived HS256 JWTs carrying the user, organisation and role."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from kit.errors import DomainError
from pass_.enums import Role

ALGORITHM = "HS256"
AUDIENCE = "passnum"


class TokenExpired(DomainError):
    code = "token_expired"
    message = "Votre session a expiré : reconnectez-vous."


class InvalidAccessToken(DomainError):
    code = "invalid_access_token"
    message = "Jeton d'accès invalide : reconnectez-vous."


@dataclass(frozen=True)
class Principal:
    user_id: int
    organisation_id: int
    role: Role
    email: str = ""


def create_access_token(
    principal: Principal, *, secret: str, now: datetime, minutes: int
) -> tuple[str, int]:
    expires_in = minutes * 60
    claims = {
        "sub": str(principal.user_id),
        "org": principal.organisation_id,
        "role": principal.role.value,
        "email": principal.email,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=expires_in)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_in


# Verified tokens of this process: (secret, token) → (principal, expiry as a Unix time).
# A token is immutable and its signature checked once is checked for good; only its expiry
# moves, and is compared at every use. An account deactivated since is refused by the
# account check (api.deps.ensure_active, or the redemption statement), not by the token.
_VERIFIED: dict[tuple[str, str], tuple[Principal, int]] = {}
_VERIFIED_MAX = 10_000


def decode_access_token(token: str, *, secret: str) -> Principal:
    """The principal of a valid token (signature, audience, required claims, expiry)."""
    known = _VERIFIED.get((secret, token))
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _VERIFIED[(secret, token)]
        raise TokenExpired()
    principal, expires = _decode(token, secret)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()  # simplest bound: the busy tokens come back at their next use
    _VERIFIED[(secret, token)] = (principal, expires)
    return principal


def _decode(token: str, secret: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "org", "role"]},
        )
        principal = Principal(
            user_id=int(claims["sub"]),
            organisation_id=int(claims["org"]),
            role=Role(claims["role"]),
            email=str(claims.get("email", "")),
        )
        return principal, int(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except (jwt.PyJWTError, ValueError, KeyError):
        raise InvalidAccessToken() from None
