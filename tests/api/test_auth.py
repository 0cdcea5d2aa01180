"""Authentication: the OAuth2 password flow, access tokens and what a token lets one reach."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from api.security import AUDIENCE, Principal, create_access_token
from kit.clock import utcnow
from pass_.enums import OrganisationKind, Role
from pass_.models import AppUser
from tests.factories import Actor, make_actor

PASSWORD = "motdepasse-solide-42"


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )


def claims_of(actor: Actor, **changes: Any) -> dict[str, Any]:
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(actor.user.id),
        "org": actor.org.id,
        "role": actor.user.role,
        "email": actor.user.email,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=30)).timestamp()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------- logging in


async def test_a_user_logs_in_with_the_password_form_and_gets_a_bearer_token(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.issuer)
    response = await login(client, actor.user.email, PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.state.settings.access_token_minutes * 60

    me = await client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == actor.user.id
    assert me.json()["role"] == "issuer_agent"
    assert me.json()["organisation"]["id"] == actor.org.id


async def test_the_access_token_expires_when_it_says(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    body = (await login(client, actor.user.email, PASSWORD)).json()
    claims = jwt.decode(
        body["access_token"], app.state.jwt_secret, algorithms=["HS256"], audience=AUDIENCE
    )
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert (claims["sub"], claims["org"], claims["role"]) == (
        str(actor.user.id),
        actor.org.id,
        "site_mediator",
    )


async def test_the_email_is_matched_whatever_its_case_and_surrounding_spaces(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.financer)
    response = await login(client, f"  {actor.user.email.upper()} ", PASSWORD)
    assert response.status_code == 200, response.text


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.issuer)
    wrong_password = await login(client, actor.user.email, "pas-le-bon-mot-de-passe")
    unknown_email = await login(client, "personne@inconnu.fr", PASSWORD)
    assert_error(wrong_password, 401, "invalid_credentials")
    assert wrong_password.json() == unknown_email.json()
    assert unknown_email.status_code == 401
    assert wrong_password.headers["www-authenticate"] == "Bearer"


async def test_a_deactivated_user_can_no_longer_log_in(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.issuer)
    await session.execute(update(AppUser).where(AppUser.id == actor.id).values(is_active=False))
    assert_error(await login(client, actor.user.email, PASSWORD), 401, "invalid_credentials")


async def test_the_login_form_requires_both_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/token", data={"username": "a@b.fr"})
    body = assert_error(response, 422, "validation_error")
    assert body["error"]["details"]["fields"][0]["field"] == "password"
    assert "obligatoire" in body["error"]["details"]["fields"][0]["message"]


# ------------------------------------------------------------------------------ using tokens


async def test_no_token_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert_error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    for header in ("Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token"):
        assert_error(
            await client.get("/api/v1/me", headers={"Authorization": header}),
            401,
            "unauthenticated",
        )


async def test_an_expired_token_is_refused_as_expired(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    principal = Principal(
        user_id=actor.id, organisation_id=actor.org.id, role=Role.site_mediator  # type: ignore[arg-type]
    )
    token, _ = create_access_token(
        principal,
        secret=app.state.jwt_secret,
        now=utcnow() - timedelta(minutes=31),
        minutes=30,
    )
    response = await client.get("/api/v1/me", headers=bearer(token))
    body = assert_error(response, 401, "token_expired")
    assert "expiré" in body["error"]["message"]


def tampered_tokens(actor: Actor, secret: str) -> dict[str, str]:
    good = jwt.encode(claims_of(actor), secret, algorithm="HS256")
    header, payload, signature = good.split(".")
    raw_signature = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw_signature[0] ^= 0x01
    promoted = b64(json.dumps(claims_of(actor, role="operator_admin")).encode())
    return {
        "signature altered": f"{header}.{payload}.{b64(bytes(raw_signature))}",
        "payload altered": f"{header}.{promoted}.{signature}",
        "signature removed": f"{header}.{payload}.",
        "alg none": jwt.encode(claims_of(actor, role="operator_admin"), None, algorithm="none"),
        "alg none, same claims": jwt.encode(claims_of(actor), None, algorithm="none"),
        "other secret": jwt.encode(
            claims_of(actor), "un-autre-secret-de-32-octets-au-moins!!", algorithm="HS256"
        ),
        "other audience": jwt.encode(claims_of(actor, aud="autre"), secret, algorithm="HS256"),
        "no expiry": jwt.encode(claims_of(actor, exp=None), secret, algorithm="HS256"),
        "unknown role": jwt.encode(claims_of(actor, role="root"), secret, algorithm="HS256"),
        "not a number as subject": jwt.encode(
            claims_of(actor, sub="admin"), secret, algorithm="HS256"
        ),
        "garbage": "pas.un.jeton",
        "one part": "abc",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "signature altered",
        "payload altered",
        "signature removed",
        "alg none",
        "alg none, same claims",
        "other secret",
        "other audience",
        "no expiry",
        "unknown role",
        "not a number as subject",
        "garbage",
        "one part",
    ],
)
async def test_a_tampered_token_is_refused(
    kind: str, client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    # The untampered token works, so the refusal below is the tampering's doing.
    good = jwt.encode(claims_of(actor), app.state.jwt_secret, algorithm="HS256")
    assert (await client.get("/api/v1/me", headers=bearer(good))).status_code == 200
    token = tampered_tokens(actor, app.state.jwt_secret)[kind]
    response = await client.get("/api/v1/me", headers=bearer(token))
    assert_error(response, 401, "invalid_access_token")


async def test_a_token_whose_claims_no_longer_match_the_user_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    """Signed with the right key but naming another organisation or role than the database."""
    actor = await make_actor(session, app, OrganisationKind.site)
    other = await make_actor(session, app, OrganisationKind.operator)
    secret = app.state.jwt_secret
    for token in (
        jwt.encode(claims_of(actor, org=other.org.id), secret, algorithm="HS256"),
        jwt.encode(claims_of(actor, role="operator_admin"), secret, algorithm="HS256"),
        jwt.encode(claims_of(actor, sub=str(10**12)), secret, algorithm="HS256"),
    ):
        assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "unauthenticated")


async def test_a_deactivated_users_token_stops_working_at_once(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.operator)
    assert (await client.get("/api/v1/organisations", headers=actor.headers)).status_code == 200
    await session.execute(update(AppUser).where(AppUser.id == actor.id).values(is_active=False))
    response = await client.get("/api/v1/organisations", headers=actor.headers)
    body = assert_error(response, 401, "unauthenticated")
    assert "plus actif" in body["error"]["message"]


async def test_the_session_cookie_carries_the_same_token(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    from api.deps import COOKIE_NAME

    actor = await make_actor(session, app, OrganisationKind.issuer)
    token = actor.headers["Authorization"].removeprefix("Bearer ")
    client.cookies.set(COOKIE_NAME, token)
    try:
        assert (await client.get("/api/v1/me")).json()["user_id"] == actor.id
    finally:
        client.cookies.clear()


# ------------------------------------------------------------------------------ what one reaches


async def test_a_role_without_the_right_is_forbidden(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    mediator = await make_actor(session, app, OrganisationKind.site)
    response = await client.get("/api/v1/organisations", headers=mediator.headers)
    body = assert_error(response, 403, "forbidden")
    assert body["error"]["details"] == {"role": "site_mediator"}


async def test_another_organisations_record_is_not_found_rather_than_forbidden(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    mine = await make_actor(session, app, OrganisationKind.site)
    theirs = await make_actor(session, app, OrganisationKind.site)
    own = await client.get(f"/api/v1/organisations/{mine.org.id}", headers=mine.headers)
    assert own.status_code == 200
    other = await client.get(f"/api/v1/organisations/{theirs.org.id}", headers=mine.headers)
    missing = await client.get(f"/api/v1/organisations/{10**12}", headers=mine.headers)
    assert_error(other, 404, "not_found")
    # Indistinguishable from an organisation that does not exist, but for the id echoed.
    assert other.json()["error"]["message"] == missing.json()["error"]["message"]
    assert missing.status_code == 404


async def test_authentication_is_checked_before_the_body(
    client: httpx.AsyncClient,
) -> None:
    """A stranger learns nothing about the expected input."""
    response = await client.post("/api/v1/organisations", json={"kind": "nope"})
    assert_error(response, 401, "unauthenticated")


# ------------------------------------------------------------------------------ password guessing


@pytest.fixture
async def strict_client(
    settings: Any, engine: Any, session: AsyncSession, tmp_path: Any
) -> Any:
    """A client of an application with low login-failure limits, on the test's transaction."""
    from api.app import create_app
    from api.deps import get_session

    strict = settings.model_copy(
        update={
            "login_failure_burst": 3,
            "login_failures_per_minute": 1,
            "login_failure_ip_burst": 5,
            "login_failures_per_ip_per_minute": 1,
        }
    )
    app = create_app(strict, engine=engine, run_sealer=False)

    async def same_transaction() -> Any:
        async with session.begin_nested():
            yield session

    app.dependency_overrides[get_session] = same_transaction
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_repeated_wrong_passwords_for_an_email_are_throttled_even_the_right_one_then(
    strict_client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.issuer)
    other = await make_actor(session, app, OrganisationKind.issuer)
    assert (await login(strict_client, actor.user.email, PASSWORD)).status_code == 200
    for _ in range(3):
        assert_error(await login(strict_client, actor.user.email, "mauvais"), 401,
                     "invalid_credentials")
    # The bucket is empty: refused before the password is even checked.
    throttled = await login(strict_client, actor.user.email, PASSWORD)
    body = assert_error(throttled, 429, "rate_limited")
    assert int(throttled.headers["retry-after"]) >= 1
    assert "réessayez" in body["error"]["message"]
    # Another account from the same address still logs in (the address limit is higher).
    assert (await login(strict_client, other.user.email, PASSWORD)).status_code == 200


async def test_wrong_passwords_from_one_address_over_many_emails_are_throttled(
    strict_client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    for n in range(5):
        assert_error(await login(strict_client, f"inconnu{n}@exemple.fr", "x"), 401,
                     "invalid_credentials")
    assert_error(await login(strict_client, actor.user.email, PASSWORD), 429, "rate_limited")


def test_a_token_checked_once_is_still_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verified tokens are remembered by the process (api.security); expiry is checked at
    every use all the same, and another secret does not find them."""
    import time

    from api import security
    from api.security import TokenExpired, decode_access_token

    principal = Principal(user_id=7, organisation_id=3, role=Role.site_mediator)
    token, _ = create_access_token(principal, secret="s" * 64, now=utcnow(), minutes=1)
    assert decode_access_token(token, secret="s" * 64) == principal
    assert ("s" * 64, token) in security._VERIFIED
    with pytest.raises(security.InvalidAccessToken):
        decode_access_token(token, secret="t" * 64)
    later = time.time() + 61
    monkeypatch.setattr(security.time, "time", lambda: later)
    with pytest.raises(TokenExpired):
        decode_access_token(token, secret="s" * 64)
    assert ("s" * 64, token) not in security._VERIFIED  # forgotten: the full check is next
