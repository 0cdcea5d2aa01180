"""The one-statement redemption (`pass_.redemption.redeem_at_once`, taken by
`POST /api/v1/redemptions` for a genuine QR code under a new key): it must write exactly what
the general path writes, answer exactly what it answers, and give way to it for everything else.

Committed data and the application's own asyncpg pool, as in production: the path runs outside
the test's rolled-back transaction, so these tests commit. Which path served a request is seen
with a spy on `redeem_cheque` (the general path's entry point), not a mock: it still runs.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.idempotency import Answer
from ledger import service as ledger
from ledger.audit import audit_ledger
from ledger.canonical import content_hash
from ledger.sealer import seal_once
from pass_ import redemption as svc
from pass_.enums import OrganisationKind
from pass_.redemption_schemas import RedemptionRead
from pass_.tokens import Keyring, read_unverified
from tests.factories import Actor, make_actor
from tests.pass_.redemption_factories import Scene, make_scene

REDEEM = "/api/v1/redemptions"


def spy_on(monkeypatch: pytest.MonkeyPatch, name: str, noted: Any) -> list[Any]:
    """What `noted(kwargs)` says of each call of `pass_.redemption.<name>`, which still runs."""
    calls: list[Any] = []
    real = getattr(svc, name)

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(noted(kwargs))
        return await real(*args, **kwargs)

    monkeypatch.setattr(svc, name, spy)
    return calls


@pytest.fixture
def general_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The codes that went through `redeem_cheque` (the general path), in order."""
    return spy_on(monkeypatch, "redeem_cheque", lambda kwargs: kwargs["code"])


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


async def three_sites_open(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, client: httpx.AsyncClient,
    cheques: int,
) -> tuple[Scene, list[Actor]]:
    """`cheques` cheques to contend for and three sites, each with its payable account (made
    by a first redemption, of one of three more cheques)."""
    scene, sites = await committed(sessionmaker, app, cheques + 3, sites=3)
    for n, site in enumerate(sites):
        response = await redeem(client, site, scene.cheques[cheques + n].serial)
        assert response.status_code == 201, response.text
    return scene, sites


async def first_redemption(client: httpx.AsyncClient, site: Actor, scene: Scene) -> None:
    """A site's first redemption creates its payable account (general path); the one-statement
    path needs the account to exist."""
    response = await redeem(client, site, scene.cheques[-1].serial)
    assert response.status_code == 201, response.text


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


async def scalar(db: AsyncSession, sql: str, **params: Any) -> Any:
    value = await db.scalar(text(sql), params)
    await db.commit()  # a fresh snapshot for the next read
    return value


async def test_a_scanned_cheque_is_redeemed_in_one_statement_with_what_the_general_path_writes(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_path: list[str], db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 3)
    await first_redemption(committed_client, site, scene)
    cheque = scene.cheques[0]
    key = str(uuid.uuid4())

    response = await redeem(committed_client, site, cheque.token, key)

    assert response.status_code == 201, response.text
    assert general_path == [scene.cheques[-1].serial]  # the first one only
    body = response.json()
    # The very bytes the general path would have answered and stored.
    expected = Answer.of(201, RedemptionRead(
        id=body["id"], cheque_serial=cheque.serial, value_cents=1000,
        redeemed_at=datetime.fromisoformat(body["redeemed_at"]), site_id=site.org.id,
    ).model_dump(mode="json")).body
    assert response.content.decode() == expected
    assert response.headers["content-type"] == "application/json"
    stored = (await db.execute(text(
        "SELECT request_hash, status_code, CAST(response AS text) FROM idempotency_record "
        "WHERE user_id = :u AND key = :k"), {"u": site.id, "k": key})).one()
    assert (stored[1], stored[2]) == (201, expected)
    row = (await db.execute(text(
        "SELECT cheque_id, site_id, user_id, value_cents, service, demarche_family, "
        "redeemed_at FROM redemption WHERE id = :id"), {"id": body["id"]})).one()
    assert row[:6] == (cheque.id, site.org.id, site.id, 1000, "realiser_demarche", "caf")
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id", id=cheque.id) == "redeemed"
    entry = await ledger.get_entry(db, f"redeem:{body['id']}")
    postings = [(f"programme:{scene.programme_id}:outstanding", -1000),
                (f"site:{site.org.id}:payable", 1000)]
    assert entry is not None
    assert (entry.kind, entry.memo, sorted(entry.postings)) == (
        "redemption", {"serial": cheque.serial}, postings)
    assert entry.content_hash == content_hash("redemption", postings, {"serial": cheque.serial})
    assert entry.created_at == row[6]
    # Both paths' entries and rows agree with the cheques, as the audit recomputes them.
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []


async def test_a_retry_of_a_one_statement_redemption_replays_it_byte_for_byte(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
    key = str(uuid.uuid4())
    first = await redeem(committed_client, site, scene.cheques[0].token, key)
    again = await redeem(committed_client, site, scene.cheques[0].token, key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = :c",
                        c=scene.cheques[0].id) == 1


async def test_a_used_key_with_another_cheque_is_a_conflict_and_the_cheque_stays_active(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 3)
    await first_redemption(committed_client, site, scene)
    key = str(uuid.uuid4())
    assert (await redeem(committed_client, site, scene.cheques[0].token, key)).status_code == 201
    before = await scalar(db, "SELECT count(*) FROM ledger_entry")

    response = await redeem(committed_client, site, scene.cheques[1].token, key)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=scene.cheques[1].id) == "active"
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = :c",
                        c=scene.cheques[1].id) == 0
    assert await scalar(db, "SELECT count(*) FROM ledger_entry") == before


async def test_a_deactivated_account_is_refused_even_with_a_valid_token(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
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


async def test_a_refusal_is_explained_and_stored_by_the_general_path(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_path: list[str], db: AsyncSession,
) -> None:
    here, (site,) = await committed(sessionmaker, app, 1)
    await first_redemption(committed_client, site, here)
    elsewhere, _ = await committed(sessionmaker, app, 1, sites=0, territory=("13",))
    key = str(uuid.uuid4())

    response = await redeem(committed_client, site, elsewhere.cheques[0].token, key)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "site_not_eligible"
    assert general_path[-1] == elsewhere.cheques[0].token
    stored = await scalar(db, "SELECT CAST(response AS text) FROM idempotency_record "
                          "WHERE user_id = :u AND key = :k", u=site.id, k=key)
    assert json.loads(stored)["error"]["code"] == "site_not_eligible"
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=elsewhere.cheques[0].id) == "active"


async def test_100_cheques_20_attempts_3_sites_over_http_both_paths_redeem_exactly_once(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    """DESIGN §5 over HTTP: scanned codes take the one-statement path, typed serials the
    general one, all at once, each attempt with its own key."""
    cheques, attempts = 100, 20
    scene, sites = await three_sites_open(sessionmaker, app, committed_client, cheques)
    targets = scene.cheques[:cheques]
    gate = asyncio.Semaphore(30)

    async def attempt(n: int) -> tuple[int, dict[str, Any], int, int]:
        cheque, site = targets[n // attempts], sites[n % 3]
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
    assert winners == {c.id: 1 for c in targets}
    ids = [c.id for c in targets]
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids) "
                        "AND reversed_at IS NULL", ids=ids) == cheques
    per_site = Counter(site for status, _, _, site in outcomes if status == 201)
    balances = await ledger.balances(
        db, [f"programme:{scene.programme_id}:outstanding",
             *(f"site:{s.org.id}:payable" for s in sites)])
    assert balances[f"programme:{scene.programme_id}:outstanding"] == 0
    for site in sites:
        assert balances[f"site:{site.org.id}:payable"] == (per_site[site.org.id] + 1) * 1000
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []


async def test_a_token_of_a_retired_key_is_refused_and_a_recased_one_still_redeems(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_path: list[str], db: AsyncSession,
    tmp_path: Path,
) -> None:
    # A keyring of this test's own: retiring a key must not touch the other tests' cheques.
    shared = app.state.keyring
    app.state.keyring = Keyring.load_or_create(tmp_path / "keys")
    try:
        await _retired_and_recased(sessionmaker, app, committed_client, general_path, db)
    finally:
        app.state.keyring = shared


async def _retired_and_recased(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_path: list[str], db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 3)
    await first_redemption(committed_client, site, scene)
    # A copy of the stored token in lower case is not byte-equal to it: the general path
    # verifies its signature, and redeems it.
    recased = scene.cheques[1].token.lower()
    response = await redeem(committed_client, site, recased)
    assert response.status_code == 201, response.text
    assert general_path[-1] == recased

    # Tokens signed by a retired key no longer verify, the exact stored copy included.
    old_kid = read_unverified(scene.cheques[0].token).kid
    app.state.keyring.rotate()
    app.state.keyring.retire(old_kid)
    response = await redeem(committed_client, site, scene.cheques[0].token)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_token"
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=scene.cheques[0].id) == "active"
    # Offline batches authenticate tokens the same way: the retired key's token is refused.
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


async def test_scanned_codes_redeemed_at_once_are_not_charged_to_the_rate_limits(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, settings: Any, engine: Any,
) -> None:
    """A genuine QR code cannot be guessed: the scanners' lane does not charge it (as offline
    batches do not); whatever it declines is charged by the route, typed serials included."""
    from api.app import create_app

    strict = create_app(settings.model_copy(update={
        "rate_limit_per_user_per_minute": 1, "rate_limit_burst": 2,
    }), engine=engine, run_sealer=False)
    scene, (site,) = await committed(sessionmaker, app, 9)
    async with strict.router.lifespan_context(strict):
        transport = httpx.ASGITransport(app=strict, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # The site's first redemption goes through the route (its account is created).
            assert (await redeem(client, site, scene.cheques[8].serial)).status_code == 201
            for cheque in scene.cheques[:6]:  # a busy morning of scans: never throttled
                response = await redeem(client, site, cheque.token)
                assert response.status_code == 201, response.text
            assert (await redeem(client, site, scene.cheques[6].serial)).status_code == 201
            throttled = await redeem(client, site, scene.cheques[7].serial)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "rate_limited"
    assert int(throttled.headers["Retry-After"]) >= 1


async def test_the_scanners_lane_answers_with_the_request_id_security_headers_and_metrics(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_path: list[str],
) -> None:
    """The lane answers ahead of the middleware (api.app.PassNumApp): what the middleware
    gives every answer, it gives too."""
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
    series = 'passnum_http_requests_total{method="POST",route="/api/v1/redemptions",status="201"}'

    def counted(metrics: str) -> float:
        found = re.search("^" + re.escape(series) + r" (\S+)$", metrics, re.MULTILINE)
        assert found, metrics
        return float(found.group(1))

    before = counted((await committed_client.get("/metrics")).text)
    response = await committed_client.post(
        REDEEM, json={"code": scene.cheques[0].token, "service": "realiser_demarche"},
        headers={**site.headers, "Idempotency-Key": str(uuid.uuid4()), "X-Request-Id": "scan-9"},
    )

    assert response.status_code == 201, response.text
    assert general_path == [scene.cheques[-1].serial]  # answered by the lane
    assert response.headers["x-request-id"] == "scan-9"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert int(response.headers["content-length"]) == len(response.content)
    assert counted((await committed_client.get("/metrics")).text) == before + 1


async def test_a_failure_inside_the_lane_after_its_commit_is_replayed_by_the_route(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, db: AsyncSession,
) -> None:
    """The connection lost between the commit and the answer: the lane hands the request to
    the route, which finds the key used and replays what was stored — one redemption.
    (A lost connection at that very instant cannot be provoked from here: the failure is
    injected at the service's boundary, after the real statement has run.)"""
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
    real = svc.redeem_at_once
    failures = []

    async def commit_then_lose_the_connection(*args: Any, **kwargs: Any) -> Any:
        done = await real(*args, **kwargs)
        if not failures:
            failures.append(done)
            raise ConnectionResetError("connexion perdue après la validation")
        return done

    monkeypatch.setattr(svc, "redeem_at_once", commit_then_lose_the_connection)
    cheque = scene.cheques[0]

    response = await redeem(committed_client, site, cheque.token)

    assert response.status_code == 201, response.text
    assert response.headers["idempotent-replayed"] == "true"
    assert failures and failures[0] is not None  # the lane's statement did redeem it
    assert response.json()["id"] == failures[0][0]
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = :c",
                        c=cheque.id) == 1


async def test_a_refused_scan_runs_the_one_statement_once_then_the_general_path(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
    general_path: list[str],
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
    cheque = scene.cheques[0]
    assert (await redeem(committed_client, site, cheque.token)).status_code == 201
    tried = spy_on(monkeypatch, "redeem_at_once", lambda kwargs: kwargs["token"])

    again = await redeem(committed_client, site, cheque.token)

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "cheque_already_redeemed"
    assert tried == [cheque.token]  # by the lane; the route did not try it a second time
    assert general_path[-1] == cheque.token


# ------------------------------------------------------------ online scans grouped at once


def online_item(actor: Actor, token: str, key: str | None = None,
                now: datetime | None = None) -> svc.OnlineAtOnce:
    """A scan as the lane hands it to the queue (api/routers/redemptions.py)."""
    from api.routers.redemptions import _answer_format, _fingerprint

    now = now or datetime.now(UTC)
    stated = read_unverified(token)
    answer_format = _answer_format(stated, actor.org.id, now)
    assert answer_format is not None
    return svc.OnlineAtOnce(
        token=token, stated=stated, site_id=actor.org.id, user_id=actor.id,
        service=svc.Service.realiser_demarche, demarche_family=None, now=now,
        idempotency_key=key or str(uuid.uuid4()),
        request_hash=_fingerprint(token, "realiser_demarche", None),
        answer_format=answer_format,
    )


async def test_a_grouped_statement_writes_for_each_scan_what_one_alone_writes(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, sites = await committed(sessionmaker, app, 8, sites=2)
    for n, site in enumerate(sites):  # each site's payable account, by a first redemption
        assert (await redeem(committed_client, site, scene.cheques[6 + n].serial)).status_code \
            == 201
    a, b = sites
    used_key = str(uuid.uuid4())
    items = [
        online_item(a, scene.cheques[0].token),
        online_item(b, scene.cheques[1].token),
        online_item(a, scene.cheques[2].token, key=used_key),
        online_item(b, scene.cheques[3].token),
        online_item(b, scene.cheques[0].token),  # the same cheque again: left out
        online_item(a, scene.cheques[4].token, key=used_key),  # the same key again: left out
        online_item(a, scene.cheques[6].token),  # already redeemed: left out
    ]

    done = await svc.redeem_many_at_once(app.state.hot_pool, keyring=app.state.keyring,
                                         items=items)

    assert [d is not None for d in done] == [True, True, True, True, False, False, False]
    entry_ids = []
    for item, result in zip(items[:4], done[:4], strict=True):
        assert result is not None
        rid, body = result
        # The very answer one scan alone would have given and stored.
        expected = Answer.of(201, RedemptionRead(
            id=rid, cheque_serial=item.stated.serial, value_cents=1000,
            redeemed_at=item.now, site_id=item.site_id,
        ).model_dump(mode="json")).body
        assert body == expected
        stored = (await db.execute(text(
            "SELECT request_hash, status_code, CAST(response AS text) FROM idempotency_record "
            "WHERE user_id = :u AND key = :k"),
            {"u": item.user_id, "k": item.idempotency_key})).one()
        assert tuple(stored) == (item.request_hash, 201, expected)
        row = (await db.execute(text(
            "SELECT c.serial, r.site_id, r.user_id, r.value_cents, r.service, "
            "r.demarche_family, r.redeemed_at, c.status FROM redemption r "
            "JOIN cheque c ON c.id = r.cheque_id WHERE r.id = :id"), {"id": rid})).one()
        assert tuple(row) == (item.stated.serial, item.site_id, item.user_id, 1000,
                              "realiser_demarche", None, item.now, "redeemed")
        entry = await ledger.get_entry(db, f"redeem:{rid}")
        postings = [(f"programme:{scene.programme_id}:outstanding", -1000),
                    (f"site:{item.site_id}:payable", 1000)]
        assert entry is not None
        entry_ids.append(entry.id)
        assert (entry.kind, entry.memo, sorted(entry.postings), entry.created_at) == (
            "redemption", {"serial": item.stated.serial}, postings, item.now)
        assert entry.content_hash == content_hash("redemption", postings,
                                                  {"serial": item.stated.serial})
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=scene.cheques[4].id) == "active"
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []
    await seal_once(sessionmaker)
    # This test's entries (the shared database holds other tests' deliberately broken ones).
    assert [d for d in await audit_ledger(db) if d.entry_id in entry_ids] == []
    sealed = (await db.execute(text(
        "SELECT count(*) FROM ledger_seal WHERE entry_id = ANY(:ids)"), {"ids": entry_ids}))
    assert sealed.scalar_one() == 4
    await db.commit()


async def test_a_grouped_statement_with_a_key_already_used_writes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 4)
    await first_redemption(committed_client, site, scene)
    key = str(uuid.uuid4())
    assert (await redeem(committed_client, site, scene.cheques[0].token, key)).status_code == 201
    items = [online_item(site, scene.cheques[1].token),
             online_item(site, scene.cheques[2].token, key=key)]

    with pytest.raises(asyncpg.UniqueViolationError):
        await svc.redeem_many_at_once(app.state.hot_pool, keyring=app.state.keyring,
                                      items=items)

    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:c)",
                        c=[scene.cheques[1].id, scene.cheques[2].id]) == 0
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE key = :k",
                        k=items[0].idempotency_key) == 0


async def test_the_queue_groups_scans_that_wait_and_each_is_decided_as_if_alone(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, db: AsyncSession,
) -> None:
    """One statement at a time: the first scan goes alone, the others wait and go together.
    Among them a cheque scanned twice and a key already used: the group fails on the key
    and each of its scans is tried alone — one redemption a cheque, the reused key refused."""
    scene, sites = await committed(sessionmaker, app, 12, sites=2)
    for n, site in enumerate(sites):
        assert (await redeem(committed_client, site, scene.cheques[10 + n].serial)).status_code \
            == 201
    used = str(uuid.uuid4())
    assert (await redeem(committed_client, sites[0], scene.cheques[9].token, used)).status_code \
        == 201
    grouped = spy_on(monkeypatch, "redeem_many_at_once", lambda kwargs: len(kwargs["items"]))
    queue = svc.AtOnceQueue(app.state.hot_pool, app.state.keyring, statements=1)
    items = [online_item(sites[n % 2], scene.cheques[n].token) for n in range(8)]
    items += [online_item(sites[1], scene.cheques[3].token),  # cheque 3 twice
              online_item(sites[0], scene.cheques[8].token, key=used)]

    done = await asyncio.gather(*(queue.redeem(item) for item in items))

    assert grouped and grouped[0] > 1  # the waiting scans went together
    redeemed = {items[n].stated.serial for n, d in enumerate(done) if d is not None}
    assert redeemed == {c.serial for c in scene.cheques[:8]}
    assert sum(d is not None for d in done) == 8  # cheque 3 once; the reused key refused
    assert done[-1] is None
    counts = (await db.execute(text(
        "SELECT cheque_id, count(*) FROM redemption WHERE cheque_id = ANY(:c) "
        "GROUP BY cheque_id"), {"c": [c.id for c in scene.cheques[:9]]})).all()
    await db.commit()
    assert sorted(counts) == sorted((c.id, 1) for c in scene.cheques[:8])
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []


async def test_a_cheque_locked_elsewhere_sends_its_scan_to_the_general_path_after_a_second(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, engine: Any, general_path: list[str],
) -> None:
    """The hot connections wait one second at most for a row lock: the scan then goes to the
    general path, which waits as long as it takes, and the worker's queue moves on."""
    scene, (site,) = await committed(sessionmaker, app, 2)
    await first_redemption(committed_client, site, scene)
    cheque = scene.cheques[0]
    async with engine.connect() as other:
        async with other.begin():
            await other.execute(text("SELECT 1 FROM cheque WHERE id = :id FOR UPDATE"),
                                {"id": cheque.id})
            alone = await svc.redeem_at_once(
                app.state.hot_pool, keyring=app.state.keyring, token=cheque.token,
                stated=read_unverified(cheque.token), site_id=site.org.id, user_id=site.id,
                service=svc.Service.realiser_demarche, demarche_family=None,
                now=datetime.now(UTC), idempotency_key=str(uuid.uuid4()),
                request_hash="0" * 64, answer_format="{}",
            )
            assert alone is None  # gave way, nothing written
            # Meanwhile over HTTP: the lane gives way too, and the general path waits.
            waiting = asyncio.create_task(redeem(committed_client, site, cheque.token))
            await asyncio.sleep(1.5)
            assert not waiting.done()
        response = await waiting  # the lock released: redeemed by the general path
    assert response.status_code == 201, response.text
    assert general_path[-1] == cheque.token


# ------------------------------------------------------------------ offline batches at once

BATCH = "/api/v1/redemptions/batch"


@pytest.fixture
def general_offline(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many scans each call of `redeem_offline` (the batches' general path) decided."""
    return spy_on(monkeypatch, "redeem_offline", lambda kwargs: len(kwargs["scans"]))


def scans_of(codes: list[str], at: datetime, keys: list[str] | None = None) -> dict[str, Any]:
    return {"items": [
        {"code": code, "service": "naviguer_web", "demarche_family": "impots",
         "scanned_at": at.isoformat(), "idempotency_key": keys[n] if keys else str(uuid.uuid4())}
        for n, code in enumerate(codes)
    ]}


async def test_a_batch_of_scanned_cheques_is_redeemed_at_once_with_what_the_general_path_writes(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_offline: list[int], db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 5)
    await first_redemption(committed_client, site, scene)
    cheques = scene.cheques[:4]
    # Scanned two hours ago, while offline: kept as `scanned_at`, judged on that Paris day.
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    entries_before = await scalar(db, "SELECT count(*) FROM ledger_entry")

    response = await committed_client.post(
        BATCH, json=scans_of([c.token for c in cheques], at), headers=site.headers)

    assert response.status_code == 200, response.text
    assert general_offline == []  # decided at once
    body = response.json()
    assert (body["accepted"], body["refused"], body["conflicts"]) == (4, 0, 0)
    assert await scalar(db, "SELECT count(*) FROM ledger_entry") == entries_before + 4
    for cheque, result in zip(cheques, body["results"], strict=True):
        assert result["status"] == "accepted"
        redemption = result["redemption"]
        expected = Answer.of(201, RedemptionRead(
            id=redemption["id"], cheque_serial=cheque.serial, value_cents=1000,
            redeemed_at=datetime.fromisoformat(redemption["redeemed_at"]), site_id=site.org.id,
        ).model_dump(mode="json")).body
        stored = (await db.execute(text(
            "SELECT request_hash, status_code, CAST(response AS text) FROM idempotency_record "
            "WHERE user_id = :u AND key = :k"),
            {"u": site.id, "k": result["idempotency_key"]})).one()
        assert (stored[1], stored[2]) == (201, expected)
        row = (await db.execute(text(
            "SELECT cheque_id, site_id, user_id, value_cents, service, demarche_family, "
            "redeemed_at, scanned_at FROM redemption WHERE id = :id"),
            {"id": redemption["id"]})).one()
        assert row[:6] == (cheque.id, site.org.id, site.id, 1000, "naviguer_web", "impots")
        assert row[7] == at
        entry = await ledger.get_entry(db, f"redeem:{redemption['id']}")
        postings = [(f"programme:{scene.programme_id}:outstanding", -1000),
                    (f"site:{site.org.id}:payable", 1000)]
        assert entry is not None
        assert (entry.kind, entry.memo, sorted(entry.postings)) == (
            "redemption", {"serial": cheque.serial}, postings)
        assert entry.content_hash == content_hash("redemption", postings,
                                                  {"serial": cheque.serial})
        assert entry.created_at == row[6]
    await db.commit()
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []
    # The sealer chains these entries like any other, and the ledger's audit finds them sound.
    await seal_once(sessionmaker)
    keys = [f"redeem:{r['redemption']['id']}" for r in body["results"]]
    ids = set((await db.execute(text(
        "SELECT e.id FROM ledger_entry e JOIN ledger_seal s ON s.entry_id = e.id "
        "WHERE e.idempotency_key = ANY(:k)"),
        {"k": keys})).scalars())
    assert len(ids) == 4
    assert [d for d in await audit_ledger(db) if d.entry_id in ids] == []
    await db.commit()

    # The same batch again (the scanner never saw the answer): replayed by the general path,
    # which finds every key answered and redeems nothing.
    again = await committed_client.post(BATCH, json={"items": [
        {**item, "idempotency_key": result["idempotency_key"]}
        for item, result in zip(scans_of([c.token for c in cheques], at)["items"],
                                body["results"], strict=True)
    ]}, headers=site.headers)
    assert again.status_code == 200, again.text
    assert again.json() == body
    assert general_offline == [0]
    assert await scalar(db, "SELECT count(*) FROM ledger_entry") == entries_before + 4


async def test_a_batch_with_one_refusal_is_decided_scan_by_scan_and_nothing_of_the_attempt_stays(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_offline: list[int], db: AsyncSession,
) -> None:
    scene, (site,) = await committed(sessionmaker, app, 5)
    await first_redemption(committed_client, site, scene)
    cheques = scene.cheques[:4]
    await db.execute(text("UPDATE cheque SET status = 'cancelled' WHERE id = :id"),
                     {"id": cheques[2].id})
    await db.commit()
    entries_before = await scalar(db, "SELECT count(*) FROM ledger_entry")
    at = datetime.now(UTC) - timedelta(minutes=30)
    # The same cheque twice as well: one redemption and one conflict.
    codes = [c.token for c in cheques] + [cheques[0].token]

    response = await committed_client.post(BATCH, json=scans_of(codes, at), headers=site.headers)

    assert response.status_code == 200, response.text
    assert general_offline == [5]
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "accepted", "accepted", "refused", "accepted", "conflict"]
    assert body["results"][2]["error"]["code"] == "cheque_cancelled"
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids)",
                        ids=[c.id for c in cheques]) == 3
    assert await scalar(db, "SELECT count(*) FROM ledger_entry") == entries_before + 3
    keys = [r["idempotency_key"] for r in body["results"]]
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE user_id = :u "
                        "AND key = ANY(:k)", u=site.id, k=keys) == 5
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []


async def test_a_batch_with_a_key_already_used_online_replays_that_answer(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, general_offline: list[int], db: AsyncSession,
) -> None:
    """A scan tried online, then queued offline under the same key: redeemed once."""
    scene, (site,) = await committed(sessionmaker, app, 4)
    await first_redemption(committed_client, site, scene)
    key = str(uuid.uuid4())
    online = await redeem(committed_client, site, scene.cheques[0].token, key)
    assert online.status_code == 201
    keys = [key, str(uuid.uuid4()), str(uuid.uuid4())]
    at = datetime.now(UTC) - timedelta(minutes=5)
    items = [
        {"code": c.token, "service": "realiser_demarche", "demarche_family": "caf",
         "scanned_at": at.isoformat(), "idempotency_key": k}
        for c, k in zip(scene.cheques[:3], keys, strict=True)
    ]

    response = await committed_client.post(BATCH, json={"items": items}, headers=site.headers)

    assert response.status_code == 200, response.text
    assert general_offline == [2]  # the at-once attempt gave way; two scans were new
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 3
    assert results[0]["redemption"] == online.json()
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = :c",
                        c=scene.cheques[0].id) == 1


async def test_overlapping_batches_and_online_scans_at_once_redeem_each_cheque_exactly_once(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    cheques = 60
    scene, sites = await three_sites_open(sessionmaker, app, committed_client, cheques)
    targets = scene.cheques[:cheques]
    at = datetime.now(UTC) - timedelta(hours=1)

    async def batch(site: Actor, part: list[Any]) -> list[tuple[int, str]]:
        response = await committed_client.post(
            BATCH, json=scans_of([c.token for c in part], at), headers=site.headers)
        assert response.status_code == 200, response.text
        return [(c.id, r["status"]) for c, r in zip(part, response.json()["results"],
                                                    strict=True)]

    async def online(site: Actor, cheque: Any) -> list[tuple[int, str]]:
        response = await redeem(committed_client, site, cheque.token)
        assert response.status_code in (201, 409), response.text
        return [(cheque.id, "accepted" if response.status_code == 201 else "refused")]

    jobs = [
        batch(sites[0], targets[0:40]),
        batch(sites[1], targets[20:60]),
        batch(sites[0], targets[30:50]),
        *(online(sites[2], c) for c in targets[10:50:3]),
    ]
    outcomes = [o for done in await asyncio.gather(*jobs) for o in done]

    winners = Counter(cheque for cheque, status in outcomes if status == "accepted")
    assert winners == {c.id: 1 for c in targets}
    ids = [c.id for c in targets]
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids) "
                        "AND reversed_at IS NULL", ids=ids) == cheques
    balances = await ledger.balances(db, [f"programme:{scene.programme_id}:outstanding"])
    assert balances[f"programme:{scene.programme_id}:outstanding"] == 0
    await db.commit()
    assert await svc.audit_redemptions(db, programme_id=scene.programme_id) == []
