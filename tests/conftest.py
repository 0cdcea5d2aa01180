"""Test fixtures: a fresh PostgreSQL database per run, built by Alembic.

The server is the embedded one (pgserver, in ./.passnum) unless DATABASE_URL is set. Each run
creates its own database on that server, so the suite never touches anyone's data.
Ordinary tests run inside a transaction that is rolled back; tests that need several real
connections (concurrency) use `engine`/`sessionmaker` and commit data of their own.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.db import async_url, execute_on_server, libpq_url, make_engine, resolve_url, with_database
from migrations import registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_url() -> str:
    """libpq URL of the PostgreSQL server the suite runs against."""
    return resolve_url(os.environ.get("DATABASE_URL"), ROOT / ".passnum")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this run, migrated to head."""
    name = f"passnum_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(execute_on_server(server_url, f'CREATE DATABASE "{name}"'))
    url = with_database(server_url, name)
    registry.upgrade_in_thread(url)
    asyncio.run(_load_communes(url))
    yield url
    if not os.environ.get("PASSNUM_KEEP_TEST_DB"):
        asyncio.run(execute_on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _load_communes(url: str) -> None:
    """The commune reference, once per run (one COPY of ~35,000 rows), as `passnum
    load-communes` loads it."""
    from pass_ import communes

    eng = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(eng) as s, s.begin():
            await communes.load_communes(s, communes.read_reference())
    finally:
        await eng.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=25, max_overflow=10)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on real, separate connections; data they commit stays for the run."""
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction rolled back after the test (commits become savepoints)."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        s = AsyncSession(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield s
        finally:
            await s.close()
            await trans.rollback()


@pytest.fixture(scope="session")
def asyncpg_dsn(database_url: str) -> str:
    return libpq_url(database_url)


__all__ = ["async_url"]


# --------------------------------------------------------------------------- the application


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from kit.settings import Settings

    data_dir = tmp_path_factory.mktemp("passnum-data")
    return Settings(
        data_dir=data_dir,
        database_url=None,
        log_json=True,
        rate_limit_per_user_per_minute=100_000,
        rate_limit_per_ip_per_minute=100_000,
        rate_limit_burst=100_000,
        login_failures_per_minute=100_000,
        login_failure_burst=100_000,
        login_failures_per_ip_per_minute=100_000,
        login_failure_ip_burst=100_000,
        # Programmes of the tests end on 31 December of this year: other features' tests must
        # not depend on the calendar. tests/pass_/test_validity.py passes its own values.
        hand_out_stop_days=0,
    )


@pytest.fixture(scope="session")
async def app(settings, engine: AsyncEngine) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """The real application on the test database (lifespan run; no background sealer)."""
    from api.app import create_app

    application = create_app(settings, engine=engine, run_sealer=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app, session: AsyncSession) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """HTTP client whose requests share the test's rolled-back transaction."""
    import httpx

    from api.deps import get_session

    async def test_session() -> AsyncIterator[AsyncSession]:
        # Each request in a savepoint of its own, as each real request has its own transaction:
        # a request that fails undoes its own work only, not the test's data made before it.
        # Released on success (the outer transaction still rolls back after the test), rolled
        # back on error, also when a failed flush has left it inactive.
        async with session.begin_nested():
            yield session

    app.dependency_overrides[get_session] = test_session
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    app.dependency_overrides.pop(get_session, None)


@pytest.fixture
async def committed_client(app) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """HTTP client on real, committed transactions (for concurrency tests)."""
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last. They commit their batches at the present time in the run's
    shared database, and a batch whose cutoff is before the last batch's is refused (as it must
    be): the other tests close theirs at cutoffs in 2024, so they go first."""
    items.sort(key=lambda item: "tests/e2e/" in item.nodeid.replace("\\", "/"))
