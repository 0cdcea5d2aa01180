"""The database itself refuses what the journal forbids, whatever the client (raw SQL here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import service as ledger
from ledger.sealer import seal_once

HASH = "0" * 64


@pytest.fixture
async def conn(asyncpg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(asyncpg_dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def accounts(conn: asyncpg.Connection) -> tuple[int, int]:
    ns = uuid.uuid4().hex[:10]
    rows = await conn.fetch(
        "INSERT INTO ledger_account (code) VALUES ($1), ($2) RETURNING id",
        f"raw:{ns}:a", f"raw:{ns}:b")
    return rows[0]["id"], rows[1]["id"]


async def insert_entry(conn: asyncpg.Connection) -> tuple[int, str]:
    key = f"raw:{uuid.uuid4().hex}"
    entry_id = await conn.fetchval(
        "INSERT INTO ledger_entry (idempotency_key, kind, content_hash) VALUES ($1, 't', $2) "
        "RETURNING id", key, HASH)
    return entry_id, key


async def key_exists(conn: asyncpg.Connection, key: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT count(*) FROM ledger_entry WHERE idempotency_key = $1", key))


@pytest.mark.parametrize("amounts", [[100, -99], [100], [], [100, -50, -49]])
async def test_an_entry_that_does_not_balance_is_refused_at_commit(
    conn: asyncpg.Connection, accounts: tuple[int, int], amounts: list[int],
) -> None:
    tr = conn.transaction()
    await tr.start()
    entry_id, key = await insert_entry(conn)
    for i, amount in enumerate(amounts):
        await conn.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) VALUES ($1, $2, $3)",
            entry_id, accounts[i % 2], amount)
    # Deferred: every statement went through; the commit is what refuses.
    with pytest.raises(asyncpg.CheckViolationError, match="not balanced"):
        await tr.commit()
    assert not await key_exists(conn, key)


async def test_a_balanced_entry_written_by_hand_commits(
    conn: asyncpg.Connection, accounts: tuple[int, int],
) -> None:
    async with conn.transaction():
        entry_id, key = await insert_entry(conn)
        await conn.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
            "VALUES ($1, $2, 100), ($1, $3, -100)", entry_id, *accounts)
    assert await key_exists(conn, key)


async def test_a_posting_added_later_to_a_committed_entry_is_refused(
    conn: asyncpg.Connection, accounts: tuple[int, int],
) -> None:
    async with conn.transaction():
        entry_id, _key = await insert_entry(conn)
        await conn.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
            "VALUES ($1, $2, 100), ($1, $3, -100)", entry_id, *accounts)
    with pytest.raises(asyncpg.CheckViolationError):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
                "VALUES ($1, $2, 5)", entry_id, accounts[0])
    assert await conn.fetchval(
        "SELECT count(*) FROM ledger_posting WHERE entry_id = $1", entry_id) == 2


@pytest.fixture
async def committed(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    ns = f"raw:{uuid.uuid4().hex[:10]}"
    async with sessionmaker() as s, s.begin():
        entry = await ledger.post(s, key=ns, kind="t", postings=[(f"{ns}:a", 4), (f"{ns}:b", -4)])
    return entry.id


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_posting SET amount_cents = amount_cents * 2 WHERE entry_id = $1",
    "UPDATE ledger_posting SET account_id = account_id WHERE entry_id = $1",
    "DELETE FROM ledger_posting WHERE entry_id = $1",
    "UPDATE ledger_entry SET kind = 'other' WHERE id = $1",
    "UPDATE ledger_entry SET created_at = created_at WHERE id = $1",
    "UPDATE ledger_entry SET memo = '{\"x\": 1}' WHERE id = $1",
    "DELETE FROM ledger_entry WHERE id = $1",
    "UPDATE ledger_account SET code = code || ':x' "
    "WHERE id IN (SELECT account_id FROM ledger_posting WHERE entry_id = $1)",
    "DELETE FROM ledger_account "
    "WHERE id IN (SELECT account_id FROM ledger_posting WHERE entry_id = $1)",
    # Not even the column the database fills itself.
    "UPDATE ledger_entry SET xact = 0 WHERE id = $1",
    "UPDATE ledger_entry SET content_hash = content_hash WHERE id = $1",
])
async def test_journal_rows_cannot_be_updated_or_deleted(
    conn: asyncpg.Connection, committed: int, statement: str,
) -> None:
    with pytest.raises(asyncpg.RestrictViolationError, match="refused"):
        await conn.execute(statement, committed)


@pytest.mark.parametrize("table", ["ledger_posting", "ledger_entry", "ledger_account",
                                   "ledger_seal"])
async def test_journal_tables_cannot_be_truncated(conn: asyncpg.Connection, table: str) -> None:
    # CASCADE would reach the other tables: still refused.
    with pytest.raises(asyncpg.RestrictViolationError, match="TRUNCATE"):
        await conn.execute(f"TRUNCATE {table} CASCADE")


async def test_an_entry_is_sealed_once(conn: asyncpg.Connection, committed: int) -> None:
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(
            "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash) "
            "VALUES ($1, 999999999, repeat('a', 64), repeat('b', 64))", committed)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash) "
                "VALUES ($1, 999999998, repeat('c', 64), repeat('b', 64))", committed)
    finally:
        await tr.rollback()  # a fake seal must not stay in the shared chain


@pytest.mark.parametrize("statement", [
    "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash) "
    "VALUES ($1, 999999999, 'not a hash', repeat('b', 64))",
    "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash) "
    "VALUES ($1, 0, repeat('a', 64), repeat('b', 64))",
    "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash, open_from) "
    "VALUES ($1, 999999999, repeat('a', 64), repeat('b', 64), 7)",
    "INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash) "
    "VALUES ($1 + 1000000000, 999999999, repeat('a', 64), repeat('b', 64))",
])
async def test_a_malformed_seal_is_refused(
    conn: asyncpg.Connection, committed: int, statement: str,
) -> None:
    tr = conn.transaction()
    await tr.start()
    try:
        with pytest.raises((asyncpg.CheckViolationError, asyncpg.ForeignKeyViolationError)):
            await conn.execute(statement, committed)
    finally:
        await tr.rollback()


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_seal SET hash = repeat('c', 64) WHERE entry_id = $1",
    "UPDATE ledger_seal SET sealed_seq = sealed_seq + 1000000 WHERE entry_id = $1",
    "DELETE FROM ledger_seal WHERE entry_id = $1",
    "UPDATE ledger_entry SET idempotency_key = idempotency_key || ':x' WHERE id = $1",
    "DELETE FROM ledger_entry WHERE id = $1",
])
async def test_a_sealed_entry_and_its_seal_cannot_be_changed(
    conn: asyncpg.Connection, committed: int, sessionmaker: async_sessionmaker[AsyncSession],
    statement: str,
) -> None:
    await seal_once(sessionmaker)
    assert await conn.fetchval("SELECT count(*) FROM ledger_seal WHERE entry_id = $1", committed)
    with pytest.raises(asyncpg.RestrictViolationError):
        await conn.execute(statement, committed)
