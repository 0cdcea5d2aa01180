"""The error contract (DESIGN.md §7): one body shape, French messages, and never a 500 for bad
input, whatever the route, the caller and the junk sent."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from pass_.enums import OrganisationKind
from tests.factories import Actor, make_actor, make_org, unique_siret

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
# Phrases of pydantic's, Starlette's and FastAPI's English messages that must never reach users.
ENGLISH = re.compile(
    r"Field required|Input should|value is not|Not Found|Method Not Allowed|Unprocessable|"
    r"Internal Server Error|There was an error|Expecting value|JSON decode",
    re.IGNORECASE,
)


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """Exactly {"error": {"code", "message", "details"}}, in French, with a snake_case code."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and SNAKE.match(error["code"]), body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    assert not ENGLISH.search(error["message"]), body
    assert isinstance(error["details"], dict), body
    return error  # type: ignore[no-any-return]


@pytest.fixture
async def admin(session: AsyncSession, app: Any) -> Actor:
    return await make_actor(session, app, OrganisationKind.operator)


# ------------------------------------------------------------------------------------ the shape


async def test_an_unknown_route_is_a_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    for path in ("/nulle-part", "/api/v1/nulle-part", "/api/v2/organisations"):
        response = await client.get(path)
        assert response.status_code == 404
        assert assert_error_shape(response)["code"] == "not_found"


async def test_a_wrong_method_is_a_405_in_the_error_shape(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.delete("/api/v1/organisations", headers=admin.headers)
    assert response.status_code == 405
    assert assert_error_shape(response)["code"] == "method_not_allowed"


async def test_every_kind_of_failure_answers_in_the_same_shape(
    client: httpx.AsyncClient, session: AsyncSession, app: Any, admin: Actor
) -> None:
    mediator = await make_actor(session, app, OrganisationKind.site)
    issuer = await make_org(session, OrganisationKind.issuer)
    duplicate = {"kind": "issuer", "name": "Doublon", "siret": issuer.siret,
                 "commune_insee": "35238"}
    cases: list[tuple[int, str, httpx.Response]] = [
        (401, "unauthenticated", await client.get("/api/v1/me")),
        (401, "invalid_access_token",
         await client.get("/api/v1/me", headers={"Authorization": "Bearer x.y.z"})),
        (401, "invalid_credentials", await client.post(
            "/api/v1/auth/token", data={"username": "a@b.fr", "password": "x"})),
        (403, "forbidden", await client.get("/api/v1/organisations", headers=mediator.headers)),
        (404, "not_found", await client.get(
            f"/api/v1/organisations/{issuer.id}", headers=mediator.headers)),
        (409, "organisation_exists", await client.post(
            "/api/v1/organisations", json=duplicate, headers=admin.headers)),
        (422, "validation_error", await client.post(
            "/api/v1/organisations", json={}, headers=admin.headers)),
        (422, "invalid_siret", await client.post(
            "/api/v1/organisations", json={**duplicate, "siret": "12345678901234"},
            headers=admin.headers)),
        (422, "not_a_site", await client.post(
            f"/api/v1/sites/{issuer.id}/qualify", headers=admin.headers)),
    ]
    for status, code, response in cases:
        assert response.status_code == status, response.text
        assert assert_error_shape(response)["code"] == code


# --------------------------------------------------------------------------- French validation


async def test_validation_errors_name_each_field_in_french(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.post(
        "/api/v1/organisations",
        json={"kind": "banque", "name": 12, "siret": "73282932000074"},
        headers=admin.headers,
    )
    assert response.status_code == 422
    error = assert_error_shape(response)
    assert error["code"] == "validation_error"
    assert error["message"].startswith("Données invalides")
    fields = {f["field"]: f["message"] for f in error["details"]["fields"]}
    assert fields == {
        "kind": "Cette valeur ne fait pas partie des choix possibles.",
        "name": "Un texte est attendu.",
        "commune_insee": "Ce champ est obligatoire.",
    }


async def test_an_invalid_email_is_explained_in_french(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    org = await make_org(session, OrganisationKind.issuer)
    response = await client.post(
        "/api/v1/users",
        json={"email": "agent-at-exemple", "password": "un-mot-de-passe-long",
              "organisation_id": org.id, "role": "issuer_agent"},
        headers=admin.headers,
    )
    error = assert_error_shape(response)
    assert error["details"]["fields"] == [
        {"field": "email", "message": "Adresse e-mail invalide.", "code": "validation_error"}
    ]


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"kind": "site",}', b"{'kind': 'site'}", b'{"kind": "site"', b"\xff\xfe\x00"],
)
async def test_malformed_json_is_a_validation_error(
    body: bytes, client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.post(
        "/api/v1/organisations",
        content=body,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "validation_error"
    assert error["details"]["fields"][0]["field"] == "body"
    assert "JSON" in error["message"]


async def test_values_the_database_cannot_hold_are_bad_input_not_a_crash(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    nul = {"kind": "issuer", "name": "CCAS\x00", "siret": unique_siret(), "commune_insee": "35238"}
    cases = [
        await client.post("/api/v1/organisations", json=nul, headers=admin.headers),
        await client.get(f"/api/v1/organisations/{10**20}", headers=admin.headers),
        await client.post("/api/v1/auth/token", data={"username": "a\x00@b.fr", "password": "x"}),
    ]
    for response in cases:
        assert response.status_code == 422, response.text
        assert assert_error_shape(response)["code"] == "validation_error"
    # The failed requests left the database usable.
    assert (await client.get("/api/v1/me", headers=admin.headers)).status_code == 200


def test_error_details_become_json_at_any_depth() -> None:
    from datetime import date, datetime
    from decimal import Decimal

    from api.errors import _jsonable  # the details of every domain error pass through it

    details = {"at": datetime(2026, 1, 31, 23, 30), "days": [date(2026, 2, 1)],
               "nested": {"amount": Decimal("1.50"), "ids": (1, 2)}, 3: None}
    assert json.loads(json.dumps(_jsonable(details))) == {
        "at": "2026-01-31T23:30:00", "days": ["2026-02-01"],
        "nested": {"amount": "1.50", "ids": [1, 2]}, "3": None,
    }


# ------------------------------------------------------------------------ junk never makes a 500

IDENTITIES = ["anonymous", "operator", "financer", "issuer", "site"]
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
FIELD_NAMES = [
    "kind", "name", "siret", "commune_insee", "iban", "bic", "email", "password", "role",
    "organisation_id", "programme_id", "beneficiary_id", "size", "reference", "need_level",
    "birth_year", "code", "service", "demarche_family", "items", "scanned_at",
    "idempotency_key", "cutoff", "reason", "territory", "face_value_cents", "booklet_sizes",
    "valid_from", "valid_until", "redeem_until", "state_share_bp", "financers", "issuers",
    "quantity", "username", "action", "csrf_token",
]


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the application, included routers too."""

    def walk(entries: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in entries:
            included = getattr(route, "original_router", None)
            if included is not None:  # an included router (FastAPI keeps them nested)
                yield from walk(included.routes, prefix + (route.include_context.prefix or ""))
            elif getattr(route, "methods", None):
                for method in sorted(route.methods - {"HEAD"}):
                    yield method, prefix + route.path

    yield from walk(app.routes, "")


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def junk_bodies(rng: random.Random) -> list[tuple[str, bytes]]:
    """About 5 kB each: noise, broken structure, and well-formed JSON full of hostile values."""
    noise = bytes(rng.randrange(256) for _ in range(5120))
    text = "".join(rng.choice("azé€ \x00\n{}[]\",:0123456789") for _ in range(5120)).encode()
    hostile_values: list[Any] = [
        "\x00", "x" * 600, 10**30, -(10**30), -1, 0, 1.5, True, None, [], {}, ["\x00"] * 5,
        {"a": [1, {"b": None}]}, "2026-02-30", "9999-12-31T23:59:59+14:00", "../../etc/passwd",
    ]
    hostile = json.dumps(
        {name: rng.choice(hostile_values) for name in FIELD_NAMES}
        | {"items": [{n: rng.choice(hostile_values) for n in FIELD_NAMES} for _ in range(8)]}
    ).encode()
    return [
        ("application/json", noise),
        ("application/json", text),
        ("application/json", hostile[:5120]),  # cut in the middle: broken JSON
        ("application/json", hostile),
        ("application/json", b"[" * 2560 + b"]" * 2560),
        ("application/json", b"9" * 5120),
        ("application/json", json.dumps(["\x00" * 10] * 400).encode()),
        ("application/x-www-form-urlencoded", noise),
        ("application/x-www-form-urlencoded",
         "&".join(f"{n}=%00{rng.random()}" for n in FIELD_NAMES * 4).encode()),
        ("multipart/form-data; boundary=passnum", noise),
        ("multipart/form-data", text),
        ("text/plain", text),
    ]


async def test_a_5_kb_junk_body_never_causes_a_500_on_any_route(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    callers: dict[str, dict[str, str]] = {"anonymous": {}}
    for identity in IDENTITIES[1:]:
        callers[identity] = (await make_actor(session, app, OrganisationKind(identity))).headers
    bodies = junk_bodies(random.Random("junk"))
    failures: list[str] = []

    async def send(method: str, path: str, headers: dict[str, str],
                   content_type: str, body: bytes, template: str) -> int:
        sent = {**headers, "Content-Type": content_type} if content_type else headers
        response = await client.request(method, path, content=body, headers=sent)
        deliberate = (  # e.g. 503 payments_not_configured: an answer, not a crash
            response.status_code in (502, 503, 504)
            and response.headers.get("content-type", "").startswith("application/json")
            and response.json().get("error", {}).get("code") not in (None, "internal_error")
        )
        if response.status_code >= 500 and not deliberate:
            failures.append(f"{method} {path[:80]} [{content_type}] "
                            f"→ {response.status_code} {response.text[:200]}")
        elif template.startswith("/api/") and response.status_code >= 400:
            assert_error_shape(response)
        return response.status_code

    for method, template in routes(app):
        if template.startswith(("/static", "/api/openapi", "/api/docs", "/docs")):
            continue
        write = method in WRITE_METHODS
        probe = bodies[3] if write else ("", b"")
        for headers in callers.values():
            status = await send(method, fill(template, "1"), headers, *probe, template)
            if status in (401, 403):
                continue  # refused before reading anything: the junk goes to who gets in
            for content_type, body in bodies if write else []:
                await send(method, fill(template, "1"), headers, content_type, body, template)
            if "{" in template:
                for value in ("9" * 25, "%00", "x" * 300):
                    await send(method, fill(template, value), headers, *probe, template)
    assert not failures, "\n".join(failures)
