"""Reading one state from several connections and processes: a snapshot is shared only when the
others can see what the session sees, and work spread over worker processes comes back in
order, errors included, with no worker left behind."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.snapshot import export_snapshot, in_processes, snapshot_connection, snapshot_session


def _square_and_pid(n: int) -> tuple[int, int]:
    if n < 0:
        raise ValueError(f"négatif : {n}")
    return n * n, os.getpid()


async def test_calls_spread_over_worker_processes_come_back_in_order() -> None:
    results = await in_processes(_square_and_pid, [(n,) for n in range(7)], processes=2)
    assert [square for square, _ in results] == [n * n for n in range(7)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and len(pids) <= 2


async def test_an_error_in_a_worker_is_raised_here_and_no_worker_is_left() -> None:
    before = _children()
    with pytest.raises(ValueError, match="négatif : -1"):
        await in_processes(_square_and_pid, [(2,), (-1,), (3,)], processes=2)
    assert _children() - before == set()


def _children() -> set[int]:
    """This process's child processes (from /proc: Linux; none seen elsewhere)."""
    if not os.path.isdir("/proc"):
        return set()
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()}


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


async def test_other_connections_read_the_exported_state(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as reader, sessionmaker() as writer:
        snapshot = await export_snapshot(reader)
        assert snapshot is not None
        await writer.execute(text("CREATE TABLE IF NOT EXISTS kit_snapshot_probe (n int)"))
        await writer.commit()  # after the export: not in the shared state
        async with snapshot_session(snapshot) as other:
            seen = (await other.execute(text(
                "SELECT count(*) FROM pg_class WHERE relname = 'kit_snapshot_probe'"))).scalar()
        async with snapshot_connection(snapshot) as raw:
            seen_raw = await raw.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname = 'kit_snapshot_probe'")
        await writer.execute(text("DROP TABLE kit_snapshot_probe"))
        await writer.commit()
        await reader.rollback()
    assert (seen, seen_raw) == (0, 0)


async def test_a_transaction_that_wrote_or_sits_in_a_savepoint_shares_nothing(
    session: AsyncSession,
) -> None:
    async with session.begin_nested():
        assert await export_snapshot(session) is None  # PostgreSQL refuses there
    await session.execute(text("CREATE TEMP TABLE kit_snapshot_written (n int)"))
    assert await export_snapshot(session) is None  # the others would not see it
