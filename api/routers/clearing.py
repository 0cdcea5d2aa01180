"""Clearing for the operator (DESIGN.md §5, §7): batches, SEPA files, collection of financer
statements, expiry and programme closing. Every route here is the operator's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.deps import OperatorAdmin, SessionDep, SettingsDep
from api.invoicing import invoice_terms
from api.sepa_download import batch_sepa_download
from clearing import batches, payments, statements
from clearing.errors import PaymentsNotConfigured
from clearing.expiry import close_programme, operator_expiry, preview_expiry
from clearing.schemas import (
    BatchCreate,
    BatchPreviewRead,
    BatchRead,
    BatchSummary,
    BatchTransfersRecord,
    ExpireRequest,
    ExpiryPreviewRead,
    RecordedTransferRead,
)
from clearing.stripe_gateway import StripeGateway
from kit.clock import Day, Instant, first_of_month_cutoff, paris_today, utcnow
from kit.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["compensation"])


def stripe_gateway(settings: Settings) -> StripeGateway:
    """The gateway of the configured Stripe account; a custom API base means localstripe (the
    only other server that speaks Stripe's API here), which wants its own dialect."""
    if not settings.stripe_api_key:
        raise PaymentsNotConfigured()
    return StripeGateway(settings.stripe_api_key, settings.stripe_api_base,
                         localstripe=bool(settings.stripe_api_base))


@router.post("/clearing/batches", response_model=BatchRead)
async def create_batch(data: BatchCreate, principal: OperatorAdmin, session: SessionDep,
                       response: Response, settings: SettingsDep) -> BatchRead:
    """Close the batch at `cutoff` (default: the first of this month, 00:00 Paris): 201 when
    created, 200 with the same batch when that cutoff was already closed."""
    now = utcnow()
    batch, created = await batches.close_batch(
        session, cutoff=data.cutoff or first_of_month_cutoff(now), now=now,
        closed_by=principal.user_id, invoice_terms=invoice_terms(settings))
    response.status_code = 201 if created else 200
    return await statements.batch_detail(session, batch.id)  # type: ignore[arg-type]


@router.get("/clearing/batches/preview", response_model=BatchPreviewRead)
async def preview_batch(
    _: OperatorAdmin, session: SessionDep,
    cutoff: Annotated[Instant | None, Query()] = None,
) -> BatchPreviewRead:
    """What closing at `cutoff` (default: the first of this month, 00:00 Paris) would clear:
    redemptions and value, refused as the close itself would be (future, before the last
    batch's cutoff). Changes nothing."""
    now = utcnow()
    preview = await batches.preview_batch(session, cutoff=cutoff or first_of_month_cutoff(now),
                                          now=now)
    return BatchPreviewRead(cutoff=preview.cutoff, last_cutoff=preview.last_cutoff,
                            redemption_count=preview.redemption_count,
                            gross_cents=preview.gross_cents,
                            existing_batch_id=preview.existing_batch_id)


@router.get("/clearing/batches", response_model=list[BatchSummary])
async def list_batches(_: OperatorAdmin, session: SessionDep) -> list[BatchSummary]:
    return await statements.list_batches(session)


@router.get("/clearing/batches/{batch_id}", response_model=BatchRead)
async def get_batch(batch_id: int, _: OperatorAdmin, session: SessionDep) -> BatchRead:
    return await statements.batch_detail(session, batch_id)


@router.get("/clearing/batches/{batch_id}/sepa.xml")
async def batch_sepa(batch_id: int, _: OperatorAdmin, session: SessionDep,
                     settings: SettingsDep) -> Response:
    """The pain.001.001.03 file paying the batch's unpaid site statements; sites with missing
    or invalid bank details are held (see the batch detail)."""
    return await batch_sepa_download(session, settings, batch_id=batch_id)


@router.post("/clearing/batches/{batch_id}/collect")
async def collect_batch(batch_id: int, _: OperatorAdmin, request: Request,
                        settings: SettingsDep) -> dict[str, Any]:
    """Create the PaymentIntents of the batch's unpaid financer statements (one per statement,
    however often this is called). Runs its own transactions: Stripe is called between two."""
    gateway = stripe_gateway(settings)
    try:
        done = await payments.collect(request.app.state.sessionmaker, gateway,
                                      batch_id=batch_id)
    finally:
        await gateway.aclose()
    return {"payment_intents": [{"statement_id": s, "payment_intent_id": pi} for s, pi in done]}


@router.post("/clearing/batches/{batch_id}/transfers",
             response_model=list[RecordedTransferRead])
async def record_batch_transfers(batch_id: int, data: BatchTransfersRecord, _: OperatorAdmin,
                                 session: SessionDep) -> list[RecordedTransferRead]:
    """The batch's SEPA file went to the bank on `sent_on`: every site statement still open
    is recorded paid by its transfer (reference `PN-LOT-<batch>/<statement>`). Held and paid
    statements are left alone; nothing left to record: 409 `nothing_to_transfer`."""
    done = await payments.record_batch_transfers(session, batch_id=batch_id,
                                                 sent_on=data.sent_on, now=utcnow())
    return [RecordedTransferRead(statement_id=d.statement_id, organisation_id=d.organisation_id,
                                 organisation_name=d.organisation_name, reference=d.reference,
                                 amount_cents=d.amount_cents) for d in done]


@router.get("/clearing/expire/preview", response_model=ExpiryPreviewRead)
async def expire_preview(_: OperatorAdmin, session: SessionDep, settings: SettingsDep,
                         today: Annotated[Day | None, Query()] = None) -> ExpiryPreviewRead:
    """What the expiry on `today` would expire, and whether it needs `confirm`."""
    preview = await preview_expiry(
        session, today=today or paris_today(), now=utcnow(),
        confirm_share_percent=settings.expiry_confirm_share_percent)
    return ExpiryPreviewRead(
        today=preview.today, cheques=preview.cheques, value_cents=preview.value_cents,
        active_cheques=preview.active, share_percent=round(preview.share_percent, 2),
        threshold_percent=preview.confirm_share_percent,
        needs_confirmation=preview.needs_confirmation)


@router.post("/clearing/expire")
async def expire(data: ExpireRequest, _: OperatorAdmin, session: SessionDep,
                 settings: SettingsDep) -> dict[str, Any]:
    """The daily expiry (also run by `passnum expire`): cheques past their last day expire,
    ended programmes whose redemptions are cleared get their credit notes. `today` may not be
    after the real Paris day nor more than 7 days back; a run touching more than the
    configured share of live cheques needs `confirm: true` (409 with the figures otherwise)."""
    run = await operator_expiry(session, today=data.today, now=utcnow(), confirm=data.confirm,
                                confirm_share_percent=settings.expiry_confirm_share_percent)
    return {
        "today": run.today.isoformat(),
        "expired_cheques": run.cheques,
        "expired_value_cents": run.value_cents,
        "programmes": [{"programme_id": e.programme_id, "cheques": e.cheques,
                        "value_cents": e.value_cents} for e in run.expired],
        "closed_programmes": [{"programme_id": c.programme_id,
                               "credit_note_ids": c.credit_note_ids,
                               "unused_cents": c.unused_cents} for c in run.closed],
        "waiting_programmes": run.waiting,
    }


@router.post("/programmes/{programme_id}/close")
async def close(programme_id: int, _: OperatorAdmin, session: SessionDep) -> dict[str, Any]:
    """End a programme whose last redemption day has passed: credit notes of the unused
    commitments (the same ones if called again)."""
    closed = await close_programme(session, programme_id=programme_id, today=paris_today(),
                                   now=utcnow())
    return {"programme_id": closed.programme_id, "credit_note_ids": closed.credit_note_ids,
            "unused_cents": closed.unused_cents}
