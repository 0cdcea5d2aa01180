"""The claims' plans when PostgreSQL's statistics lag behind the cheques.

After a run of new cheques (a campaign, an import), the statistics may still say that hardly
any cheque is active; the partial index `ix_cheque_active_redeem_until` (WHERE status =
'active', for expiry) then looks free, and a claim that let the planner start from it scanned
every active cheque — 74,000 for one offline batch in a benchmark, seconds at full CPU. Each
claim must find its cheques by serial or id whatever the statistics say. Read with EXPLAIN
(the plan, not a timing) inside the test's rolled-back transaction, statistics included.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pass_ import redemption as svc
from pass_.enums import OrganisationKind, Service
from pass_.tokens import Keyring, read_unverified
from tests.factories import make_org
from tests.pass_.redemption_factories import Scene, make_scene

CHEQUES = 2000
PARTIAL_INDEX = "ix_cheque_active_redeem_until"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("plans") / "keys")


@pytest.fixture
async def stale(session: AsyncSession, keyring: Keyring) -> Scene:
    """`CHEQUES` active cheques that the statistics, gathered a moment before they were
    activated, believe are not active."""
    scene = await make_scene(session, keyring, cheques=CHEQUES)
    ids = [c.id for c in scene.cheques]
    await session.execute(text("UPDATE cheque SET status = 'expired' WHERE id = ANY(:ids)"),
                          {"ids": ids})
    await session.execute(text("ANALYZE cheque"))
    await session.execute(text("UPDATE cheque SET status = 'active' WHERE id = ANY(:ids)"),
                          {"ids": ids})
    return scene


async def raw(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, in its transaction."""
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


class Planner:
    """Stands for the connection of `redeem_at_once` / `redeem_batch_at_once`: each claim is
    explained (estimates only, nothing runs) instead of executed, and reported as not done."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plans: list[str] = []

    def transaction(self) -> Any:
        return self.conn.transaction()  # a savepoint of the test's transaction

    async def fetch(self, query: str, *args: object) -> Any:
        return await self.conn.fetch(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        return str(await self.conn.execute(query, *args))

    async def _explain(self, query: str, *args: object) -> None:
        rows = await self.conn.fetch("EXPLAIN " + query, *args)
        self.plans.append("\n".join(row[0] for row in rows))

    async def fetchval(self, query: str, *args: object) -> Any:
        await self._explain(query, *args)
        return -1

    async def fetchrow(self, query: str, *args: object) -> Any:
        await self._explain(query, *args)
        return None


class FetchPlanner(Planner):
    """As `Planner`, for `redeem_many_at_once`, whose claim is fetched (several rows)."""

    async def fetch(self, query: str, *args: object) -> Any:
        await self._explain(query, *args)
        return []


def starts_from_the_cheques_by_key(plan: str) -> bool:
    # (A sequential scan may be chosen on the test's small table, rightly: it is the index
    # believed nearly empty that must never be.)
    return PARTIAL_INDEX not in plan


async def test_the_statistics_of_the_fixture_do_mislead_the_planner(
    session: AsyncSession, stale: Scene
) -> None:
    """The premise: with these statistics a plain `status = 'active'` filter is planned from
    the partial index, for a handful of rows where thousands are."""
    plan = "\n".join(row[0] for row in (await session.execute(text(
        "EXPLAIN SELECT id FROM cheque WHERE status = 'active' AND redeem_until < :day"),
        {"day": datetime.now(UTC).date() + timedelta(days=3650)})).all())
    assert PARTIAL_INDEX in plan
    assert await session.scalar(text(
        "SELECT count(*) FROM cheque WHERE id = ANY(:ids) AND status = 'active'"),
        {"ids": [c.id for c in stale.cheques]}) == CHEQUES


async def test_every_claim_finds_its_cheques_by_key_whatever_the_statistics(
    session: AsyncSession, stale: Scene, keyring: Keyring
) -> None:
    site = await make_org(session, OrganisationKind.site, commune_insee="35238")
    now = datetime.now(UTC)
    planner = Planner(await raw(session))
    cheques = stale.cheques[:500]

    # The scanners' one-statement redemption, custom and generic plans alike.
    for mode in ("force_custom_plan", "force_generic_plan"):
        await planner.conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        token = cheques[0].token
        assert await svc.redeem_at_once(
            planner, keyring=keyring, token=token, stated=read_unverified(token),
            site_id=site.id, user_id=1, service=Service.naviguer_web, demarche_family=None,  # type: ignore[arg-type]
            now=now, idempotency_key=str(uuid.uuid4()), request_hash="0" * 64,
            answer_format='{"id":%s}',
        ) is None
    # An offline batch at once.
    scans = [
        svc.ScanAtOnce(token=c.token, stated=read_unverified(c.token),
                       service=Service.naviguer_web, demarche_family=None,
                       scanned_at=now - timedelta(hours=1), idempotency_key=str(uuid.uuid4()),
                       request_hash="0" * 64)
        for c in cheques
    ]
    assert await svc.redeem_batch_at_once(
        planner, keyring=keyring, site_id=site.id, user_id=1, scans=scans, now=now,  # type: ignore[arg-type]
        answer_of=lambda rid, scan: f'{{"id":{rid}}}',
    ) is None
    assert len(planner.plans) == 3
    # Online scans grouped in one statement.
    grouped = FetchPlanner(planner.conn)
    items = [
        svc.OnlineAtOnce(token=c.token, stated=read_unverified(c.token), site_id=site.id,  # type: ignore[arg-type]
                         user_id=1, service=Service.naviguer_web, demarche_family=None,
                         now=now, idempotency_key=str(uuid.uuid4()), request_hash="0" * 64,
                         answer_format='{"id":%s}')
        for c in cheques[:64]
    ]
    assert await svc.redeem_many_at_once(grouped, keyring=keyring, items=items) == [None] * 64
    planner.plans += grouped.plans
    assert len(planner.plans) == 4
    # The general paths: a typed serial, and the claim of an offline batch's candidates.
    for statement, params in (
        (svc._CLAIM, {"now": now, "today": now.date(), "serial": cheques[1].serial,
                      "programme_id": None, "value_cents": None, "site_id": site.id,
                      "user_id": None, "service": "naviguer_web", "demarche_family": None}),
        (svc._CLAIM_MANY, {"cheque_ids": [c.id for c in cheques],
                           "services": ["naviguer_web"] * len(cheques),
                           "demarches": [None] * len(cheques),
                           "scanned": [now] * len(cheques), "now": now,
                           "site_id": site.id, "user_id": None}),
    ):
        rows = (await session.execute(text("EXPLAIN " + statement.text), params)).all()
        planner.plans.append("\n".join(row[0] for row in rows))

    for plan in planner.plans:
        assert starts_from_the_cheques_by_key(plan), plan
