"""Access tokens: short-lived HS256 JWTs carrying the user, organisation and role."""

from __future__ import annotations

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


def decode_access_token(token: str, *, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "org", "role"]},
        )
        return Principal(
            user_id=int(claims["sub"]),
            organisation_id=int(claims["org"]),
            role=Role(claims["role"]),
            email=str(claims.get("email", "")),
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except (jwt.PyJWTError, ValueError, KeyError):
        raise InvalidAccessToken() from None
