"""Database: the metadata convention, the async engine, sessions, and the embedded PostgreSQL.

With no DATABASE_URL the service runs a private PostgreSQL from the `pgserver` wheel in
`<data_dir>/pgdata`, so a newcomer's machine needs nothing installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from sqlalchemy import MetaData
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


class HotPool:
    """A few asyncpg connections for statements that are whole transactions by themselves
    (the redemption): `fetchrow` takes an idle connection, runs the statement, puts it back.

    asyncpg's own pool does more per use than such a statement needs: acquiring and releasing
    go through shielded tasks and timeouts, ~60 µs of CPU a statement, a tenth of a redemption.
    Here a use is a list pop and a push; a waiting request is handed the connection directly.
    A connection that fails other than by a PostgreSQL error (lost, cancelled mid-statement,
    left in a transaction) is dropped, and its place goes to a waiter or to the next use, which
    opens a new one. Connections are opened on first use, at most `max_size`."""

    def __init__(self, url: str, *, max_size: int = 10,
                 server_settings: dict[str, str] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._url = libpq_url(url)
        self._max_size = max_size
        self._server_settings = server_settings or {}
        self._idle: list[Any] = []
        self._size = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    async def fetchrow(self, query: str, *args: object) -> Any:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    async def fetch(self, query: str, *args: object) -> list[Any]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection of the pool for a few statements (a transaction the caller opens and
        ends within the block), given back after: kept if sound, dropped otherwise."""
        import asyncpg

        conn = await self._take()
        try:
            yield conn
        except (asyncio.CancelledError, asyncpg.InterfaceError, OSError):
            # Lost, or interrupted mid-statement: its state is unknown.
            self._drop(conn)
            raise
        except BaseException:
            # The server refused a statement (and answered), or the caller's own exception.
            self._put_back(conn)
            raise
        self._put_back(conn)

    async def _take(self) -> Any:
        import asyncpg

        while True:
            if self._closed:
                raise RuntimeError("HotPool is closed")
            if self._idle:
                conn = self._idle.pop()
                if conn.is_closed():  # lost while idle (server restarted): open another
                    self._drop(conn)
                    continue
                return conn
            if self._size < self._max_size:
                self._size += 1
            else:
                waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    handed = await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._pass_on(waiter.result())  # handed over just as we were cancelled
                    else:
                        self._waiters.remove(waiter)
                    raise
                if handed is not None:
                    return handed
                # None: a connection was dropped and its place handed to us; open one.
            try:
                return await asyncpg.connect(self._url, server_settings=self._server_settings)
            except BaseException:
                self._pass_on(None)
                raise

    def _put_back(self, conn: Any) -> None:
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            self._drop(conn)
        else:
            self._pass_on(conn)

    def _drop(self, conn: Any) -> None:
        conn.terminate()
        self._pass_on(None)

    def _pass_on(self, conn: Any) -> None:
        """A connection (or, for None, the place of one dropped) to the first waiter still
        waiting; else the connection goes idle, or the place is freed."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._size -= 1
        elif self._closed:
            conn.terminate()
            self._size -= 1
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when their statement ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            try:
                await conn.close(timeout=5)
            except Exception:  # noqa: BLE001 — closing anyway
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("HotPool is closed"))


async def make_pool(url: str, *, max_size: int = 10) -> HotPool:
    """The pool of the hot statements (`HotPool`), beside the SQLAlchemy engine: no ORM, no
    BEGIN/COMMIT round trips. Connections are opened on first use."""
    # A statement of the hot path waits for a row lock one second at most, then fails
    # (LockNotAvailableError) and its request takes the general path, which waits as long as
    # it takes: one contested cheque never holds up a worker's queue of scans.
    return HotPool(url, max_size=max_size,
                   server_settings={"application_name": "passnum-hot-path",
                                    "lock_timeout": "1s"})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)


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
