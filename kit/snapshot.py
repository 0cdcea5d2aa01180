"""One database state read from several connections and processes at once: a transaction's
snapshot exported (`pg_export_snapshot`) and imported by the others, so a long read-only job
(the full audit) can use every core and still see a single moment of the database.

Another connection never sees the exporting transaction's own uncommitted writes, and
PostgreSQL refuses to export from a savepoint: `export_snapshot` gives None for such a
transaction, and the caller reads everything on its own connection instead.
"""

from __future__ import annotations

import asyncio
import pickle
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import libpq_url, make_engine
from kit.worker import frame

T = TypeVar("T")

_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


@dataclass(frozen=True)
class Snapshot:
    """What another connection (of this process or another) needs to read the same state: the
    database's URL (libpq form, credentials included) and the exported snapshot's name."""

    url: str
    name: str

    def set_statement(self) -> str:
        """The statement that makes a fresh REPEATABLE READ transaction read this state; it
        must come first in that transaction."""
        if not _SNAPSHOT_ID.fullmatch(self.name):  # quoted into the SQL below
            raise ValueError(f"not a snapshot name: {self.name!r}")
        return f"SET TRANSACTION SNAPSHOT '{self.name}'"


async def export_snapshot(session: AsyncSession) -> Snapshot | None:
    """The session's current state, shareable until its transaction ends; None when other
    connections could not read what the session reads (it has written, or is in a
    savepoint)."""
    if session.in_nested_transaction():
        return None
    connection = await session.connection()
    written = (await session.execute(text(
        "SELECT pg_current_xact_id_if_assigned() IS NOT NULL"))).scalar()
    if written:
        return None
    name = (await session.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
    url = connection.engine.url.render_as_string(hide_password=False)
    return Snapshot(url=libpq_url(url), name=name)


@asynccontextmanager
async def snapshot_connection(snapshot: Snapshot) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own reading `snapshot`, in a read-only transaction (for a worker
    process)."""
    connection = await asyncpg.connect(snapshot.url)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            await connection.execute(snapshot.set_statement())
            yield connection
    finally:
        await connection.close()


def read_at(snapshot: Snapshot, reader: Callable[..., Awaitable[T]], *args: Any) -> T:
    """In a worker process (`in_processes(read_at, [(snapshot, reader, …), …])`): `await
    reader(connection, *args)` on a connection of its own reading `snapshot`. `reader` must be
    importable by name."""

    async def work() -> T:
        async with snapshot_connection(snapshot) as connection:
            return await reader(connection, *args)

    return asyncio.run(work())


@asynccontextmanager
async def snapshot_session(snapshot: Snapshot) -> AsyncIterator[AsyncSession]:
    """A session on a connection of its own reading `snapshot`; its transaction is rolled back
    at the end (it is for reading)."""
    engine = make_engine(snapshot.url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
            await connection.begin()
            await connection.exec_driver_sql(snapshot.set_statement())
            async with AsyncSession(bind=connection) as session:
                yield session
            await connection.rollback()
    finally:
        await engine.dispose()


async def in_processes(function: Callable[..., T], arguments: Sequence[tuple[Any, ...]], *,
                       processes: int) -> list[T]:
    """`function(*args)` for each of `arguments` (picklable, `function` importable by name),
    spread over `processes` worker processes (`kit.worker`), the results in the order of
    `arguments`. Each worker takes the next call when it is done with its last, so a slow
    call does not hold the others back. The workers are fresh interpreters: they inherit no
    connection, thread or event loop, and need no guard in the main module."""
    pending = list(enumerate(arguments))
    pending.reverse()
    results: dict[int, T] = {}
    workers = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BOOT, *sys.path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for _ in range(max(1, min(processes, len(pending))))]
    done = False
    try:
        await all_or_none(*(_serve(w, function, pending, results) for w in workers))
        done = True
    finally:
        for worker in workers:  # done: each stops at the end of its input; else: stopped
            if worker.returncode is None:
                if done and worker.stdin is not None:
                    worker.stdin.close()
                else:
                    worker.kill()
        for worker in workers:
            await worker.wait()
    return [results[i] for i in range(len(arguments))]


# A worker's main: this process's import path first, so it imports the same code.
_BOOT = "import sys; sys.path[:0] = sys.argv[1:]; from kit.worker import main; main()"


async def _serve(worker: asyncio.subprocess.Process, function: Callable[..., T],
                 pending: list[tuple[int, tuple[Any, ...]]], results: dict[int, T]) -> None:
    """Send `worker` the next pending call until none is left."""
    assert worker.stdin is not None and worker.stdout is not None
    while pending:
        number, args = pending.pop()
        worker.stdin.write(frame((function, args)))
        await worker.stdin.drain()
        try:
            size = int.from_bytes(await worker.stdout.readexactly(8), "big")
            ok, value = pickle.loads(await worker.stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            raise RuntimeError("a worker process ended without answering") from None
        if not ok:
            raise value
        results[number] = value


async def all_or_none(*awaitables: Awaitable[T]) -> list[T]:
    """What `asyncio.gather` gives, but at the first failure (or when cancelled) the others are
    cancelled and awaited before the error goes on: nothing is left running, no connection
    left reading, once this returns or raises."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
