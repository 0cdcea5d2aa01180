"""Retention of stored idempotent answers: `idempotency_record` rows older than a period are
purged, a bounded chunk per transaction.

A record must outlive every retry that may still carry its key. An online client retries within
24 hours; an offline scanner posts — and may post again — a scan up to OFFLINE_MAX_AGE (7 days)
after it was made, and the record dates from the first post. So a period shorter than
OFFLINE_MAX_AGE plus a day (for clock skew) is refused: MIN_DAYS, 8 days.

Rows reserved by a request still running (`status_code` 0, see api/idempotency.py) need no care:
they are never committed, so no other transaction, this purge included, ever sees them — and
they are younger than any cutoff anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction
from kit.errors import InvalidInput
from pass_.redemption import OFFLINE_MAX_AGE

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_DAYS",
    "MIN_DAYS",
    "RetentionTooShort",
    "delete_idempotency_chunk",
    "idempotency_cutoff",
    "purge_idempotency_records",
]

DEFAULT_DAYS = 30
MIN_DAYS = OFFLINE_MAX_AGE.days + 1
# Rows per DELETE, each committed on its own: row locks, WAL and the oldest open transaction
# stay small, whatever the backlog.
CHUNK_SIZE = 10_000

# The oldest rows through ix_idempotency_record_created_at, then deleted through the primary
# key: ARRAY(…) makes the ids one value, so the planner cannot turn this into a join that
# scans the whole table for every chunk.
_DELETE_CHUNK = text("""
DELETE FROM idempotency_record
WHERE id = ANY(ARRAY(
    SELECT id FROM idempotency_record WHERE created_at < :before ORDER BY created_at LIMIT :limit
))
""")


class RetentionTooShort(InvalidInput):
    code = "retention_too_short"
    message = (
        f"Les clés d'idempotence doivent être conservées au moins {MIN_DAYS} jours : un client "
        "peut renvoyer une demande pendant 24 heures, et un lecteur hors ligne transmettre un "
        f"passage jusqu'à {OFFLINE_MAX_AGE.days} jours après l'avoir fait."
    )


def idempotency_cutoff(now: datetime, days: int) -> datetime:
    """Records created before this instant may be purged; refuses a period under MIN_DAYS."""
    if days < MIN_DAYS:
        raise RetentionTooShort(days=days, minimum_days=MIN_DAYS)
    return now - timedelta(days=days)


async def delete_idempotency_chunk(
    session: AsyncSession, *, before: datetime, limit: int = CHUNK_SIZE
) -> int:
    """Delete at most `limit` records created before `before`, oldest first; returns how many
    were deleted."""
    result = await session.execute(_DELETE_CHUNK, {"before": before, "limit": limit})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_idempotency_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    days: int = DEFAULT_DAYS,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Delete the records older than `days` days, `chunk_size` rows per transaction; returns
    how many were deleted. Owns its transactions (one commit per chunk), so an interruption
    keeps what was already purged and a second run carries on. Refuses a period under
    MIN_DAYS before touching anything."""
    cutoff = idempotency_cutoff(now, days)
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    total = 0
    while True:
        async with transaction(sessionmaker) as session:
            deleted = await delete_idempotency_chunk(session, before=cutoff, limit=chunk_size)
        total += deleted
        if deleted < chunk_size:
            return total
