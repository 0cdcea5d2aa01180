"""Every road of the redemption is the one database function (`pass_redeem`): the API under
concurrency, a deactivated account, retired keys and re-cased tokens online and offline, and
the mediator's scan page sharing the API's idempotency record.

Committed data and the application's real sessions (`committed_client`): these requests take
exactly the road a scanner's requests take in production, transactions included.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import service as ledger
from pass_ import redemption as svc
from pass_.enums import OrganisationKind
from pass_.tokens import Keyring, read_unverified
from tests.factories import Actor, make_actor
from tests.pass_.redemption_factories import Scene, make_scene

REDEEM = "/api/v1/redemptions"
PASSWORD = "motdepasse-solide-42"


async def committed(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, cheques: int, sites: int = 1,
    territory: tuple[str, ...] = ("35",),
) -> tuple[Scene, list[Actor]]:
    async with sessionmaker() as session:
        scene = await make_scene(session, app.state.keyring, cheques=cheques, territory=territory)
        actors = [await make_actor(session, app, OrganisationKind.site, qualified=True)
                  for _ in range(sites)]
        await session.commit()
    return scene, actors


async def redeem(client: httpx.AsyncClient, who: Actor, code: str,
                 key: str | None = None) -> httpx.Response:
    return await client.post(
        REDEEM,
        json={"code": code, "service": "realiser_demarche", "demarche_family": "caf"},
        headers={**who.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


async def scalar(db: AsyncSession, sql: str, **params: Any) -> Any:
    value = await db.scalar(text(sql), params)
    await db.commit()  # a fresh snapshot for the next read
    return value


async def test_100_cheques_20_attempts_3_sites_over_http_redeem_exactly_once(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    """DESIGN §5 over HTTP: scanned codes and typed serials, all at once, each attempt with
    its own key, from three sites."""
    cheques, attempts = 100, 20
    scene, sites = await committed(sessionmaker, app, cheques, sites=3)
    gate = asyncio.Semaphore(30)

    async def attempt(n: int) -> tuple[int, dict[str, Any], int, int]:
        cheque, site = scene.cheques[n // attempts], sites[n % 3]
        code = cheque.token if n % 2 else cheque.serial.lower()
        async with gate:
            response = await redeem(committed_client, site, code)
        return response.status_code, response.json(), cheque.id, site.org.id  # type: ignore[return-value]

    outcomes = await asyncio.gather(*(attempt(n) for n in range(cheques * attempts)))

    assert Counter(status for status, *_ in outcomes) == {
        201: cheques, 409: cheques * (attempts - 1)}
    for status, body, _, _ in outcomes:
        if status == 409:
            assert body["error"]["code"] == "cheque_already_redeemed"
            assert set(body["error"]["details"]) == {"redeemed_at"}  # when, never where
    winners = Counter(cheque for status, _, cheque, _ in outcomes if status == 201)
    assert winners == {c.id: 1 for c in scene.cheques}
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids) "
                        "AND reversed_at IS NULL", ids=list(winners)) == cheques
    per_site = Counter(site for status, _, _, site in outcomes if status == 201)
    balances = await ledger.balances(
        db, [f"programme:{scene.programme_id}:outstanding",
             *(f"site:{s.org.id}:payable" for s in sites)])
    assert balances[f"programme:{scene.programme_id}:outstanding"] == 0
    for site in sites:
        assert balances[f"site:{site.org.id}:payable"] == per_site[site.org.id] * 1000
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []
    assert await svc.audit_double_redemptions(db, programme_id=scene.programme_id) == []


async def test_a_deactivated_account_is_refused_even_with_a_valid_token(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 1)
    await db.execute(text("UPDATE app_user SET is_active = false WHERE id = :id"), {"id": site.id})
    await db.commit()
    key = str(uuid.uuid4())

    response = await redeem(committed_client, site, scene.cheques[0].token, key)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=scene.cheques[0].id) == "active"
    # Authentication is not an answer to replay: the key stays free.
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE user_id = :u "
                        "AND key = :k", u=site.id, k=key) == 0


async def test_a_token_of_a_retired_key_is_refused_and_a_recased_one_still_redeems(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession, tmp_path: Path,
) -> None:
    # A keyring of this test's own: retiring a key must not touch the other tests' cheques.
    shared = app.state.keyring
    app.state.keyring = Keyring.load_or_create(tmp_path / "keys")
    try:
        scene, (site,) = await committed(sessionmaker, app, 3)
        # A copy of the stored token in lower case is the same token.
        response = await redeem(committed_client, site, scene.cheques[1].token.lower())
        assert response.status_code == 201, response.text

        # Tokens signed by a retired key no longer verify, the exact stored copy included.
        old_kid = read_unverified(scene.cheques[0].token).kid
        app.state.keyring.rotate()
        app.state.keyring.retire(old_kid)
        response = await redeem(committed_client, site, scene.cheques[0].token)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_token"
        assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                            id=scene.cheques[0].id) == "active"
        # Offline batches authenticate tokens the same way.
        batch = await committed_client.post(
            "/api/v1/redemptions/batch",
            json={"items": [{"code": scene.cheques[2].token, "service": "naviguer_web",
                             "scanned_at": datetime.now(UTC).isoformat(),
                             "idempotency_key": str(uuid.uuid4())}]},
            headers=site.headers,
        )
        assert batch.status_code == 200, batch.text
        (item,) = batch.json()["results"]
        assert (item["status"], item["error"]["code"]) == ("refused", "invalid_token")
    finally:
        app.state.keyring = shared


async def test_the_scan_page_redeems_through_the_same_road_and_record_as_the_api(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    """A scan whose page answer was lost and that the page then sends to the API (or queues
    offline) under the same key replays the page's redemption: one record, one redemption."""
    scene, (site,) = await committed(sessionmaker, app, 2)
    login = await committed_client.get("/connexion?raison=requise")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf
    signed_in = await committed_client.post("/connexion", data={
        "email": site.user.email, "password": PASSWORD, "csrf_token": csrf.group(1)})
    assert signed_in.status_code == 303, signed_in.text
    key = str(uuid.uuid4())
    cheque = scene.cheques[0]

    page = await committed_client.post("/mediateur/encaisser", data={
        "code": cheque.token, "service": "realiser_demarche", "demarche_family": "caf",
        "idempotency_key": key, "csrf_token": csrf.group(1)})
    assert page.status_code == 200, page.text
    assert "Chèque encaissé" in page.text
    # A refusal on the page is the function's too, in the mediator's words.
    elsewhere, _ = await committed(sessionmaker, app, 1, sites=0, territory=("13",))
    refused = await committed_client.post("/mediateur/encaisser", data={
        "code": elsewhere.cheques[0].token, "service": "realiser_demarche",
        "idempotency_key": str(uuid.uuid4()), "csrf_token": csrf.group(1)})
    assert "Chèque d&#39;un autre territoire" in refused.text or \
        "Chèque d'un autre territoire" in refused.text
    committed_client.cookies.clear()

    replay = await redeem(committed_client, site, cheque.token, key)
    assert replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    stored = await scalar(db, "SELECT CAST(response AS text) FROM idempotency_record "
                          "WHERE user_id = :u AND key = :k", u=site.id, k=key)
    assert replay.content == stored.encode()
    assert json.loads(stored)["cheque_serial"] == cheque.serial
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = :c",
                        c=cheque.id) == 1
