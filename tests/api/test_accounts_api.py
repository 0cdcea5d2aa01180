"""Organisations, users, site qualification and bank details through the API, by every role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pass_.enums import OrganisationKind
from pass_.models import AppUser, Organisation
from tests.factories import IBANS, Actor, make_actor, make_org, unique_siret

BAD_SIRET = "73282932000075"  # Luhn fails
BAD_IBAN = "FR7630006000011234567890188"  # check digits wrong
BAD_INSEE = "35000"  # a postal code


def org_body(kind: str = "issuer", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "name": f"Structure {kind}",
        "siret": unique_siret(),
        "commune_insee": "35238",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def organisation_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Organisation)) or 0)


async def user_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(AppUser)) or 0)


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


@pytest.fixture
async def admin(session: AsyncSession, app: Any) -> Actor:
    return await make_actor(session, app, OrganisationKind.operator)


# ------------------------------------------------------------------------------ organisations


@pytest.mark.parametrize(
    ("kind", "extra", "qualification"),
    [
        ("operator", {}, None),
        ("financer", {"financer_category": "departement", "iban": IBANS[2], "bic": "AGRIFRPP"},
         None),
        ("financer", {"financer_category": "state"}, None),
        ("issuer", {"address": "1 place de la Mairie", "email": "ccas@exemple.fr"}, None),
        ("site", {"iban": IBANS[0], "services": ["creer_courriel", "naviguer_web"]}, "pending"),
    ],
)
async def test_the_operator_creates_an_organisation_of_each_kind(
    kind: str,
    extra: dict[str, Any],
    qualification: str | None,
    client: httpx.AsyncClient,
    admin: Actor,
) -> None:
    body = org_body(kind, **extra)
    response = await client.post("/api/v1/organisations", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] > 0
    assert created["qualification"] == qualification
    for key, value in body.items():
        assert created[key] == value
    again = await client.get(f"/api/v1/organisations/{created['id']}", headers=admin.headers)
    assert again.json() == created


async def test_identifiers_are_stored_normalised(client: httpx.AsyncClient, admin: Actor) -> None:
    siret = unique_siret()
    spaced = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"
    body = org_body(
        "site",
        siret=spaced,
        commune_insee="2a004",
        iban="fr14 2004 1010 0505 0001 3m02 606",
        bic="psstfrppren",
        name="  Médiathèque  ",
    )
    response = await client.post("/api/v1/organisations", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["siret"], created["commune_insee"], created["iban"], created["bic"]) == (
        siret, "2A004", IBANS[0], "PSSTFRPPREN")
    assert created["name"] == "Médiathèque"


@pytest.mark.parametrize(
    ("field", "value", "code", "words"),
    [
        ("siret", BAD_SIRET, "invalid_siret", "SIRET"),
        ("siret", "1234", "invalid_siret", "14 chiffres"),
        ("iban", BAD_IBAN, "invalid_iban", "IBAN"),
        ("commune_insee", BAD_INSEE, "invalid_insee", "INSEE"),
        ("commune_insee", "20004", "invalid_insee", "Corse"),
        ("bic", "AGRIZZPP", "invalid_bic", "BIC"),
    ],
)
async def test_a_bad_identifier_is_refused_in_french_and_nothing_is_created(
    field: str,
    value: str,
    code: str,
    words: str,
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: Actor,
) -> None:
    before = await organisation_count(session)
    body = org_body("site", **{"iban": IBANS[0], field: value})
    response = await client.post("/api/v1/organisations", json=body, headers=admin.headers)
    err = error(response, 422, code)
    assert words in err["message"]
    assert err["details"]["fields"] == [
        {"field": field, "message": err["details"]["fields"][0]["message"], "code": code}
    ]
    assert await organisation_count(session) == before


async def test_every_bad_field_is_reported_at_once_with_its_own_code(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    before = await organisation_count(session)
    body = org_body("site", siret=BAD_SIRET, iban=BAD_IBAN, commune_insee=BAD_INSEE)
    response = await client.post("/api/v1/organisations", json=body, headers=admin.headers)
    err = error(response, 422, "validation_error")
    codes = {f["field"]: f["code"] for f in err["details"]["fields"]}
    assert codes == {
        "siret": "invalid_siret",
        "iban": "invalid_iban",
        "commune_insee": "invalid_insee",
    }
    assert await organisation_count(session) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "bank"}, "kind"),
        ({"name": "x"}, "name"),
        ({"name": 12}, "name"),
        ({"name": "    "}, "name"),  # spaces only: stripped, then too short
        ({"email": "pas-une-adresse"}, "email"),
        ({"services": ["cuisine"]}, "services.0"),
        ({"financer_category": "banque"}, "financer_category"),
        ({"colour": "bleu"}, "colour"),
    ],
)
async def test_other_bad_fields_are_refused_with_the_field_named(
    changes: dict[str, Any],
    field: str,
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: Actor,
) -> None:
    before = await organisation_count(session)
    response = await client.post(
        "/api/v1/organisations", json={**org_body("site"), **changes}, headers=admin.headers
    )
    err = error(response, 422, "validation_error")
    assert [f["field"] for f in err["details"]["fields"]] == [field]
    assert await organisation_count(session) == before


async def test_bank_details_are_only_for_sites_and_financers(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    before = await organisation_count(session)
    response = await client.post(
        "/api/v1/organisations", json=org_body("issuer", iban=IBANS[0]), headers=admin.headers
    )
    err = error(response, 422, "validation_error")
    assert "coordonnées bancaires" in err["message"]
    assert await organisation_count(session) == before


async def test_the_same_siret_twice_for_the_same_kind_is_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    body = org_body("issuer")
    first = await client.post("/api/v1/organisations", json=body, headers=admin.headers)
    assert first.status_code == 201
    before = await organisation_count(session)
    again = await client.post(
        "/api/v1/organisations", json={**body, "name": "Autre nom"}, headers=admin.headers
    )
    err = error(again, 409, "organisation_exists")
    assert err["details"] == {"siret": body["siret"], "kind": "issuer"}
    assert await organisation_count(session) == before
    # One body may hold several roles: the same SIRET as a site is another record.
    as_site = await client.post(
        "/api/v1/organisations", json={**body, "kind": "site"}, headers=admin.headers
    )
    assert as_site.status_code == 201, as_site.text


async def test_the_operator_lists_organisations_by_kind_and_qualification(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    pending = await make_org(session, OrganisationKind.site, qualified=False)
    qualified = await make_org(session, OrganisationKind.site)
    issuer = await make_org(session, OrganisationKind.issuer)
    response = await client.get(
        "/api/v1/organisations", params={"kind": "site", "qualification": "pending"},
        headers=admin.headers,
    )
    ids = {o["id"] for o in response.json()}
    assert pending.id in ids and qualified.id not in ids and issuer.id not in ids
    assert {o["kind"] for o in response.json()} == {"site"}
    bad = await client.get("/api/v1/organisations", params={"kind": "x"}, headers=admin.headers)
    error(bad, 422, "validation_error")


# --------------------------------------------------------------------------------------- users


@pytest.mark.parametrize(
    ("kind", "role"),
    [
        ("operator", "operator_admin"),
        ("financer", "financer"),
        ("issuer", "issuer_agent"),
        ("site", "site_mediator"),
    ],
)
async def test_the_operator_creates_a_user_whose_role_matches_the_organisation(
    kind: str, role: str, client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    org = await make_org(session, OrganisationKind(kind))
    body = {
        "email": f"Nouvel.Agent.{kind}@Exemple.fr",
        "password": "un-mot-de-passe-long",
        "organisation_id": org.id,
        "role": role,
    }
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "email", "organisation_id", "role", "is_active"}
    assert created["email"] == body["email"].lower()
    assert (created["organisation_id"], created["role"], created["is_active"]) == (
        org.id, role, True)
    login = await client.post(
        "/api/v1/auth/token", data={"username": body["email"], "password": body["password"]}
    )
    assert login.status_code == 200, login.text


async def test_the_operator_lists_the_users_of_one_organisation_with_their_role_and_state(
    client: httpx.AsyncClient, session: AsyncSession, app: Any, admin: Actor
) -> None:
    site = await make_org(session, OrganisationKind.site)
    first = await make_actor(session, app, OrganisationKind.site, org=site)
    second = await make_actor(session, app, OrganisationKind.site, org=site)
    await make_actor(session, app, OrganisationKind.site)  # another site's user
    second.user.is_active = False
    await session.flush()
    response = await client.get(f"/api/v1/organisations/{site.id}/users", headers=admin.headers)
    assert response.status_code == 200, response.text
    listed = {u["email"]: u for u in response.json()}
    assert set(listed) == {first.user.email, second.user.email}
    assert {u["role"] for u in listed.values()} == {"site_mediator"}
    assert {u["organisation_id"] for u in listed.values()} == {site.id}
    assert listed[first.user.email]["is_active"] is True
    assert listed[second.user.email]["is_active"] is False


async def test_the_users_of_an_unknown_organisation_are_not_found(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.get("/api/v1/organisations/987654321/users", headers=admin.headers)
    error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("kind", "role"),
    [
        ("site", "issuer_agent"),
        ("issuer", "site_mediator"),
        ("financer", "operator_admin"),
        ("operator", "financer"),
    ],
)
async def test_a_role_that_does_not_match_the_organisation_kind_is_refused(
    kind: str, role: str, client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    org = await make_org(session, OrganisationKind(kind))
    before = await user_count(session)
    body = {"email": "agent@exemple.fr", "password": "un-mot-de-passe-long",
            "organisation_id": org.id, "role": role}
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    err = error(response, 422, "wrong_organisation_kind")
    assert err["details"] == {"role": role, "organisation_kind": kind}
    assert await user_count(session) == before


async def test_an_email_is_taken_once_whatever_its_case(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    org = await make_org(session, OrganisationKind.issuer)
    body = {"email": "doublon@exemple.fr", "password": "un-mot-de-passe-long",
            "organisation_id": org.id, "role": "issuer_agent"}
    assert (await client.post("/api/v1/users", json=body, headers=admin.headers)).status_code == 201
    before = await user_count(session)
    again = await client.post(
        "/api/v1/users", json={**body, "email": "DOUBLON@exemple.fr"}, headers=admin.headers
    )
    error(again, 409, "email_taken")
    assert await user_count(session) == before


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [
        ({"password": "court"}, 422, "validation_error", "password"),
        ({"email": "pas-une-adresse"}, 422, "validation_error", "email"),
        ({"role": "superadmin"}, 422, "validation_error", "role"),
        ({"organisation_id": 10**12}, 404, "not_found", None),
    ],
)
async def test_a_bad_user_is_refused_and_not_created(
    changes: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: Actor,
) -> None:
    org = await make_org(session, OrganisationKind.issuer)
    before = await user_count(session)
    body = {"email": "agent.x@exemple.fr", "password": "un-mot-de-passe-long",
            "organisation_id": org.id, "role": "issuer_agent", **changes}
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    err = error(response, status, code)
    if field:
        assert [f["field"] for f in err["details"]["fields"]] == [field]
    assert await user_count(session) == before


# ------------------------------------------------------------------------------- qualification


async def test_a_site_is_qualified_suspended_requalified_then_withdrawn(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    site = await make_org(session, OrganisationKind.site, qualified=False)
    seen = []
    for action in ("qualify", "suspend", "qualify", "withdraw"):
        response = await client.post(f"/api/v1/sites/{site.id}/{action}", headers=admin.headers)
        assert response.status_code == 200, response.text
        seen.append(response.json()["qualification"])
    assert seen == ["qualified", "suspended", "qualified", "withdrawn"]
    await session.refresh(site)
    assert site.qualification == "withdrawn" and site.qualification_changed_at is not None


@pytest.mark.parametrize(
    ("path", "action"),
    [
        (["withdraw"], "qualify"),
        (["withdraw"], "suspend"),
        ([], "suspend"),  # a pending site was never qualified
    ],
)
async def test_impossible_qualification_changes_are_refused(
    path: list[str], action: str, client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    site = await make_org(session, OrganisationKind.site, qualified=False)
    for step in path:
        assert (await client.post(f"/api/v1/sites/{site.id}/{step}", headers=admin.headers)
                ).status_code == 200
    before = (await client.get(f"/api/v1/organisations/{site.id}", headers=admin.headers)).json()
    response = await client.post(f"/api/v1/sites/{site.id}/{action}", headers=admin.headers)
    err = error(response, 409, "invalid_transition")
    assert err["details"]["current"] == before["qualification"]
    after = (await client.get(f"/api/v1/organisations/{site.id}", headers=admin.headers)).json()
    assert after == before


async def test_qualifying_twice_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    site = await make_org(session, OrganisationKind.site)
    await session.refresh(site)
    changed_at = site.qualification_changed_at
    assert site.qualification == "qualified" and changed_at is not None
    response = await client.post(f"/api/v1/sites/{site.id}/qualify", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["qualification"] == "qualified"
    await session.refresh(site)
    assert site.qualification_changed_at == changed_at


async def test_only_sites_have_a_qualification(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    issuer = await make_org(session, OrganisationKind.issuer)
    error(await client.post(f"/api/v1/sites/{issuer.id}/qualify", headers=admin.headers),
          422, "not_a_site")
    error(await client.post(f"/api/v1/sites/{10**12}/qualify", headers=admin.headers),
          404, "not_found")


# -------------------------------------------------------------------------------- bank details


async def test_a_site_updates_its_own_bank_details(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    site = await make_actor(session, app, OrganisationKind.site)
    response = await client.put(
        f"/api/v1/organisations/{site.org.id}/bank-details",
        json={"iban": "FR76 3000 1007 9412 3456 7890 185", "bic": "BDFEFRPP"},
        headers=site.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["iban"], response.json()["bic"]) == (IBANS[1], "BDFEFRPP")


async def test_bad_bank_details_change_nothing(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    site = await make_actor(session, app, OrganisationKind.site)
    url = f"/api/v1/organisations/{site.org.id}/bank-details"
    error(await client.put(url, json={"iban": BAD_IBAN}, headers=site.headers),
          422, "invalid_iban")
    error(await client.put(url, json={"iban": IBANS[1], "bic": "XX"}, headers=site.headers),
          422, "invalid_bic")
    error(await client.put(url, json={}, headers=site.headers), 422, "validation_error")
    org = await client.get(f"/api/v1/organisations/{site.org.id}", headers=site.headers)
    assert org.json()["iban"] == IBANS[0]


async def test_an_issuer_has_no_bank_details(
    client: httpx.AsyncClient, session: AsyncSession, admin: Actor
) -> None:
    issuer = await make_org(session, OrganisationKind.issuer)
    response = await client.put(
        f"/api/v1/organisations/{issuer.id}/bank-details", json={"iban": IBANS[1]},
        headers=admin.headers,
    )
    error(response, 422, "validation_error")


# ------------------------------------------------------------------ every endpoint × every role

ROLES = ["operator_admin", "financer", "issuer_agent", "site_mediator", "anonymous"]
KIND_OF = {
    "operator_admin": OrganisationKind.operator,
    "financer": OrganisationKind.financer,
    "issuer_agent": OrganisationKind.issuer,
    "site_mediator": OrganisationKind.site,
}
A, F, I, S, N = ROLES  # noqa: E741 — short column names for the table below

# (name, method, path, body) → expected status per role. `{site}` is another organisation's
# site, `{own}` the caller's own organisation.
ENDPOINTS: list[tuple[str, str, str, Any, dict[str, int]]] = [
    ("me", "GET", "/api/v1/me", None, {A: 200, F: 200, I: 200, S: 200, N: 401}),
    ("create organisation", "POST", "/api/v1/organisations", "org",
     {A: 201, F: 403, I: 403, S: 403, N: 401}),
    ("list organisations", "GET", "/api/v1/organisations", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
    ("read another organisation", "GET", "/api/v1/organisations/{site}", None,
     {A: 200, F: 404, I: 404, S: 404, N: 401}),
    ("read own organisation", "GET", "/api/v1/organisations/{own}", None,
     {A: 200, F: 200, I: 200, S: 200, N: 401}),
    ("bank details of another", "PUT", "/api/v1/organisations/{site}/bank-details", "bank",
     {A: 200, F: 404, I: 404, S: 404, N: 401}),
    ("own bank details", "PUT", "/api/v1/organisations/{own}/bank-details", "bank",
     {A: 422, F: 200, I: 403, S: 200, N: 401}),  # an operator has no bank details
    ("qualify", "POST", "/api/v1/sites/{site}/qualify", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
    ("suspend", "POST", "/api/v1/sites/{site}/suspend", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
    ("withdraw", "POST", "/api/v1/sites/{site}/withdraw", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
    ("create user", "POST", "/api/v1/users", "user", {A: 201, F: 403, I: 403, S: 403, N: 401}),
    ("list another's users", "GET", "/api/v1/organisations/{site}/users", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
    ("list own users", "GET", "/api/v1/organisations/{own}/users", None,
     {A: 200, F: 403, I: 403, S: 403, N: 401}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
async def test_every_accounts_endpoint_answers_each_role_as_the_contract_says(
    role: str,
    name: str,
    method: str,
    path: str,
    body: Any,
    expected: dict[str, int],
    client: httpx.AsyncClient,
    session: AsyncSession,
    app: Any,
) -> None:
    site = await make_org(session, OrganisationKind.site)
    if role == "anonymous":
        headers: dict[str, str] = {}
        own = (await make_org(session, OrganisationKind.issuer)).id
    else:
        actor = await make_actor(session, app, KIND_OF[role])
        headers, own = actor.headers, actor.org.id
    issuer = await make_org(session, OrganisationKind.issuer)
    payload = {
        None: None,
        "org": org_body("issuer"),
        "bank": {"iban": IBANS[1], "bic": "BDFEFRPP"},
        "user": {"email": f"new.{role}@exemple.fr", "password": "un-mot-de-passe-long",
                 "organisation_id": issuer.id, "role": "issuer_agent"},
    }[body]
    url = path.format(site=site.id, own=own)
    response = await client.request(method, url, json=payload, headers=headers)
    assert response.status_code == expected[role], f"{role} {method} {url}: {response.text}"
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}
