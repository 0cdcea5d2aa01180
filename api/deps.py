"""FastAPI dependencies: the request's transaction, the authenticated principal, role checks.

Authorisation is a dependency, never an `if` inside a route. The session dependency has
scope "function": it commits right after the route returns and before the answer is sent, so a
failed commit is reported to the client instead of being lost.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api import csrf
from api.ratelimit import TokenBucketLimiter
from api.security import Principal, decode_access_token
from kit.errors import DomainError, Forbidden
from kit.settings import Settings
from pass_.enums import Role

COOKIE_NAME = "passnum_session"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    message = "Authentification requise : connectez-vous."


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(COOKIE_NAME)


async def token_principal(request: Request) -> Principal:
    """The principal named by a valid access token (header or cookie, CSRF rules for the
    cookie); `current_principal` then checks the account is still active."""
    token = _bearer(request)
    if not token:
        raise Unauthenticated()
    principal = decode_access_token(token, secret=request.app.state.jwt_secret)
    request.state.principal = principal
    if not request.headers.get("authorization"):  # cookie credentials: CSRF rules apply
        csrf.check_json_request(request)
    return principal


# One indexed read, no ORM object: every authenticated request makes it (for one principal,
# or for a group of online scans: api/redeem_online.py).
_ACCOUNTS_NOT_VALID = text("""
SELECT x.user_id
FROM unnest(CAST(:users AS bigint[]), CAST(:organisations AS bigint[]), CAST(:roles AS text[]))
     AS x(user_id, organisation_id, role)
WHERE NOT EXISTS (SELECT 1 FROM app_user u
                  WHERE u.id = x.user_id AND u.is_active
                    AND u.organisation_id = x.organisation_id AND u.role = x.role)
""")

NOT_ACTIVE = "Ce compte n'est plus actif : reconnectez-vous."


async def inactive_accounts(session: AsyncSession, principals: Sequence[Principal]) -> set[int]:
    """The user ids of `principals` whose account was deactivated, moved or given another role
    since their token was signed (their requests are refused: `Unauthenticated(NOT_ACTIVE)`)."""
    found = await session.execute(_ACCOUNTS_NOT_VALID, {
        "users": [p.user_id for p in principals],
        "organisations": [p.organisation_id for p in principals],
        "roles": [p.role.value for p in principals],
    })
    return {row[0] for row in found}


async def ensure_active(session: AsyncSession, principal: Principal) -> None:
    """Refuse a token whose account was deactivated, moved or given another role since."""
    if await inactive_accounts(session, [principal]):
        raise Unauthenticated(NOT_ACTIVE)


async def current_principal(request: Request, session: SessionDep) -> Principal:
    principal = await token_principal(request)
    await ensure_active(session, principal)
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def _check_role(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role not in allowed:
        raise Forbidden("Votre rôle ne permet pas cette action.", role=principal.role.value)
    return principal


def require(*roles: Role):  # type: ignore[no-untyped-def]
    allowed = frozenset(roles)

    # The principal read here rather than through `CurrentUser`: one dependency level less on
    # every guarded request (FastAPI's dependency solving was a fifth of a scan's CPU).
    async def check(request: Request, session: SessionDep) -> Principal:
        return _check_role(await current_principal(request, session), allowed)

    return check


def require_token(*roles: Role):  # type: ignore[no-untyped-def]
    """`require` without the account check, for a route whose service checks the account in
    its own statement (the online scans: api/redeem_online.py, `inactive_accounts`): no
    transaction is opened for a request that will not need one."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        return _check_role(await token_principal(request), allowed)

    return check


OperatorAdmin = Annotated[Principal, Depends(require(Role.operator_admin))]
IssuerAgent = Annotated[Principal, Depends(require(Role.issuer_agent))]
SiteMediator = Annotated[Principal, Depends(require(Role.site_mediator))]
SiteMediatorToken = Annotated[Principal, Depends(require_token(Role.site_mediator))]
FinancerUser = Annotated[Principal, Depends(require(Role.financer))]
StatementReader = Annotated[
    Principal, Depends(require(Role.operator_admin, Role.financer, Role.site_mediator))
]
IssuerOrOperator = Annotated[Principal, Depends(require(Role.issuer_agent, Role.operator_admin))]


# --------------------------------------------------------------------------- login throttling


def _login_limiters(request: Request) -> tuple[TokenBucketLimiter, TokenBucketLimiter]:
    limiters = getattr(request.app.state, "login_limiters", None)
    if limiters is None:
        settings: Settings = request.app.state.settings
        limiters = (
            TokenBucketLimiter(
                rate_per_minute=settings.login_failures_per_minute,
                burst=settings.login_failure_burst,
            ),
            TokenBucketLimiter(
                rate_per_minute=settings.login_failures_per_ip_per_minute,
                burst=settings.login_failure_ip_burst,
            ),
        )
        request.app.state.login_limiters = limiters
    return limiters  # type: ignore[no-any-return]


def _login_keys(request: Request, email: str) -> tuple[str, str]:
    address = request.client.host if request.client else "unknown"
    return f"login:{(email or '').strip().lower()}", f"login-from:{address}"


def check_login_attempt(request: Request, email: str) -> None:
    """Refuse (429 `rate_limited`, Retry-After) a login for an e-mail or from an address that
    failed too often lately, before any password is hashed. Call before `authenticate`."""
    by_email, by_address = _login_limiters(request)
    email_key, address_key = _login_keys(request, email)
    wait = max(by_email.wait_for(email_key), by_address.wait_for(address_key))
    if wait > 0.0:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            status_code=429,
            detail={
                "code": "rate_limited",
                "message": f"Trop de tentatives de connexion : réessayez dans {seconds} "
                "seconde(s).",
            },
            headers={"Retry-After": str(seconds)},
        )


def record_failed_login(request: Request, email: str) -> None:
    """Count a failed login against the e-mail and the client address."""
    by_email, by_address = _login_limiters(request)
    email_key, address_key = _login_keys(request, email)
    by_email.consume(email_key)
    by_address.consume(address_key)
