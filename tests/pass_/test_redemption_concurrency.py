"""Exactly once under concurrency: real connections, committed data, many attempts at once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.clock import utcnow
from kit.errors import DomainError
from ledger import service as ledger
from pass_ import redemption as svc
from pass_.enums import OrganisationKind, Service
from pass_.models import Organisation
from tests.factories import make_org
from tests.pass_.redemption_factories import Scene, make_scene, make_site

T = TypeVar("T")
ATTEMPTS = 20
CHEQUES = 100
# Below the test engine's pool (25 + 10 overflow): every attempt has a connection of its own.
IN_FLIGHT = 30


async def bounded(jobs: list[Callable[[], Awaitable[T]]], limit: int = IN_FLIGHT) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def committed_scene(
    sessionmaker: async_sessionmaker[AsyncSession], keyring: Any, cheques: int, sites: int
) -> tuple[Scene, list[Organisation]]:
    async with sessionmaker() as session:
        scene = await make_scene(session, keyring, cheques=cheques)
        orgs = [await make_org(session, OrganisationKind.site) for _ in range(sites)]
        await session.commit()
    return scene, orgs


async def redemption_counts(
    sessionmaker: async_sessionmaker[AsyncSession], cheque_ids: list[int]
) -> Counter[int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT cheque_id FROM redemption "
                "WHERE cheque_id = ANY(:ids) AND reversed_at IS NULL"
            ),
            {"ids": cheque_ids},
        )
        return Counter(row[0] for row in rows)


async def test_100_cheques_attempted_20_times_at_once_by_3_sites_are_redeemed_exactly_once(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any
) -> None:
    keyring = app.state.keyring
    scene, sites = await committed_scene(sessionmaker, keyring, CHEQUES, 3)
    pid = scene.programme_id

    def attempt(n: int) -> Callable[[], Awaitable[tuple[str, int, int]]]:
        cheque = scene.cheques[n // ATTEMPTS]
        site = sites[n % 3]
        # Some scan the QR code, some type the serial, in lower case for good measure.
        code = cheque.token if n % 2 else cheque.serial.lower()

        async def run() -> tuple[str, int, int]:
            async with sessionmaker() as session:
                try:
                    await svc.redeem_cheque(
                        session,
                        keyring=keyring,
                        site_id=site.id,  # type: ignore[arg-type]
                        user_id=None,
                        code=code,
                        service=Service.naviguer_web,
                        demarche_family=None,
                        now=utcnow(),
                    )
                    await session.commit()
                    return "redeemed", cheque.id, site.id  # type: ignore[return-value]
                except DomainError as exc:
                    await session.rollback()
                    assert set(exc.details) == {"redeemed_at"}, exc.details  # when, not where
                    return exc.code, cheque.id, site.id  # type: ignore[return-value]

        return run

    outcomes = await bounded([attempt(n) for n in range(CHEQUES * ATTEMPTS)])

    assert Counter(code for code, _, _ in outcomes) == {
        "redeemed": CHEQUES,
        "cheque_already_redeemed": CHEQUES * (ATTEMPTS - 1),
    }
    winners = Counter(cheque for code, cheque, _ in outcomes if code == "redeemed")
    assert winners == {c.id: 1 for c in scene.cheques}
    ids = [c.id for c in scene.cheques]
    assert await redemption_counts(sessionmaker, ids) == {i: 1 for i in ids}
    per_site = Counter(site for code, _, site in outcomes if code == "redeemed")
    async with sessionmaker() as session:
        found = await ledger.balances(
            session,
            [f"programme:{pid}:outstanding", *(f"site:{s.id}:payable" for s in sites)],
        )
        entries = await session.scalar(
            text(
                "SELECT count(*) FROM ledger_entry e JOIN redemption r "
                "ON e.idempotency_key = 'redeem:' || r.id WHERE r.cheque_id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        statuses = await session.scalar(
            text("SELECT count(*) FROM cheque WHERE id = ANY(:ids) AND status = 'redeemed'"),
            {"ids": ids},
        )
    # Issued 100 × 10 €, all redeemed: nothing outstanding, every euro payable to its site.
    assert found[f"programme:{pid}:outstanding"] == 0
    for site in sites:
        assert found[f"site:{site.id}:payable"] == per_site[site.id] * 1000
    assert (entries, statuses) == (CHEQUES, CHEQUES)


async def test_concurrent_retries_with_one_key_redeem_once_and_all_get_the_same_answer(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, committed_client: httpx.AsyncClient
) -> None:
    scene, _ = await committed_scene(sessionmaker, app.state.keyring, 2, 0)
    async with sessionmaker() as session:
        site = await make_site(session, app)
        await session.commit()
    headers = {**site.headers, "Idempotency-Key": str(uuid.uuid4())}
    body = {"code": scene.cheques[0].token, "service": "naviguer_web"}
    responses = await asyncio.gather(
        *(
            committed_client.post("/api/v1/redemptions", json=body, headers=headers)
            for _ in range(12)
        )
    )
    assert {(r.status_code, r.content) for r in responses} == {(201, responses[0].content)}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 11
    assert await redemption_counts(sessionmaker, [scene.cheques[0].id]) == {scene.cheques[0].id: 1}


async def test_overlapping_offline_batches_and_online_scans_redeem_each_cheque_once(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any
) -> None:
    keyring = app.state.keyring
    scene, sites = await committed_scene(sessionmaker, keyring, 60, 2)
    now = utcnow()
    scans = [
        svc.OfflineScanIn(c.token, Service.naviguer_web, None, now - timedelta(hours=1))
        for c in scene.cheques
    ]

    def batch(site: Organisation, order: list[svc.OfflineScanIn]) -> Callable[[], Awaitable[Any]]:
        async def run() -> list[svc.OfflineOutcome]:
            async with sessionmaker() as session:
                out = await svc.redeem_offline(
                    session,
                    keyring=keyring,
                    site_id=site.id,
                    user_id=None,  # type: ignore[arg-type]
                    scans=order,
                    now=now,
                )
                await session.commit()
                return out

        return run

    def online(n: int) -> Callable[[], Awaitable[Any]]:
        async def run() -> str:
            async with sessionmaker() as session:
                try:
                    await svc.redeem_cheque(
                        session,
                        keyring=keyring,
                        site_id=sites[1].id,  # type: ignore[arg-type]
                        user_id=None,
                        code=scene.cheques[n].serial,
                        service=Service.naviguer_web,
                        demarche_family=None,
                        now=now,
                    )
                    await session.commit()
                    return "accepted"
                except DomainError as exc:
                    await session.rollback()
                    return exc.code

        return run

    jobs = [batch(sites[0], scans), batch(sites[1], scans[::-1]), batch(sites[0], scans[::2])]
    jobs += [online(n) for n in range(0, 60, 3)]
    results = await bounded(jobs)
    statuses = Counter(o.status for out in results[:3] for o in out) + Counter(
        r for r in results[3:]
    )
    assert statuses["accepted"] == 60
    ids = [c.id for c in scene.cheques]
    assert await redemption_counts(sessionmaker, ids) == {i: 1 for i in ids}
    async with sessionmaker() as session:
        payable = await ledger.balances(session, [f"site:{s.id}:payable" for s in sites])
    assert sum(payable.values()) == 60 * 1000


async def test_a_claim_that_waited_on_a_cheque_redeemed_meanwhile_decides_that_scan_again(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any
) -> None:
    """The path of a lost claim, made to happen: a batch reads two active cheques while another
    transaction is redeeming the first; its claim waits on that row, finds it redeemed once the
    other commits, and claims the second. The first scan is decided again on a fresh read —
    already redeemed, by another site — and the second is accepted; each cheque once."""
    keyring = app.state.keyring
    scene, sites = await committed_scene(sessionmaker, keyring, 2, 2)
    first, second = sorted(scene.cheques, key=lambda c: c.id)
    now = utcnow()
    async with sessionmaker() as online, sessionmaker() as watcher:
        await svc.redeem_cheque(
            online, keyring=keyring, site_id=sites[1].id, user_id=None,  # type: ignore[arg-type]
            code=first.serial, service=Service.naviguer_web, demarche_family=None, now=now)

        async def batch() -> list[svc.OfflineOutcome]:
            async with sessionmaker() as session:
                out = await svc.redeem_offline(
                    session, keyring=keyring, site_id=sites[0].id, user_id=None,  # type: ignore[arg-type]
                    scans=[svc.OfflineScanIn(c.token, Service.naviguer_web, None,
                                             now - timedelta(minutes=5))
                           for c in (first, second)],
                    now=now)
                await session.commit()
                return out

        task = asyncio.create_task(batch())
        for _ in range(500):  # until the batch waits on the first cheque's row lock
            waiting = await watcher.scalar(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"))
            await watcher.rollback()
            if waiting or task.done():
                break
            await asyncio.sleep(0.02)
        assert not task.done(), "the batch did not wait on the cheque being redeemed"
        await online.commit()
        out = await task
    assert [(o.status, o.error.code if o.error else None) for o in out] == [
        ("refused", "cheque_already_redeemed"), ("accepted", None)]
    assert "duplicate_of" not in out[0].error.details  # type: ignore[union-attr]
    assert await redemption_counts(sessionmaker, [first.id, second.id]) == {
        first.id: 1, second.id: 1}
    async with sessionmaker() as session:
        sites_of = dict((await session.execute(text(
            "SELECT cheque_id, site_id FROM redemption WHERE cheque_id = ANY(:ids)"),
            {"ids": [first.id, second.id]})).all())
        payable = await ledger.balances(session, [f"site:{s.id}:payable" for s in sites])
    assert sites_of == {first.id: sites[1].id, second.id: sites[0].id}
    assert payable == {f"site:{sites[0].id}:payable": 1000, f"site:{sites[1].id}:payable": 1000}
