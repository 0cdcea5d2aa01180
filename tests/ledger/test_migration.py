"""The ledger's revisions (0002_ledger, 0007_ledger_seal) build exactly the ledger models, and
downgrade cleanly, seals included."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from kit.db import async_url, libpq_url, make_engine, make_sessionmaker, metadata, with_database
from ledger.audit import audit_ledger
from ledger.canonical import GENESIS_HASH, content_hash, seal_hash
from ledger.sealer import seal_once
from migrations import registry


@pytest.fixture
async def scratch_url(server_url: str) -> AsyncIterator[str]:
    name = f"passnum_ledger_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(libpq_url(with_database(server_url, "postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def ledger_diffs(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if "ledger" in repr(d)]


async def ledger_objects(url: str) -> tuple[list[str], list[str]]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ledger%' ORDER BY 1"
            ))).scalars().all()
            functions = (await conn.execute(text(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'ledger%' ORDER BY 1"
            ))).scalars().all()
            return list(tables), list(functions)
    finally:
        await engine.dispose()


async def test_the_ledger_revisions_match_the_models_and_downgrade(scratch_url: str) -> None:
    registry.upgrade_in_thread(scratch_url, "0002_ledger")
    assert await ledger_objects(scratch_url) == (
        ["ledger_account", "ledger_entry", "ledger_posting"],
        ["ledger_check_entry_balanced", "ledger_entry_guard_update", "ledger_refuse_change"])
    registry.upgrade_in_thread(scratch_url)
    engine = create_async_engine(async_url(scratch_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(ledger_diffs) == []
    finally:
        await engine.dispose()
    assert await ledger_objects(scratch_url) == (
        ["ledger_account", "ledger_entry", "ledger_posting", "ledger_seal"],
        ["ledger_canonical_json", "ledger_check_entry_balanced", "ledger_content_hash",
         "ledger_open_accounts", "ledger_post", "ledger_post_many", "ledger_refuse_change"])
    registry.downgrade_in_thread(scratch_url, "0001_accounts")
    assert await ledger_objects(scratch_url) == ([], [])
    registry.upgrade_in_thread(scratch_url, "0002_ledger")
    assert (await ledger_objects(scratch_url))[0] == [
        "ledger_account", "ledger_entry", "ledger_posting"]


async def _post_at_0006(
    s: Any, key: str, postings: list[tuple[str, int]], memo: dict[str, int] | None
) -> Any:
    """An entry as written before `ledger_post` existed (0008): plain inserts."""
    row = (await s.execute(text(
        "INSERT INTO ledger_entry (idempotency_key, kind, memo, content_hash) "
        "VALUES (:k, 't', CAST(:m AS jsonb), :h) RETURNING id, created_at"),
        {"k": key, "m": None if memo is None else json.dumps(memo),
         "h": content_hash("t", postings, memo)})).one()
    for code, amount in postings:
        await s.execute(text("INSERT INTO ledger_account (code) VALUES (:c) "
                             "ON CONFLICT (code) DO NOTHING"), {"c": code})
        await s.execute(text(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
            "SELECT :e, id, :amount FROM ledger_account WHERE code = :c"),
            {"c": code, "e": row[0], "amount": amount})
    return SimpleNamespace(id=row[0], created_at=row[1])


async def test_the_seals_move_out_of_the_entries_and_back_with_the_chain_intact(
    scratch_url: str,
) -> None:
    """A journal sealed the old way (seal columns on the entry) keeps its chain across 0007:
    the seals are copied, the first run after the upgrade finds the entry left unsealed, and a
    downgrade puts every seal back on its entry."""
    registry.upgrade_in_thread(scratch_url, "0006_idempotency_purge")
    engine = make_engine(scratch_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            first = await _post_at_0006(s, "mig:1", [("m:a", 5), ("m:b", -5)], {"n": 1})
            second = await _post_at_0006(s, "mig:2", [("m:a", 7), ("m:b", -7)], None)
        sealed = seal_hash(GENESIS_HASH, seq=1, entry_id=first.id, key="mig:1", kind="t",
                           memo={"n": 1}, created_at=first.created_at,
                           postings=[("m:a", 5), ("m:b", -5)])
        async with sessions() as s, s.begin():  # the only UPDATE revision 0002 allowed
            await s.execute(text(
                "UPDATE ledger_entry SET sealed_seq = 1, hash = :h, prev_hash = :p WHERE id = :id"),
                {"h": sealed, "p": GENESIS_HASH, "id": first.id})
        await engine.dispose()

        registry.upgrade_in_thread(scratch_url)
        engine = make_engine(scratch_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            assert (await s.execute(text(
                "SELECT entry_id, sealed_seq, hash, prev_hash, open_from FROM ledger_seal"
            ))).all() == [(first.id, 1, sealed, GENESIS_HASH, None)]
        assert await seal_once(sessions) == 1
        async with sessions() as s:
            assert await audit_ledger(s) == []
            chain = (await s.execute(text(
                "SELECT entry_id, sealed_seq, prev_hash FROM ledger_seal ORDER BY sealed_seq"
            ))).all()
        assert [(r[0], r[1]) for r in chain] == [(first.id, 1), (second.id, 2)]
        assert chain[1][2] == sealed
        await engine.dispose()

        registry.downgrade_in_thread(scratch_url, "0006_idempotency_purge")
        engine = make_engine(scratch_url)
        async with engine.connect() as conn:
            back = (await conn.execute(text(
                "SELECT id, sealed_seq, prev_hash FROM ledger_entry ORDER BY id"))).all()
        assert back == [(first.id, 1, GENESIS_HASH), (second.id, 2, sealed)]
    finally:
        await engine.dispose()
