"""Stored idempotent answers are purged after their retention period, never under 8 days, a
chunk per transaction; `passnum purge-idempotency` does it from the command line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col
from typer.testing import CliRunner

from kit.clock import utcnow
from kit.settings import get_settings
from pass_.models import IdempotencyRecord
from pass_.redemption import OFFLINE_MAX_AGE
from pass_.retention import (
    MIN_DAYS,
    RetentionTooShort,
    delete_idempotency_chunk,
    purge_idempotency_records,
)

NOW = datetime(2001, 6, 1, 12, tzinfo=UTC)  # long before any record other tests write


@pytest.fixture
async def user_id(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[int]:
    """A user id of this test's own (records have no foreign key); its committed records are
    deleted afterwards."""
    uid = -(uuid.uuid4().int % 2**62) - 1
    yield uid
    async with sessionmaker() as session:
        await session.execute(
            delete(IdempotencyRecord).where(col(IdempotencyRecord.user_id) == uid)
        )
        await session.commit()


def records(user_id: int, ages: dict[str, timedelta], now: datetime) -> list[IdempotencyRecord]:
    return [
        IdempotencyRecord(
            user_id=user_id,
            key=key,
            request_hash="0" * 64,
            status_code=201,
            response={"key": key},
            created_at=now - age,
        )
        for key, age in ages.items()
    ]


async def keys_left(session: AsyncSession, user_id: int) -> set[str]:
    rows = await session.scalars(
        select(col(IdempotencyRecord.key)).where(col(IdempotencyRecord.user_id) == user_id)
    )
    return set(rows)


OLD = {f"old-{n}": timedelta(days=31 + n * 50) for n in range(5)}
KEPT = {
    "exactly-30-days": timedelta(days=30),  # not older than the period: kept
    "29-days": timedelta(days=29, hours=23),
    "yesterday": timedelta(days=1),
    "just-now": timedelta(0),
}


async def test_records_older_than_the_period_are_purged_chunk_by_chunk_and_newer_ones_kept(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: int
) -> None:
    async with sessionmaker() as session:
        session.add_all(records(user_id, OLD | KEPT, NOW))
        await session.commit()

    # Five old records, two per chunk: three transactions (2, 2, 1).
    deleted = await purge_idempotency_records(sessionmaker, now=NOW, days=30, chunk_size=2)

    assert deleted == len(OLD)
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == set(KEPT)
    # Nothing left to do: a second run deletes nothing.
    assert await purge_idempotency_records(sessionmaker, now=NOW, days=30, chunk_size=2) == 0


async def test_a_chunk_deletes_the_oldest_records_first_and_no_more_than_its_limit(
    session: AsyncSession,
) -> None:
    uid = -(uuid.uuid4().int % 2**62) - 1
    session.add_all(records(uid, OLD | KEPT, NOW))
    await session.flush()

    deleted = await delete_idempotency_chunk(session, before=NOW - timedelta(days=30), limit=2)

    assert deleted == 2
    # The two oldest (old-4: 231 days, old-3: 181 days) went first.
    assert await keys_left(session, uid) == set(OLD | KEPT) - {"old-4", "old-3"}


async def test_a_period_shorter_than_a_retry_may_come_is_refused_and_nothing_is_deleted(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: int
) -> None:
    # An offline scanner may post a scan up to 7 days after it was made, and post it again.
    assert MIN_DAYS == 8 and timedelta(days=MIN_DAYS) > OFFLINE_MAX_AGE
    async with sessionmaker() as session:
        session.add_all(records(user_id, OLD | KEPT, NOW))
        await session.commit()

    with pytest.raises(RetentionTooShort) as refused:
        await purge_idempotency_records(sessionmaker, now=NOW, days=MIN_DAYS - 1)

    assert refused.value.code == "retention_too_short"
    assert "au moins 8 jours" in refused.value.message
    assert refused.value.details == {"days": 7, "minimum_days": 8}
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == set(OLD | KEPT)
    # The minimum itself is accepted.
    assert await purge_idempotency_records(sessionmaker, now=NOW, days=MIN_DAYS) == len(OLD) + 2
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == {"yesterday", "just-now"}


# --------------------------------------------------------------------------- the command


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI on the test database (settings come from the environment, read once)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PASSNUM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def test_passnum_purge_idempotency_deletes_records_older_than_the_days_given(
    cli: CliRunner, sessionmaker: async_sessionmaker[AsyncSession], user_id: int
) -> None:
    from api.cli import app

    now = utcnow()
    async with sessionmaker() as session:
        session.add_all(
            records(user_id, {"40-days": timedelta(days=40), "20-days": timedelta(days=20)}, now)
        )
        await session.commit()

    refused = await asyncio.to_thread(cli.invoke, app, ["purge-idempotency", "--days", "7"])
    assert refused.exit_code == 1
    assert "Refusé (retention_too_short)" in refused.output
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == {"40-days", "20-days"}

    # Default period: 30 days.
    result = await asyncio.to_thread(cli.invoke, app, ["purge-idempotency"])
    assert result.exit_code == 0, result.output
    assert "supprimée(s) (conservation : 30 jours)." in result.output
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == {"20-days"}

    result = await asyncio.to_thread(cli.invoke, app, ["purge-idempotency", "--days", "10"])
    assert result.exit_code == 0, result.output
    assert "(conservation : 10 jours)" in result.output
    async with sessionmaker() as session:
        assert await keys_left(session, user_id) == set()
