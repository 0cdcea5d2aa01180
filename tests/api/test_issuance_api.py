"""Issuance over HTTP: programmes, beneficiaries, booklets, orders — the printed booklet scans
back to signed tokens, each endpoint lets in only the right role of the right organisation,
and refusals come in the error shape of DESIGN.md §7 with nothing changed."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_today, utcnow
from pass_ import issuance
from pass_.enums import OrganisationKind
from pass_.models import Booklet, Programme
from pass_.programmes import Actor
from pass_.tokens import verify_with_jwks
from tests.factories import Actor as TestActor
from tests.factories import make_actor, make_org
from tests.pass_.factories import Funded, actor_of, make_beneficiary, make_programme
from tests.support.system import ensure_debian_packages


def looks_french(message: str) -> bool:
    words = set(message.lower().replace("'", " ").replace(",", " ").split())
    return bool(words & {"le", "la", "les", "de", "du", "un", "une", "des", "doit", "est"})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"].endswith((".", "!")), body
    return body  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- a small world


@dataclass
class World:
    funded: Funded
    operator: TestActor
    issuer: TestActor  # an agent of the programme's issuer
    other_issuer: TestActor  # an agent of an issuer outside the programme
    financer: TestActor  # a financer of the programme
    site: TestActor  # a mediator of a qualified site in the territory
    beneficiary_id: int
    other_beneficiary_id: int  # the other issuer's
    active_booklet: issuance.BookletRead
    order_id: int
    in_stock_numbers: list[str]

    def by_role(self) -> dict[str, TestActor]:
        return {
            "operator": self.operator,
            "issuer": self.issuer,
            "other_issuer": self.other_issuer,
            "financer": self.financer,
            "site": self.site,
        }


async def make_world(session: AsyncSession, app: Any) -> World:
    issuer_org = await make_org(session, OrganisationKind.issuer, name="CCAS d'Essai")
    funded = await make_programme(session, issuers=[issuer_org])
    issuer = await make_actor(session, app, OrganisationKind.issuer, org=issuer_org)
    financer = await make_actor(session, app, OrganisationKind.financer, org=funded.local)
    other_issuer = await make_actor(session, app, OrganisationKind.issuer)
    site = await make_actor(
        session,
        app,
        OrganisationKind.site,
        name="Médiathèque de l'Essai",
        commune_insee="35238",
        address="2 rue des Tests, Essai-sur-Vilaine",
    )
    operator = await make_actor(session, app, OrganisationKind.operator)
    beneficiary = await make_beneficiary(session, issuer_org)
    other_beneficiary = await make_beneficiary(session, other_issuer.org)
    keyring = app.state.keyring
    booklet = await issuance.issue_booklet(
        session,
        keyring=keyring,
        actor=actor_of(issuer.user),
        programme_id=funded.id,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        size=5,
        now=utcnow(),
    )
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=actor_of(operator.user),
        programme_id=funded.id,
        issuer_id=issuer_org.id,  # type: ignore[arg-type]
        booklets=3,
        size=5,
        now=utcnow(),
    )
    return World(
        funded=funded,
        operator=operator,
        issuer=issuer,
        other_issuer=other_issuer,
        financer=financer,
        site=site,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        other_beneficiary_id=other_beneficiary.id,  # type: ignore[arg-type]
        active_booklet=booklet,
        order_id=order.id,
        in_stock_numbers=[b.number for b in order.booklets],
    )


@pytest.fixture
async def world(session: AsyncSession, app: Any) -> World:
    return await make_world(session, app)


def programme_body(world: World, **changes: Any) -> dict[str, Any]:
    year = paris_today().year
    body: dict[str, Any] = {
        "name": "Pass numérique Essai",
        "territory": ["35"],
        "face_value_cents": 1000,
        "booklet_sizes": [5, 10],
        "valid_from": f"{year}-01-01",
        "valid_until": f"{year}-12-31",
        "redeem_until": f"{year + 1}-01-31",
        "state_share_bp": 5000,
        "financers": [
            {
                "organisation_id": world.funded.state.id,
                "role": "state",
                "commitment_cents": 100_000,
            },
            {
                "organisation_id": world.funded.local.id,
                "role": "local",
                "commitment_cents": 100_000,
                "weight": 1,
            },
        ],
        "issuers": [{"organisation_id": world.issuer.org.id, "quota_cheques": 100}],
    }
    body.update(changes)
    return body


# --------------------------------------------------------------------------- the printed booklet


@pytest.fixture(scope="module")
def poppler() -> None:
    ensure_debian_packages(["poppler-utils"], binaries=["pdftoppm", "pdftotext"])


def pdf_pages(content: bytes, tmp_path: Path) -> list[Image.Image]:
    source = tmp_path / "booklet.pdf"
    source.write_bytes(content)
    subprocess.run(
        ["pdftoppm", "-r", "150", "-png", str(source), str(tmp_path / "page")], check=True
    )
    return [Image.open(p) for p in sorted(tmp_path.glob("page-*.png"))]


def pdf_text(content: bytes, tmp_path: Path) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(content)
    return subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, text=True
    ).stdout


async def test_a_booklet_issued_through_the_api_prints_qr_codes_that_verify_against_the_jwks(
    client: httpx.AsyncClient, world: World, tmp_path: Path, poppler: None
) -> None:
    agent = world.issuer.headers
    created = await client.post(
        "/api/v1/beneficiaries",
        json={"reference": "PDF-0001", "need_level": 1, "birth_year": 1948},
        headers=agent,
    )
    assert created.status_code == 201, created.text
    issued = await client.post(
        "/api/v1/booklets",
        json={"programme_id": world.funded.id, "beneficiary_id": created.json()["id"], "size": 10},
        headers=agent,
    )
    assert issued.status_code == 201, issued.text
    booklet = issued.json()
    assert {"id", "number", "cheques"} <= booklet.keys()
    cheques = booklet["cheques"]
    assert len(cheques) == 10
    for cheque in cheques:
        assert {"id", "serial", "token", "value_cents", "valid_until", "redeem_until"} <= set(
            cheque
        )
        assert cheque["status"] == "active" and cheque["value_cents"] == 1000

    response = await client.get(f"/api/v1/booklets/{booklet['id']}/pdf", headers=agent)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    decoded = []
    for page in pdf_pages(response.content, tmp_path):
        decoded += [
            r.text
            for r in zxingcpp.read_barcodes(page)
            if r.format == zxingcpp.BarcodeFormat.QRCode
        ]
    by_token = {c["token"]: c for c in cheques}
    # The cover's QR code opens the booklet's « mon pass » page (number and check code), each
    # cheque's holds its signed token.
    cover = f"http://127.0.0.1:8000/mon-pass/{booklet['number']}?code={booklet['check_code']}"
    assert cover in decoded
    decoded.remove(cover)
    assert sorted(decoded) == sorted(by_token)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    for token in decoded:
        claims = verify_with_jwks(token, jwks)
        cheque = by_token[token]
        assert claims.serial == cheque["serial"]
        assert claims.value_cents == cheque["value_cents"]
        assert claims.redeem_until.isoformat() == cheque["redeem_until"]
        assert claims.programme_id == world.funded.id
    text = pdf_text(response.content, tmp_path)
    for cheque in cheques:
        assert cheque["serial"] in text
    assert booklet["number"] in text
    # The cover lists the qualified sites of the territory, with their town.
    assert "Médiathèque de l'Essai" in text and "Essai-sur-Vilaine" in text


async def test_a_bulk_order_gives_one_pdf_with_every_booklet(
    client: httpx.AsyncClient, world: World, tmp_path: Path, poppler: None
) -> None:
    ordered = await client.post(
        f"/api/v1/programmes/{world.funded.id}/orders",
        json={"issuer_id": world.issuer.org.id, "booklets": 2, "size": 5},
        headers=world.issuer.headers,
    )
    assert ordered.status_code == 201, ordered.text
    order = ordered.json()
    assert order["booklet_count"] == 2 and order["cheque_count"] == 10
    response = await client.get(order["pdf_url"], headers=world.operator.headers)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    text = pdf_text(response.content, tmp_path)
    for booklet in order["booklets"]:
        assert booklet["number"] in text
        stock = await client.get(f"/api/v1/booklets/{booklet['id']}", headers=world.issuer.headers)
        assert stock.json()["status"] == "in_stock"
        for cheque in stock.json()["cheques"]:
            assert cheque["serial"] in text


# --------------------------------------------------------------------------- roles


ROLES = ("operator", "issuer", "other_issuer", "financer", "site")


def endpoints(world: World) -> list[tuple[str, str, dict[str, Any] | None, dict[str, int]]]:
    """(method, path, body, status by role) — roles not listed must get 403 `forbidden`.
    Calls that change state come with their allowed role last (see the test)."""
    pid = world.funded.id
    booklet = world.active_booklet.id
    stock = world.in_stock_numbers
    return [
        ("POST", "/api/v1/programmes", programme_body(world), {"operator": 201}),
        (
            "GET",
            "/api/v1/programmes",
            None,
            {r: 200 for r in ROLES},
        ),
        (
            "GET",
            f"/api/v1/programmes/{pid}",
            None,
            {"operator": 200, "issuer": 200, "financer": 200, "site": 200, "other_issuer": 404},
        ),
        (
            "POST",
            f"/api/v1/programmes/{pid}/orders",
            {"issuer_id": world.issuer.org.id, "booklets": 1, "size": 5},
            {"other_issuer": 403, "operator": 201, "issuer": 201},
        ),
        (
            "GET",
            f"/api/v1/orders/{world.order_id}",
            None,
            {"operator": 200, "issuer": 200, "other_issuer": 404},
        ),
        (
            "GET",
            f"/api/v1/orders/{world.order_id}/pdf",
            None,
            {"operator": 200, "issuer": 200, "other_issuer": 404},
        ),
        (
            "POST",
            "/api/v1/beneficiaries",
            {"reference": "ROLE-1", "need_level": 2},
            {"issuer": 201, "other_issuer": 201},
        ),
        (
            "GET",
            "/api/v1/beneficiaries?reference=BEN",
            None,
            {"issuer": 200, "other_issuer": 200},
        ),
        (
            "GET",
            f"/api/v1/beneficiaries/{world.beneficiary_id}",
            None,
            {"issuer": 200, "other_issuer": 404},
        ),
        (
            "POST",
            "/api/v1/booklets",
            {"programme_id": pid, "beneficiary_id": world.beneficiary_id, "size": 5},
            {"other_issuer": 403, "issuer": 201},
        ),
        ("GET", "/api/v1/booklets", None, {"issuer": 200, "other_issuer": 200}),
        (
            "GET",
            f"/api/v1/booklets?number={stock[0]}",
            None,
            {"issuer": 200, "other_issuer": 200},
        ),
        (
            "GET",
            f"/api/v1/booklets/{booklet}",
            None,
            {"issuer": 200, "other_issuer": 404},
        ),
        (
            "GET",
            f"/api/v1/booklets/{stock[1]}",
            None,
            {"issuer": 200, "other_issuer": 404},
        ),
        (
            "GET",
            f"/api/v1/booklets/{booklet}/pdf",
            None,
            {"issuer": 200, "other_issuer": 404},
        ),
        (
            "POST",
            f"/api/v1/booklets/{stock[0]}/hand-out",
            {"beneficiary_id": world.beneficiary_id},
            {"other_issuer": 404, "issuer": 200},
        ),
        (
            "POST",
            f"/api/v1/booklets/{booklet}/cancel",
            {"reason": "Carnet perdu"},
            {"other_issuer": 404, "issuer": 200},
        ),
    ]


ENDPOINT_COUNT = 17


@pytest.mark.parametrize("index", range(ENDPOINT_COUNT))
async def test_each_endpoint_lets_in_only_the_right_role_of_the_right_organisation(
    client: httpx.AsyncClient, world: World, index: int
) -> None:
    table = endpoints(world)
    assert len(table) == ENDPOINT_COUNT
    method, path, body, allowed = table[index]
    anonymous = await client.request(method, path, json=body)
    assert_error(anonymous, 401, "unauthenticated")
    actors = world.by_role()
    # Refused roles first, then the allowed ones in the table's order (a change of state last).
    order = [r for r in ROLES if r not in allowed] + list(allowed)
    for role in order:
        response = await client.request(method, path, json=body, headers=actors[role].headers)
        expected = allowed.get(role, 403)
        if expected == 403:
            assert_error(response, 403, "forbidden")
        elif expected == 404:
            assert_error(response, 404, "not_found")
        else:
            assert response.status_code == expected, (role, response.text)
            if response.headers["content-type"].startswith("application/json"):
                assert "error" not in response.json()


async def test_a_search_by_reference_shows_only_the_agents_own_beneficiaries(
    client: httpx.AsyncClient, world: World
) -> None:
    mine = await client.get("/api/v1/beneficiaries?reference=BEN", headers=world.issuer.headers)
    theirs = await client.get(
        "/api/v1/beneficiaries?reference=BEN", headers=world.other_issuer.headers
    )
    assert [b["id"] for b in mine.json()] == [world.beneficiary_id]
    assert [b["id"] for b in theirs.json()] == [world.other_beneficiary_id]


async def test_the_history_lists_only_the_agents_own_booklets(
    client: httpx.AsyncClient, world: World
) -> None:
    mine = (await client.get("/api/v1/booklets", headers=world.issuer.headers)).json()
    theirs = (await client.get("/api/v1/booklets", headers=world.other_issuer.headers)).json()
    assert mine["total"] == 4 and theirs["total"] == 0
    found = (
        await client.get(
            f"/api/v1/booklets?number={world.in_stock_numbers[2].lower()}",
            headers=world.issuer.headers,
        )
    ).json()
    assert [b["number"] for b in found["items"]] == [world.in_stock_numbers[2]]


# --------------------------------------------------------------------------- refusals


async def count_programmes(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Programme)) or 0)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"state_share_bp": 6000}, "invalid_state_share"),
        ({"valid_from": "2031-06-01", "valid_until": "2031-05-01"}, "invalid_dates"),
        ({"territory": ["123456"]}, "invalid_territory"),
        ({"booklet_sizes": [0, 5]}, "invalid_booklet_sizes"),
        ({"face_value_cents": -1000}, "invalid_face_value"),
        ({"issuers": []}, "issuer_required"),
        ({"financer_fee_bp": 20_000}, "invalid_fee"),
    ],
)
async def test_a_broken_programme_rule_is_refused_in_french_and_nothing_is_created(
    client: httpx.AsyncClient,
    session: AsyncSession,
    world: World,
    changes: dict[str, Any],
    code: str,
) -> None:
    before = await count_programmes(session)
    response = await client.post(
        "/api/v1/programmes", json=programme_body(world, **changes), headers=world.operator.headers
    )
    body = assert_error(response, 422, code)
    assert looks_french(body["error"]["message"]), body
    assert await count_programmes(session) == before


async def test_a_second_state_financer_and_an_unknown_family_are_refused(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    caf = await make_org(session, OrganisationKind.financer)
    body = programme_body(world)
    body["financers"].append({"organisation_id": caf.id, "role": "state", "commitment_cents": 1000})
    assert_error(
        await client.post("/api/v1/programmes", json=body, headers=world.operator.headers),
        422,
        "several_state_financers",
    )
    body = programme_body(world)
    body["financers"].append(
        {
            "organisation_id": caf.id,
            "role": "operator",
            "commitment_cents": 1000,
            "demarche_families": ["caf", "pas_une_famille"],
        }
    )
    refused = assert_error(
        await client.post("/api/v1/programmes", json=body, headers=world.operator.headers),
        422,
        "validation_error",
    )
    assert "choix possibles" in refused["error"]["message"]
    assert "financers.2.demarche_families.1" in refused["error"]["message"]


async def test_a_created_programme_answers_with_its_capacity_and_live_figures(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await client.post(
        "/api/v1/programmes", json=programme_body(world), headers=world.operator.headers
    )
    assert created.status_code == 201, created.text
    programme = created.json()
    assert programme["issuing_capacity_cents"] == 200_000
    assert programme["figures"]["remaining_capacity_cents"] == 200_000
    detail = await client.get(
        f"/api/v1/programmes/{world.funded.id}", headers=world.financer.headers
    )
    figures = detail.json()["figures"]
    assert figures["active_cents"] == 5_000 and figures["in_stock_cheques"] == 15
    assert figures["remaining_capacity_cents"] == 1_000_000 - 5_000
    [issuer] = detail.json()["issuers"]
    assert (issuer["quota_cheques"], issuer["issued_cheques"]) == (1000, 5)


async def test_capacity_exhaustion_answers_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    issuer = await make_actor(session, app, OrganisationKind.issuer)
    funded = await make_programme(
        session, issuers=[issuer.org], state_cents=5_000, local_cents=5_000
    )
    beneficiary = await make_beneficiary(session, issuer.org)
    body = {"programme_id": funded.id, "beneficiary_id": beneficiary.id, "size": 10}
    first = await client.post("/api/v1/booklets", json=body, headers=issuer.headers)
    assert first.status_code == 201, first.text
    refused = await client.post("/api/v1/booklets", json=body, headers=issuer.headers)
    assert_error(refused, 409, "programme_capacity_exceeded")
    booklets = await session.scalar(
        select(func.count()).select_from(Booklet).where(Booklet.programme_id == funded.id)
    )
    assert booklets == 1
    wrong_size = await client.post(
        "/api/v1/booklets", json={**body, "size": 7}, headers=issuer.headers
    )
    assert_error(wrong_size, 422, "invalid_booklet_size")


async def test_hand_out_and_cancel_by_printed_number(
    client: httpx.AsyncClient, world: World
) -> None:
    agent = world.issuer.headers
    number = world.in_stock_numbers[1]
    handed = await client.post(
        f"/api/v1/booklets/{number.lower().replace('-', '')}/hand-out",
        json={"beneficiary_id": world.beneficiary_id},
        headers=agent,
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["status"] == "active"
    assert {c["status"] for c in handed.json()["cheques"]} == {"active"}
    again = await client.post(
        f"/api/v1/booklets/{number}/hand-out",
        json={"beneficiary_id": world.beneficiary_id},
        headers=agent,
    )
    assert_error(again, 409, "booklet_not_in_stock")
    # Another issuer's beneficiary cannot receive this issuer's booklet.
    other = await client.post(
        f"/api/v1/booklets/{world.in_stock_numbers[2]}/hand-out",
        json={"beneficiary_id": world.other_beneficiary_id},
        headers=agent,
    )
    assert_error(other, 404, "not_found")
    cancelled = await client.post(
        f"/api/v1/booklets/{number}/cancel", json={"reason": "X"}, headers=agent
    )
    assert cancelled.status_code == 422  # a reason of at least 3 characters
    cancelled = await client.post(
        f"/api/v1/booklets/{number}/cancel", json={"reason": "Carnet volé"}, headers=agent
    )
    assert cancelled.status_code == 200, cancelled.text
    assert {c["status"] for c in cancelled.json()["cheques"]} == {"cancelled"}
    assert_error(
        await client.post(
            f"/api/v1/booklets/{number}/cancel", json={"reason": "Carnet volé"}, headers=agent
        ),
        409,
        "booklet_already_cancelled",
    )
    assert_error(await client.get("/api/v1/booklets/CN-ZZZZ-ZZZZ", headers=agent), 404, "not_found")
    assert_error(await client.get("/api/v1/booklets/n'importe", headers=agent), 404, "not_found")


async def test_a_duplicate_reference_is_a_conflict_and_dates_are_checked(
    client: httpx.AsyncClient, world: World
) -> None:
    agent = world.issuer.headers
    body = {"reference": "DOUBLE-1", "need_level": 3, "commune_insee": "35238"}
    assert (await client.post("/api/v1/beneficiaries", json=body, headers=agent)).status_code == 201
    assert_error(
        await client.post("/api/v1/beneficiaries", json=body, headers=agent),
        409,
        "beneficiary_exists",
    )
    assert_error(
        await client.post(
            "/api/v1/beneficiaries",
            json={"reference": "X-2", "need_level": 4},
            headers=agent,
        ),
        422,
        "validation_error",
    )
    assert_error(
        await client.post(
            "/api/v1/beneficiaries",
            json={"reference": "X-3", "need_level": 1, "commune_insee": "123"},
            headers=agent,
        ),
        422,
        "invalid_insee",
    )


def test_actor_of_copies_the_principal() -> None:
    # The routers build the domain's Actor from the request's principal.
    from api.security import Principal
    from pass_.enums import Role

    actor = Actor.of(Principal(user_id=3, organisation_id=7, role=Role.issuer_agent))
    assert actor == Actor(3, 7, Role.issuer_agent)
