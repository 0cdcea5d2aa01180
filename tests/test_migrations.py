"""The Alembic revisions build exactly the schema the models declare, and every one downgrades.

On a database of its own: upgrade to head, downgrade to base, upgrade again, then Alembic's
`compare_metadata` between the models (every package's, via the registry) and the migrated
schema must find nothing. Alembic does not compare CHECK constraints, partial-index predicates
or expression indexes, so a second test also compares PostgreSQL's own description of every
column, constraint and index with that of a scratch database built from the models.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pprint import pformat
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kit.db import async_url, metadata, with_database
from kit.db import execute_on_server as admin
from migrations import registry


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    name = f"passnum_migrations_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url) as url:
        yield url


async def schema_objects(url: str) -> dict[str, list[str]]:
    """What our revisions may leave behind in the public schema, by kind."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
                )
            ).scalars()
            functions = (
                await conn.execute(
                    text(
                        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                        "ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1"
                    )
                )
            ).scalars()
            types = (
                await conn.execute(
                    text(
                        "SELECT t.typname FROM pg_type t JOIN pg_namespace n "
                        "ON n.oid = t.typnamespace WHERE n.nspname = 'public' "
                        "AND t.typtype IN ('e', 'd') ORDER BY 1"
                    )
                )
            ).scalars()
            sequences = (
                await conn.execute(
                    text(
                        "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' "
                        "ORDER BY 1"
                    )
                )
            ).scalars()
            return {
                "tables": list(tables),
                "functions": list(functions),
                "types": list(types),
                "sequences": list(sequences),
            }
    finally:
        await engine.dispose()


async def differences(url: str) -> list[Any]:
    registry.import_all_models()
    engine = create_async_engine(async_url(url))

    def compare(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn,
            opts={"compare_type": True, "compare_server_default": True},
        )
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_migrations_upgrade_downgrade_upgrade_and_match_the_models(
    empty_database: str,
) -> None:
    url = empty_database
    registry.upgrade_in_thread(url)
    first = await schema_objects(url)
    assert "organisation" in first["tables"] and "ledger_entry" in first["tables"]

    registry.downgrade_in_thread(url)
    # Downgrading to base removes everything the revisions created (the ledger's functions too).
    assert await schema_objects(url) == {
        "tables": ["alembic_version"],
        "functions": [],
        "types": [],
        "sequences": [],
    }

    registry.upgrade_in_thread(url)
    assert await schema_objects(url) == first

    diff = await differences(url)
    assert not diff, "models and migrations differ:\n" + pformat(diff)


CATALOG_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
           AND NOT a.attisdropped AND c.relname <> 'alembic_version'
         ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid),
               k.condeferrable, k.condeferred
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'
           AND k.contype <> 't'::"char"  -- constraint triggers: see catalog()
         ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename <> 'alembic_version'
         ORDER BY 1, 2""",
}


async def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """PostgreSQL's normalised description of the tables (triggers and functions left out:
    the ledger's append-only and balance triggers exist only in its migration, by design)."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return {
                name: [tuple(row) for row in (await conn.execute(text(sql))).all()]
                for name, sql in CATALOG_QUERIES.items()
            }
    finally:
        await engine.dispose()


async def test_migrated_columns_constraints_and_indexes_are_exactly_those_of_the_models(
    server_url: str, database_url: str
) -> None:
    registry.import_all_models()
    async with scratch_database(server_url) as reference_url:
        engine = create_async_engine(async_url(reference_url))
        try:
            async with engine.begin() as conn:
                # The reference only: the schema every test uses is built by Alembic.
                await conn.run_sync(metadata.create_all)
        finally:
            await engine.dispose()
        expected = await catalog(reference_url)
    migrated = await catalog(database_url)
    for kind in CATALOG_QUERIES:
        missing = sorted(set(expected[kind]) - set(migrated[kind]))
        extra = sorted(set(migrated[kind]) - set(expected[kind]))
        assert not missing and not extra, (
            f"{kind} differ between models and migrations:\n"
            f"declared by the models, not migrated:\n{pformat(missing)}\n"
            f"migrated, not declared by the models:\n{pformat(extra)}"
        )


async def test_the_comparison_sees_a_schema_that_drifted(empty_database: str) -> None:
    registry.upgrade_in_thread(empty_database)
    engine = create_async_engine(async_url(empty_database))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_app_user_organisation_id"))
            await conn.execute(text("ALTER TABLE organisation ADD COLUMN stray integer"))
    finally:
        await engine.dispose()
    diff = await differences(empty_database)
    kinds = sorted((d[0] if isinstance(d, tuple) else d[0][0]) for d in diff)
    assert kinds == ["add_index", "remove_column"], pformat(diff)


def test_every_table_of_the_models_is_covered_by_the_comparison() -> None:
    # compare_metadata only sees tables in the metadata: the registry must import every package.
    registry.import_all_models()
    expected = {"organisation", "app_user", "programme", "cheque", "redemption", "ledger_entry"}
    assert expected <= set(metadata.tables)
