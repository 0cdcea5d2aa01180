"""The claims' plans when PostgreSQL's statistics lag behind the cheques.

After a run of new cheques (a campaign, an import), the statistics may still say that hardly
any cheque is active; the partial index `ix_cheque_active_redeem_until` (WHERE status =
'active', for expiry) then looks free, and a claim that let the planner start from it scanned
every active cheque — 74,000 for one offline batch in a benchmark, seconds at full CPU. Every
statement of `pass_redeem` must find its cheques by serial or id whatever the statistics say.
Checked inside the test's rolled-back transaction, statistics included, by PostgreSQL's own
row counters of the transaction on every server, and by the plans themselves (auto_explain)
where the server has that contrib module; not by a timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pass_ import redemption as svc
from pass_.enums import OrganisationKind, Service
from pass_.tokens import Keyring
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


_CHEQUE_ROWS_READ = text(
    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
    "FROM pg_stat_xact_user_tables WHERE relname = 'cheque'"
)


async def _auto_explain(conn: Any) -> bool:
    """Load PostgreSQL's auto_explain for this transaction if the server has it (a contrib
    module: the Debian server does, the embedded pgserver build does not)."""
    await conn.execute("SAVEPOINT auto_explain")
    try:
        await conn.execute("LOAD 'auto_explain'")
    except Exception:  # asyncpg's UndefinedFileError: the module is not installed
        await conn.execute("ROLLBACK TO SAVEPOINT auto_explain")
        return False
    await conn.execute("RELEASE SAVEPOINT auto_explain")
    return True


async def test_every_statement_of_the_redemption_finds_its_cheques_by_key(
    session: AsyncSession, stale: Scene, keyring: Keyring
) -> None:
    """Every statement `pass_redeem` runs, online and offline, custom and generic plans alike,
    reaches its cheques by key: the rows of `cheque` it reads stay a few per redemption
    (PostgreSQL's own counters for this transaction; a claim started from the partial index
    reads every active cheque, thousands). Where the server has auto_explain, the plans
    themselves are read too (nested statements included, sent to this client): none starts
    from the partial index."""
    site = await make_org(session, OrganisationKind.site, commune_insee="35238")
    now = datetime.now(UTC)
    conn = await raw(session)
    plans: list[str] = []
    explained = await _auto_explain(conn)
    if explained:
        conn.add_log_listener(lambda _conn, message: plans.append(message.message))
        for setting in ("auto_explain.log_min_duration = 0",
                        "auto_explain.log_nested_statements = on",
                        "client_min_messages = log"):
            await conn.execute(f"SET LOCAL {setting}")
    cheques = stale.cheques[:100]
    read_before = await conn.fetchval(_CHEQUE_ROWS_READ.text) or 0
    try:
        for n, mode in enumerate(("force_custom_plan", "force_generic_plan")):
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            for code in (cheques[2 * n].token, cheques[2 * n + 1].serial):
                await svc.redeem_cheque(
                    session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
                    code=code, service=Service.naviguer_web, demarche_family=None, now=now)
        outcomes = await svc.redeem_offline(
            session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
            scans=[svc.OfflineScanIn(c.token, Service.naviguer_web, None,
                                     now - timedelta(minutes=1)) for c in cheques[4:]],
            now=now)
    finally:
        await conn.execute("SET LOCAL client_min_messages = notice")
    assert {o.status for o in outcomes} == {"accepted"}
    read = (await conn.fetchval(_CHEQUE_ROWS_READ.text) or 0) - read_before
    assert read <= 10 * len(cheques), f"{read} rows of cheque read for {len(cheques)} redemptions"
    if explained:
        claims = [p for p in plans if "Update on cheque" in p]
        assert len(claims) >= 4 + 1  # one claim a call: four online scans, one offline batch
        for plan in plans:
            assert starts_from_the_cheques_by_key(plan), plan


_REDEMPTION_SCANS = text(
    "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
    "FROM pg_stat_xact_user_tables WHERE relname = 'redemption'"
)


async def test_the_common_road_never_reads_the_redemptions(
    session: AsyncSession, keyring: Keyring
) -> None:
    """Redeeming cheques that are active reads no redemption: a cheque's live redemption is
    read only for a scan that found it redeemed. (Joined on every call, it was planned once a
    session while `redemption` was nearly empty — a generic plan scanning it whole — and every
    later call scanned it again as it grew: the benchmark's ceiling fell from 1,800 to 330
    calls/s.) PostgreSQL's own counters of this transaction: no scan of `redemption` at all,
    then one for a batch with a double scan."""
    scene = await make_scene(session, keyring, cheques=60)
    site = await make_org(session, OrganisationKind.site, commune_insee="35238")
    now = datetime.now(UTC)
    conn = await raw(session)
    before = await conn.fetchval(_REDEMPTION_SCANS.text) or 0

    def scans(cheques: list[Any]) -> list[svc.OfflineScanIn]:
        return [svc.OfflineScanIn(c.token, Service.naviguer_web, None,
                                  now - timedelta(minutes=1)) for c in cheques]

    for code in (scene.cheques[0].token, scene.cheques[1].serial):
        await svc.redeem_cheque(
            session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
            code=code, service=Service.naviguer_web, demarche_family=None, now=now)
    outcomes = await svc.redeem_offline(
        session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
        scans=scans(scene.cheques[2:50]), now=now)
    assert {o.status for o in outcomes} == {"accepted"}
    assert (await conn.fetchval(_REDEMPTION_SCANS.text) or 0) == before
    outcomes = await svc.redeem_offline(
        session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
        scans=scans(scene.cheques[49:52]), now=now)
    assert [o.status for o in outcomes] == ["conflict", "accepted", "accepted"]
    assert (await conn.fetchval(_REDEMPTION_SCANS.text) or 0) > before
