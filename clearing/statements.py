"""Reading batches and statements, scoped to who asks: a site or a financer sees only its own
statements, the operator sees all (`organisation_id=None`). Another's statement is "not found".

Site statement lines are the batch's redemptions of the site (read, not stored); financer and
credit-note lines are stored; a financer statement also shows, per programme, the commitment
against what batches have allocated so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.errors import BatchNotFound, StatementNotFound
from clearing.schemas import (
    BatchRead,
    BatchSummary,
    FinancerLine,
    HeldTransfer,
    OrganisationRef,
    PaymentRead,
    ProgrammeStanding,
    SiteLine,
    StatementRead,
    StatementSummary,
)
from kit.clock import paris_day

_SUMMARY_COLUMNS = """
s.id, s.kind, s.organisation_id, o.name AS organisation_name, s.batch_id, s.programme_id,
s.gross_cents, s.fee_cents, s.net_cents, s.cheque_count, s.status, s.payment_method,
s.hold_code, s.hold_reason, s.payment_reference, s.paid_cents, s.paid_on, s.paid_at,
s.failure_message, s.content_hash
"""

_BATCH_COLUMNS = "id, cutoff, period_start, closed_at, redemption_count, gross_cents"


def _summary(row: Any) -> StatementSummary:
    return StatementSummary.model_validate(dict(row._mapping))


async def list_batches(session: AsyncSession) -> list[BatchSummary]:
    rows = (await session.execute(text(
        f"SELECT {_BATCH_COLUMNS} FROM batch ORDER BY cutoff DESC, id DESC"))).all()
    return [BatchSummary.model_validate(dict(r._mapping)) for r in rows]


async def batch_detail(session: AsyncSession, batch_id: int) -> BatchRead:
    """A batch with its statements (sites first, by name) and the transfers held back."""
    row = (await session.execute(text(f"SELECT {_BATCH_COLUMNS} FROM batch WHERE id = :id"),
                                 {"id": batch_id})).first()
    if row is None:
        raise BatchNotFound(batch_id=batch_id)
    statements = [_summary(r) for r in (await session.execute(text(f"""
        SELECT {_SUMMARY_COLUMNS} FROM statement s JOIN organisation o ON o.id = s.organisation_id
        WHERE s.batch_id = :id ORDER BY s.kind DESC, o.name, s.id"""), {"id": batch_id})).all()]
    held = [HeldTransfer(statement_id=s.id, organisation_id=s.organisation_id,
                         organisation_name=s.organisation_name, net_cents=s.net_cents,
                         code=s.hold_code or "", reason=s.hold_reason or "")
            for s in statements if s.status == "held"]
    return BatchRead(**dict(row._mapping), statements=statements, held=held)


async def list_statements(session: AsyncSession, *, organisation_id: int | None,
                          batch_id: int | None = None) -> list[StatementSummary]:
    """Statements visible to `organisation_id` (None: the operator, all), newest first."""
    rows = (await session.execute(text(f"""
        SELECT {_SUMMARY_COLUMNS} FROM statement s JOIN organisation o ON o.id = s.organisation_id
        WHERE (CAST(:org AS bigint) IS NULL OR s.organisation_id = :org)
          AND (CAST(:batch AS bigint) IS NULL OR s.batch_id = :batch)
        ORDER BY s.id DESC LIMIT 5000"""), {"org": organisation_id, "batch": batch_id})).all()
    return [_summary(r) for r in rows]


async def visible_statement(session: AsyncSession, statement_id: int, *,
                            organisation_id: int | None) -> StatementSummary:
    """The statement if `organisation_id` may see it (None: the operator), else StatementNotFound
    — the same answer whether it exists or not, so ids reveal nothing."""
    row = (await session.execute(text(f"""
        SELECT {_SUMMARY_COLUMNS} FROM statement s JOIN organisation o ON o.id = s.organisation_id
        WHERE s.id = :id AND (CAST(:org AS bigint) IS NULL OR s.organisation_id = :org)"""),
        {"id": statement_id, "org": organisation_id})).first()
    if row is None:
        raise StatementNotFound(statement_id=statement_id)
    return _summary(row)


async def get_statement(session: AsyncSession, statement_id: int, *,
                        organisation_id: int | None) -> StatementRead:
    """A statement with its lines, as `organisation_id` (None: the operator) may read it."""
    summary = await visible_statement(session, statement_id, organisation_id=organisation_id)
    org = (await session.execute(text(
        "SELECT id, name, siret, commune_insee, address, "
        "(SELECT c.name FROM commune c WHERE c.code = commune_insee) AS commune_name "
        "FROM organisation WHERE id = :id"),
        {"id": summary.organisation_id})).one()
    batch = None
    if summary.batch_id is not None:
        batch = (await session.execute(text(
            "SELECT cutoff, period_start FROM batch WHERE id = :id"),
            {"id": summary.batch_id})).one()
    lines: Sequence[SiteLine | FinancerLine]
    programmes: list[ProgrammeStanding] = []
    if summary.kind == "site":
        lines = await site_lines(session, batch_id=summary.batch_id or 0,
                                 site_id=summary.organisation_id)
    else:
        lines = await stored_lines(session, statement_id)
        if summary.kind == "financer":
            programmes = await standings(session, financer_id=summary.organisation_id,
                                         batch_id=summary.batch_id or 0)
    payment = (await session.execute(text(
        "SELECT payment_intent_id, status, amount_cents, failure_message FROM payment "
        "WHERE statement_id = :id"), {"id": statement_id})).first()
    return StatementRead(
        **summary.model_dump(),
        organisation=OrganisationRef.model_validate(dict(org._mapping)),
        batch_cutoff=batch.cutoff if batch else None,
        period_start=batch.period_start if batch else None,
        lines=list(lines),
        programmes=programmes,
        payment=PaymentRead.model_validate(dict(payment._mapping)) if payment else None,
    )


async def site_lines(session: AsyncSession, *, batch_id: int, site_id: int) -> list[SiteLine]:
    """One line per cheque the site redeemed in the batch, in clearing order."""
    rows = (await session.execute(text("""
        SELECT r.id, c.serial, r.redeemed_at, r.service, r.demarche_family, r.programme_id,
               p.name, r.value_cents
        FROM redemption r
        JOIN cheque c ON c.id = r.cheque_id
        JOIN programme p ON p.id = r.programme_id
        WHERE r.site_id = :site AND r.batch_id = :batch
        ORDER BY r.redeemed_at, r.id"""), {"site": site_id, "batch": batch_id})).all()
    return [SiteLine(redemption_id=r[0], cheque_serial=r[1], redeemed_at=r[2],
                     redeemed_on=paris_day(r[2]), service=r[3], demarche_family=r[4],
                     programme_id=r[5], programme_name=r[6], value_cents=r[7]) for r in rows]


async def stored_lines(session: AsyncSession, statement_id: int) -> list[FinancerLine]:
    rows = (await session.execute(text("""
        SELECT l.programme_id, p.name, l.demarche_family, l.commune_insee, l.cheque_count,
               l.amount_cents, c.name
        FROM statement_line l JOIN programme p ON p.id = l.programme_id
        LEFT JOIN commune c ON c.code = l.commune_insee
        WHERE l.statement_id = :id
        ORDER BY l.programme_id, l.demarche_family NULLS FIRST, l.commune_insee, l.id"""),
        {"id": statement_id})).all()
    return [FinancerLine(programme_id=r[0], programme_name=r[1], demarche_family=r[2],
                         commune_insee=r[3], cheque_count=r[4], amount_cents=r[5],
                         commune_name=r[6])
            for r in rows]


async def standings(session: AsyncSession, *, financer_id: int,
                    batch_id: int) -> list[ProgrammeStanding]:
    """Per programme of the financer's statement for `batch_id`: commitment, allocated before
    this batch, in it, cumulative, remaining, and any charge beyond the commitment."""
    rows = (await session.execute(text("""
        WITH mine AS (
            SELECT DISTINCT l.programme_id FROM statement_line l
            JOIN statement s ON s.id = l.statement_id
            WHERE s.kind = 'financer' AND s.organisation_id = :fid AND s.batch_id = :bid
        )
        SELECT m.programme_id, p.name, f.commitment_cents,
               coalesce(sum(l.amount_cents) FILTER (WHERE s.batch_id < :bid), 0),
               coalesce(sum(l.amount_cents) FILTER (WHERE s.batch_id = :bid), 0)
        FROM mine m
        JOIN programme p ON p.id = m.programme_id
        JOIN programme_financer f ON f.programme_id = m.programme_id
                                 AND f.organisation_id = :fid
        LEFT JOIN statement s ON s.kind = 'financer' AND s.organisation_id = :fid
                             AND s.batch_id <= :bid
        LEFT JOIN statement_line l ON l.statement_id = s.id AND l.programme_id = m.programme_id
        GROUP BY m.programme_id, p.name, f.commitment_cents
        ORDER BY m.programme_id"""), {"fid": financer_id, "bid": batch_id})).all()
    out = []
    for pid, name, commitment, before, now in rows:
        cumulative = before + now
        out.append(ProgrammeStanding(
            programme_id=pid, programme_name=name, commitment_cents=commitment,
            allocated_before_cents=before, allocated_cents=now, cumulative_cents=cumulative,
            remaining_cents=max(0, commitment - cumulative),
            beyond_commitment_cents=max(0, cumulative - commitment)))
    return out


async def operator_party(session: AsyncSession) -> OrganisationRef | None:
    """The operator's organisation (the first one), who issues the statements."""
    row = (await session.execute(text(
        "SELECT id, name, siret, commune_insee, address FROM organisation "
        "WHERE kind = 'operator' ORDER BY id LIMIT 1"))).first()
    return OrganisationRef.model_validate(dict(row._mapping)) if row else None
