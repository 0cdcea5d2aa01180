"""Database: the metadata convention, the async engine, sessions, and the embedded PostgreSQL.

With no DATABASE_URL the service runs a private PostgreSQL from the `pgserver` wheel in
`<data_dir>/pgdata`, so a newcomer's machine needs nothing installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# One metadata for every table of every package, with stable constraint names for Alembic.
metadata: MetaData = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir/pgdata`; return a libpq URL."""
    import pgserver  # imported lazily: only the embedded mode needs it

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    return str(server.get_uri())


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    return database_url or embedded_url(data_dir)


def async_url(url: str) -> str:
    """postgresql://… (libpq form, any driver suffix) → postgresql+asyncpg://…"""
    parts = urlsplit(url)
    scheme = "postgresql+asyncpg"
    query = parse_qs(parts.query)
    # libpq's sslmode is not an asyncpg argument; asyncpg understands `ssl`.
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    return urlunsplit(
        (scheme, parts.netloc, parts.path, urlencode(query, doseq=True), parts.fragment)
    )


def libpq_url(url: str) -> str:
    """postgresql+asyncpg://… → postgresql://… (for psql, pgbench, psycopg)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False
) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        echo=echo,
        # Errors carry the SQL but not the values: a traceback in the logs must never show an
        # e-mail address or a beneficiary's reference.
        hide_parameters=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)


def run_with_own_engine(
    database_url: str,
    work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]],
) -> None:
    """A process's main: run `work` on an engine of one connection of its own, disposed of
    when `work` ends (the side processes of `passnum serve`: the sealer, the rollup)."""

    async def main() -> None:
        engine = make_engine(database_url, pool_size=1, max_overflow=0)
        try:
            await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(main())


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, in the session's transaction — begun if it
    was not yet (a server-side cursor needs one): for COPY, cursors and asyncpg's own calls."""
    await session.execute(text("SELECT 1"))
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection  # type: ignore[return-value]


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit on success, rollback on error. Used by the CLI and jobs."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def execute_on_server(server_url: str, sql: str) -> None:
    """Run one maintenance statement (CREATE/DROP DATABASE…) on the server's `postgres`
    database, outside any transaction: for the test suite, the benchmarks and scratch databases."""
    import asyncpg

    conn = await asyncpg.connect(libpq_url(with_database(server_url, "postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
