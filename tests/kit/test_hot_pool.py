"""kit.db.HotPool against the real PostgreSQL: bounded, reuses sound connections, drops the
others, hands connections to waiters, survives cancellation and a lost server connection."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kit.db import HotPool

PID = "SELECT pg_backend_pid()"


async def test_runs_statements_on_at_most_max_size_connections(database_url: str) -> None:
    pool = HotPool(database_url, max_size=2)
    try:
        rows = await asyncio.gather(*(
            pool.fetchrow("SELECT $1::int AS n, pg_backend_pid() AS pid, pg_sleep(0.01)", n)
            for n in range(20)
        ))
        assert [row["n"] for row in rows] == list(range(20))
        assert len({row["pid"] for row in rows}) == 2
        assert pool.size == 2
    finally:
        await pool.close()


async def test_a_postgres_error_keeps_the_connection(database_url: str) -> None:
    pool = HotPool(database_url, max_size=1)
    try:
        before = (await pool.fetchrow(PID))[0]
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetchrow("SELECT 1 / $1::int", 0)
        assert (await pool.fetchrow(PID))[0] == before
        assert pool.size == 1
    finally:
        await pool.close()


async def test_a_lost_connection_is_replaced(database_url: str, asyncpg_dsn: str) -> None:
    pool = HotPool(database_url, max_size=1)
    try:
        lost = (await pool.fetchrow(PID))[0]
        admin = await asyncpg.connect(asyncpg_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
        # The terminated connection fails its next statement (or is seen closed while idle);
        # either way the statement after that runs on a new connection.
        try:
            await pool.fetchrow(PID)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass
        again = (await pool.fetchrow(PID))[0]
        assert again != lost
        assert pool.size == 1
    finally:
        await pool.close()


async def test_a_statement_cancelled_midway_drops_its_connection(database_url: str) -> None:
    pool = HotPool(database_url, max_size=1)
    try:
        first = (await pool.fetchrow(PID))[0]
        slow = asyncio.create_task(pool.fetchrow("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert pool.size == 0
        assert (await asyncio.wait_for(pool.fetchrow(PID), 5))[0] != first
    finally:
        await pool.close()


async def test_a_waiter_gets_the_connection_and_a_cancelled_waiter_gives_up_its_turn(
    database_url: str,
) -> None:
    pool = HotPool(database_url, max_size=1)
    try:
        holder = asyncio.create_task(pool.fetchrow("SELECT pg_backend_pid(), pg_sleep(0.3)"))
        await asyncio.sleep(0.05)
        gives_up = asyncio.create_task(pool.fetchrow(PID))
        waits = asyncio.create_task(pool.fetchrow(PID))
        await asyncio.sleep(0.05)
        gives_up.cancel()
        pid = (await holder)[0]
        assert (await asyncio.wait_for(waits, 5))[0] == pid  # the same connection, handed on
        assert gives_up.cancelled()
        assert pool.size == 1
    finally:
        await pool.close()


async def test_closed_pool_refuses_and_closes_its_connections(database_url: str) -> None:
    pool = HotPool(database_url, max_size=2)
    await pool.fetchrow(PID)
    await pool.close()
    assert pool.size == 0
    with pytest.raises(RuntimeError):
        await pool.fetchrow(PID)


async def test_a_transaction_ended_by_the_callers_exception_is_rolled_back_and_kept(
    database_url: str,
) -> None:
    pool = HotPool(database_url, max_size=1)
    try:
        async with pool.connection() as conn:
            await conn.execute("CREATE TEMPORARY TABLE t (n int)")
            pid = await conn.fetchval(PID)
        with pytest.raises(LookupError):
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1)")
                raise LookupError("the caller gives up")
        async with pool.connection() as conn:
            assert await conn.fetchval(PID) == pid  # the same session, its table still there
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await pool.close()
