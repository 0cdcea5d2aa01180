"""The public side over HTTP: a site edits its profile (opening hours checked, with the
position of an error), the directory lists qualified sites nearest first from a commune found
by name or postcode, its CSV passes the data standard's table schema, and « mon pass » tells
what is left on a booklet to whoever has its check code, and nothing to anyone else."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.ratelimit import RateLimits
from kit.settings import Settings
from pass_ import sites
from pass_.enums import OrganisationKind
from tests.api.test_issuance_api import World, assert_error, make_world
from tests.factories import make_actor, make_org
from tests.support import table_schema

SCHEMA = (
    Path(__file__).resolve().parent.parent / "data" / "schema-lieux-mediation-numerique-v1.0.2.json"
)


@pytest.fixture
async def world(session: AsyncSession, app: Any) -> World:
    return await make_world(session, app)


async def test_a_mediator_edits_the_profile_of_the_site_and_bad_hours_say_where(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/api/v1/sites/{world.site.org.id}/profile"
    body = {
        "adresse": "2 rue des Tests",
        "code_postal": "35000",
        "horaires": "Mo-Fr 09:00-12:00,14:00-17:30; Sa 09:00-12:00",
        "services": ["creer_courriel", "realiser_demarche"],
        "accessibilite": "Accès de plain-pied, toilettes adaptées",
        "telephone": "02 99 12 34 56",
        "courriel": "contact@mediatheque.example",
        "site_web": "https://mediatheque.example",
    }
    r = await client.patch(url, json=body, headers=world.site.headers)
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["telephone"] == "+33299123456"
    assert profile["horaires"] == body["horaires"]
    assert profile["services"] == ["creer_courriel", "realiser_demarche"]

    bad = await client.patch(
        url, json={"horaires": "Mo-Fr 09:00-12:0x"}, headers=world.site.headers
    )
    error = assert_error(bad, 422, "invalid_opening_hours")
    assert error["error"]["details"]["position"] == 16
    assert "caractère 16" in error["error"]["message"]
    unchanged = await client.patch(url, json={}, headers=world.site.headers)
    assert unchanged.json()["horaires"] == body["horaires"]  # nothing changed by the refusal

    wrong_postcode = await client.patch(
        url, json={"code_postal": "75001"}, headers=world.site.headers
    )
    assert_error(wrong_postcode, 422, "postcode_not_in_commune")

    stops = {
        "etapes": [
            {
                "lieu": "Place de la mairie",
                "adresse": "Place de la Mairie",
                "code_insee": "35001",
                "horaires": "Tu 09:00-12:00",
            },
            {"lieu": "Marché", "adresse": "Rue du Marché", "horaires": "Th 14:00-17:00x"},
        ]
    }
    bad_stop = await client.patch(url, json=stops, headers=world.site.headers)
    assert assert_error(bad_stop, 422, "invalid_opening_hours")["error"]["details"]["field"] == (
        "etapes[1].horaires"
    )


async def test_only_the_sites_mediators_and_the_operator_edit_its_profile(
    client: httpx.AsyncClient, world: World, session: AsyncSession, app: Any
) -> None:
    url = f"/api/v1/sites/{world.site.org.id}/profile"
    other_site = await make_actor(session, app, OrganisationKind.site)
    for actor in (other_site, world.issuer, world.financer):
        assert_error(
            await client.patch(url, json={"horaires": "Mo 10:00-12:00"}, headers=actor.headers),
            403,
            "forbidden",
        )
    ok = await client.patch(
        url, json={"horaires": "Mo 10:00-12:00"}, headers=world.operator.headers
    )
    assert ok.status_code == 200
    checked = await client.post(f"{url}/check", headers=world.operator.headers)
    assert checked.json()["profile_checked_at"] is not None
    assert_error(await client.post(f"{url}/check", headers=world.site.headers), 403, "forbidden")
    assert (await client.patch(url, json={})).status_code == 401


async def test_the_directory_lists_qualified_sites_nearest_first_from_a_postcode(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    acigne = await make_org(
        session, OrganisationKind.site, name="Espace numérique d'Acigné", commune_insee="35001"
    )
    rennes = await make_org(
        session, OrganisationKind.site, name="Cyberespace de Rennes", commune_insee="35238"
    )
    paris = await make_org(
        session, OrganisationKind.site, name="Point numérique Paris", commune_insee="75056"
    )
    pending = await make_org(
        session,
        OrganisationKind.site,
        name="Lieu en attente",
        commune_insee="35001",
        qualified=False,
    )
    r = await client.get("/api/v1/public/lieux", params={"q": "35690"})
    assert r.status_code == 200
    found = r.json()
    ids = [s["id"] for s in found]
    assert pending.id not in ids
    assert ids.index(acigne.id) < ids.index(rennes.id) < ids.index(paris.id)
    first = found[ids.index(acigne.id)]
    assert first["commune"] == "Acigné" and first["code_postal"] == "35690"
    assert first["distance_km"] == 0.0
    assert found[ids.index(rennes.id)]["distance_km"] == pytest.approx(10.8, abs=1.5)
    assert {
        "nom",
        "pivot",
        "adresse",
        "code_insee",
        "latitude",
        "longitude",
        "horaires",
        "services",
        "frais_a_charge",
        "date_maj",
    } <= set(first)
    by_name = await client.get("/api/v1/public/lieux", params={"q": "acigne"})
    assert by_name.json()[0]["id"] == acigne.id
    assert (await client.get("/api/v1/public/lieux", params={"q": "zzzzz"})).json() == []
    communes = (await client.get("/api/v1/public/communes", params={"q": "35690"})).json()
    assert communes[0]["nom"] == "Acigné"


async def test_open_now_follows_the_hours_in_paris_time() -> None:
    hours = "Mo-Fr 09:00-12:00"
    monday_10_paris = datetime.fromisoformat("2026-12-07T09:00:00+00:00")  # 10:00 in Paris
    monday_12_30_paris = datetime.fromisoformat("2026-12-07T11:30:00+00:00")
    assert sites.is_open(hours, monday_10_paris) is True
    assert sites.is_open(hours, monday_12_30_paris) is False
    assert sites.is_open(None, monday_10_paris) is None
    christmas = datetime.fromisoformat("2026-12-25T09:00:00+00:00")  # a Friday, public holiday
    assert sites.is_open("Mo-Fr 09:00-12:00; PH off", christmas) is False


async def test_the_csv_follows_the_data_standard_of_lieux_de_mediation_numerique(
    client: httpx.AsyncClient, world: World
) -> None:
    await client.patch(
        f"/api/v1/sites/{world.site.org.id}/profile",
        json={
            "horaires": "Mo-Fr 09:00-12:00",
            "services": ["creer_courriel"],
            "telephone": "0299123456",
            "etapes": [
                {"lieu": "Marché", "adresse": "Rue du Marché", "horaires": "Th 14:00-17:00"}
            ],
        },
        headers=world.site.headers,
    )
    r = await client.get("/api/v1/public/lieux.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    schema = table_schema.load(SCHEMA)
    assert table_schema.validate_csv(schema, r.text) == []
    line = next(x for x in r.text.splitlines() if world.site.org.siret in x)
    assert "Accepte le Pass numérique" in line and "Gratuit sous condition" in line
    assert "Itinérant" in line
    # The validator does see a broken file.
    broken = r.text.replace(world.site.org.siret, "12-34", 1)
    assert table_schema.validate_csv(schema, broken)


async def test_mon_pass_tells_what_is_left_to_whoever_has_the_check_code(
    client: httpx.AsyncClient, world: World
) -> None:
    booklet = world.active_booklet
    own = await client.get(f"/api/v1/booklets/{booklet.id}", headers=world.issuer.headers)
    code = own.json()["check_code"]
    assert len(code) == 6
    r = await client.get(f"/api/v1/public/booklets/{booklet.number}", params={"code": code.lower()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cheques_left"] == 5 and body["value_left_cents"] == 5 * 1000
    assert body["redeem_until"] == booklet.cheques[0].redeem_until.isoformat()
    assert "beneficiary_id" not in body and "reference" not in str(body)
    # The nearest qualified sites of the programme's territory (35): other tests' sites may come
    # first, so only where they are is checked.
    assert body["lieux"] and all(s["code_insee"].startswith("35") for s in body["lieux"])
    wrong_code = await client.get(
        f"/api/v1/public/booklets/{booklet.number}", params={"code": "000000"}
    )
    unknown = await client.get("/api/v1/public/booklets/CN-0000-0000", params={"code": code})
    a = assert_error(wrong_code, 404, "booklet_check_failed")
    b = assert_error(unknown, 404, "booklet_check_failed")
    assert a["error"]["message"] == b["error"]["message"]
    assert a["error"]["details"] == b["error"]["details"] == {}


async def test_mon_pass_is_rate_limited_per_booklet_like_cheque_checks(
    client: httpx.AsyncClient, world: World, app: Any
) -> None:
    saved = getattr(app.state, "rate_limits", None)
    app.state.rate_limits = RateLimits.from_settings(
        Settings(
            rate_limit_per_user_per_minute=1, rate_limit_per_ip_per_minute=1000, rate_limit_burst=3
        )
    )
    try:
        url = f"/api/v1/public/booklets/{world.active_booklet.number}"
        answers = [
            (await client.get(url, params={"code": f"00000{i}"})).status_code for i in range(4)
        ]
        assert answers == [404, 404, 404, 429]
    finally:
        app.state.rate_limits = saved
