"""Expiry of unused cheques and the end of a programme: credit notes (avoirs) of unused
commitments.

`expire_cheques` is the daily job: one set-based UPDATE turns every active cheque past its
`redeem_until` into `expired`, and one ledger entry per programme and day moves their value from
`outstanding` back to `available` (key `expire:<programme>:<day>`; a second run the same day
that finds more cheques — a reversal reactivated one — writes `…:<day>:2`).

`close_programme`, once the programme's last redemption day has passed, its cheques have
expired and its redemptions are all cleared, gives each financer a credit note of its unused
commitment (commitment − allocated by the batches) and posts `credit:<programme>:<financer>`
(`available` → the financer's `commitment`), bringing both to zero. Closing again returns the
same credit notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import invoices, journal
from clearing.batches import financer_lines_digest, statement_hash
from clearing.errors import (
    ExpiryDayInFuture,
    ExpiryDayTooOld,
    ExpiryNeedsConfirmation,
    ProgrammeNotCleared,
    ProgrammeNotEnded,
)
from kit.clock import paris_day
from kit.errors import NotFound
from ledger import service as ledger
from pass_.redemption import OFFLINE_MAX_AGE

# Offline scanners may post a scan up to OFFLINE_MAX_AGE after it was made: a cheque scanned on
# its last day must still be active when that scan arrives, so expiry (and a programme's end,
# with its credit notes) waits that long after `redeem_until`. Online redemption still stops at
# `redeem_until`: the redemption rule checks the date, not only the status.
EXPIRY_GRACE = OFFLINE_MAX_AGE


@dataclass(frozen=True, slots=True)
class ExpiredProgramme:
    programme_id: int
    cheques: int
    value_cents: int


@dataclass(frozen=True, slots=True)
class ClosedProgramme:
    programme_id: int
    credit_note_ids: list[int]
    unused_cents: int


@dataclass
class ExpiryRun:
    today: date
    expired: list[ExpiredProgramme] = field(default_factory=list)
    closed: list[ClosedProgramme] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # ended, but redemptions to clear first

    @property
    def cheques(self) -> int:
        return sum(e.cheques for e in self.expired)

    @property
    def value_cents(self) -> int:
        return sum(e.value_cents for e in self.expired)


_EXPIRE = text("""
WITH expired AS (
    UPDATE cheque SET status = 'expired', status_changed_at = :now
    WHERE status = 'active' AND redeem_until < :last_open_day
      AND (CAST(:programme AS bigint) IS NULL OR programme_id = :programme)
    RETURNING programme_id, value_cents
)
SELECT programme_id, count(*), CAST(sum(value_cents) AS bigint)
FROM expired GROUP BY programme_id ORDER BY programme_id
""")


async def expire_cheques(
    session: AsyncSession, *, today: date, now: datetime, programme_id: int | None = None
) -> list[ExpiredProgramme]:
    """Expire every active cheque whose last redemption day is before `today` (of one
    programme, or all) and post one entry per programme."""
    rows = (
        await session.execute(
            _EXPIRE, {"last_open_day": today - EXPIRY_GRACE, "now": now, "programme": programme_id}
        )
    ).all()
    out = []
    for pid, count, value in rows:
        run = 1
        while await ledger.get_entry(session, journal.expire_key(pid, today, run)) is not None:
            run += 1
        await ledger.post(
            session,
            key=journal.expire_key(pid, today, run),
            kind=journal.EXPIRE_KIND,
            postings=journal.expire(pid, value),
            memo={"programme_id": pid, "cheques": count, "day": today.isoformat()},
            at=now,
        )
        out.append(ExpiredProgramme(pid, count, value))
    return out


_PROGRAMME = text("""
SELECT id, redeem_until, closed_at FROM programme WHERE id = :id FOR UPDATE
""")

_UNCLEARED = text("""
SELECT EXISTS (SELECT 1 FROM redemption WHERE programme_id = :id AND batch_id IS NULL
               AND reversed_at IS NULL)
    OR EXISTS (SELECT 1 FROM cheque WHERE programme_id = :id AND status = 'active')
""")

# Commitment and what the batches allocated, per financer in declared order.
_UNUSED = text("""
SELECT f.organisation_id, f.commitment_cents,
       CAST(coalesce((SELECT sum(l.amount_cents) FROM statement_line l
                      JOIN statement s ON s.id = l.statement_id
                      WHERE s.kind = 'financer' AND s.organisation_id = f.organisation_id
                        AND l.programme_id = f.programme_id), 0) AS bigint)
FROM programme_financer f WHERE f.programme_id = :id ORDER BY f.position
""")

_CREDIT_NOTES = text("""
SELECT id, gross_cents FROM statement WHERE kind = 'credit_note' AND programme_id = :id
ORDER BY id
""")


async def close_programme(
    session: AsyncSession, *, programme_id: int, today: date, now: datetime
) -> ClosedProgramme:
    """End a programme: expire its last cheques, then one credit note per financer with
    commitment left. Raises ProgrammeNotEnded before `redeem_until` has passed, and
    ProgrammeNotCleared while some of its redemptions wait for a batch."""
    row = (await session.execute(_PROGRAMME, {"id": programme_id})).first()
    if row is None:
        raise NotFound("Programme introuvable.", programme_id=programme_id)
    _pid, redeem_until, closed_at = row
    if closed_at is None:
        if today <= redeem_until + EXPIRY_GRACE:
            raise ProgrammeNotEnded(
                programme_id=programme_id, redeem_until=redeem_until.isoformat()
            )
        await expire_cheques(session, today=today, now=now, programme_id=programme_id)
        if (await session.execute(_UNCLEARED, {"id": programme_id})).scalar():
            raise ProgrammeNotCleared(programme_id=programme_id)
        await _issue_credit_notes(session, programme_id, now)
        await invoices.issue_credit_notes(session, programme_id=programme_id, issue_date=today)
        await session.execute(
            text("UPDATE programme SET closed_at = :now WHERE id = :id"),
            {"now": now, "id": programme_id},
        )
    notes = (await session.execute(_CREDIT_NOTES, {"id": programme_id})).all()
    return ClosedProgramme(programme_id, [n[0] for n in notes], sum(n[1] for n in notes))


async def _issue_credit_notes(session: AsyncSession, programme_id: int, now: datetime) -> None:
    for financer_id, commitment, allocated in (
        await session.execute(_UNUSED, {"id": programme_id})
    ).all():
        unused = commitment - allocated
        if unused <= 0:
            continue  # fully used (or charged beyond it): nothing to give back
        lines = [(programme_id, None, None, 0, unused)]
        digest = statement_hash(
            kind="credit_note",
            organisation_id=financer_id,
            batch_id=None,
            programme_id=programme_id,
            gross_cents=unused,
            fee_cents=0,
            net_cents=unused,
            cheque_count=0,
            lines_digest=financer_lines_digest(lines),
        )
        statement_id = (
            await session.execute(
                text("""
            INSERT INTO statement (kind, organisation_id, programme_id, gross_cents, fee_cents,
                                   net_cents, cheque_count, status, content_hash, created_at)
            VALUES ('credit_note', :org, :pid, :unused, 0, :unused, 0, 'issued', :hash, :now)
            RETURNING id"""),
                {
                    "org": financer_id,
                    "pid": programme_id,
                    "unused": unused,
                    "hash": digest,
                    "now": now,
                },
            )
        ).scalar_one()
        await session.execute(
            text("""
            INSERT INTO statement_line (statement_id, programme_id, cheque_count, amount_cents)
            VALUES (:sid, :pid, 0, :unused)"""),
            {"sid": statement_id, "pid": programme_id, "unused": unused},
        )
        await ledger.post(
            session,
            key=journal.credit_key(programme_id, financer_id),
            kind=journal.CREDIT_KIND,
            postings=journal.credit(programme_id, financer_id, unused),
            memo={"programme_id": programme_id, "statement_id": statement_id},
            at=now,
        )


_ENDED = text("""
SELECT id FROM programme WHERE closed_at IS NULL AND redeem_until < :last_open_day ORDER BY id
""")


async def run_expiry(session: AsyncSession, *, today: date, now: datetime) -> ExpiryRun:
    """The daily job: expire cheques, then close every ended programme whose redemptions are
    all cleared (the others wait for the next batch)."""
    run = ExpiryRun(today=today, expired=await expire_cheques(session, today=today, now=now))
    for (programme_id,) in (
        await session.execute(_ENDED, {"last_open_day": today - EXPIRY_GRACE})
    ).all():
        try:
            async with session.begin_nested():
                run.closed.append(
                    await close_programme(session, programme_id=programme_id, today=today, now=now)
                )
        except ProgrammeNotCleared:
            run.waiting.append(programme_id)
    return run


# --------------------------------------------------------------- the operator's expiry run

_PREVIEW = text("""
SELECT count(*) FILTER (WHERE redeem_until < :last_open_day),
       CAST(coalesce(sum(value_cents) FILTER (WHERE redeem_until < :last_open_day), 0)
            AS bigint),
       count(*)
FROM cheque WHERE status = 'active'
""")


@dataclass(frozen=True, slots=True)
class ExpiryPreview:
    """What an expiry run on `today` would expire, against all live (active) cheques."""

    today: date
    cheques: int
    value_cents: int
    active: int
    confirm_share_percent: int

    @property
    def share_percent(self) -> float:
        return 100 * self.cheques / self.active if self.active else 0.0

    @property
    def needs_confirmation(self) -> bool:
        return self.cheques * 100 > self.confirm_share_percent * self.active


def check_expiry_day(today: date, *, now: datetime) -> date:
    """An operator's expiry day: never after the real Paris day (a typo such as 9999-12-31
    would expire every cheque), and a past day only to catch up a missed run, at most
    EXPIRY_GRACE back (the programme rule an expiry already waits for)."""
    real_today = paris_day(now)
    if today > real_today:
        raise ExpiryDayInFuture(today=today.isoformat(), paris_today=real_today.isoformat())
    if today < real_today - EXPIRY_GRACE:
        raise ExpiryDayTooOld(
            message=f"Le jour d'expiration est trop ancien : un rattrapage remonte au plus "
                    f"de {EXPIRY_GRACE.days} jours (au {(real_today - EXPIRY_GRACE):%d/%m/%Y}).",
            today=today.isoformat(), earliest=(real_today - EXPIRY_GRACE).isoformat())
    return today


async def preview_expiry(session: AsyncSession, *, today: date, now: datetime,
                         confirm_share_percent: int) -> ExpiryPreview:
    """How many cheques (and how much value) an expiry on `today` would touch."""
    check_expiry_day(today, now=now)
    cheques, value, active = (await session.execute(
        _PREVIEW, {"last_open_day": today - EXPIRY_GRACE})).one()
    return ExpiryPreview(today, cheques, value, active, confirm_share_percent)


async def operator_expiry(session: AsyncSession, *, today: date | None, now: datetime,
                          confirm: bool, confirm_share_percent: int) -> ExpiryRun:
    """The expiry as the operator (API, page, `passnum expire`) runs it: the day checked, and
    a run that would expire more than `confirm_share_percent` % of the live cheques refused
    unless `confirm` says the operator saw the figures (ExpiryNeedsConfirmation carries
    them)."""
    day = today or paris_day(now)
    preview = await preview_expiry(session, today=day, now=now,
                                   confirm_share_percent=confirm_share_percent)
    if preview.needs_confirmation and not confirm:
        raise ExpiryNeedsConfirmation(
            message=(f"Cette expiration toucherait {preview.cheques} chèque(s) sur "
                     f"{preview.active} actifs ({preview.share_percent:.0f} %, au-delà du "
                     f"seuil de {confirm_share_percent} %) : vérifiez le jour puis "
                     "confirmez explicitement."),
            today=day.isoformat(), cheques=preview.cheques, value_cents=preview.value_cents,
            active_cheques=preview.active, threshold_percent=confirm_share_percent)
    return await run_expiry(session, today=day, now=now)
