"""Revision 0002_ledger builds exactly the ledger models, and downgrades cleanly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from kit.db import async_url, libpq_url, metadata, with_database
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


async def test_the_ledger_revision_matches_the_models_and_downgrades(scratch_url: str) -> None:
    registry.upgrade_in_thread(scratch_url, "0002_ledger")
    engine = create_async_engine(async_url(scratch_url))
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(ledger_diffs) == []
    finally:
        await engine.dispose()
    assert await ledger_objects(scratch_url) == (
        ["ledger_account", "ledger_entry", "ledger_posting"],
        ["ledger_check_entry_balanced", "ledger_entry_guard_update", "ledger_refuse_change"])
    registry.downgrade_in_thread(scratch_url, "0001_accounts")
    assert await ledger_objects(scratch_url) == ([], [])
    registry.upgrade_in_thread(scratch_url, "0002_ledger")
    assert (await ledger_objects(scratch_url))[0] == [
        "ledger_account", "ledger_entry", "ledger_posting"]
