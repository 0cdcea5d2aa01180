"""Payments of statements: financers collected by Stripe PaymentIntents (one per statement),
webhooks recording the outcome, bank transfers recorded by the operator, SEPA files for sites.

One PaymentIntent per statement, whatever happens: `reserve_collections` commits a `payment`
row (unique `statement_id`) *before* Stripe is called; the call carries the idempotency key
`statement:<id>`; `record_intent` stores the intent's id. A crash between the call and the
record leaves a row without an intent id: the next collect calls again with the same key —
Stripe answers with the intent it created (localstripe, which ignores keys, would create a
second one; a webhook about an intent we never recorded is matched by the statement id in its
metadata, so the outcome is still recorded once).

Webhooks are stored by event id (unique) and processed once, in any order: a success wins over
a failure that came before it; a failure after a success changes nothing. The outcome goes to
the statement (status, paid amount and date, reference) and the ledger (`paid:<statement>`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing import invoices, journal
from clearing.errors import (
    NothingToTransfer,
    PaymentAlreadyRecorded,
    PaymentInProgress,
    StatementNotFound,
    StatementNotPayable,
    TransferAmountMismatch,
)
from clearing.sepa import Party, SepaFile, Transfer, build_credit_transfer, remittance_text
from clearing.statements import batch_detail
from clearing.stripe_gateway import PaymentIntent, WebhookEvent
from kit.clock import paris_day
from kit.db import transaction
from kit.errors import NotFound
from ledger import service as ledger

log = structlog.get_logger()

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"


class CollectingGateway(Protocol):
    """What collecting needs of `clearing.stripe_gateway.StripeGateway`."""

    async def collect(self, *, statement_id: str | int, customer_id: str,
                      payment_method_id: str, amount_cents: int, description: str,
                      idempotency_key: str) -> PaymentIntent: ...

    async def find_intent(self, *, statement_id: str | int,
                          customer_id: str) -> PaymentIntent | None: ...


@dataclass(frozen=True, slots=True)
class Collection:
    """A statement to collect, and its payment row."""

    payment_id: int
    statement_id: int
    batch_id: int
    amount_cents: int
    customer_id: str
    payment_method_id: str
    idempotency_key: str
    payment_intent_id: str | None
    # Reserved by an earlier run: that run may have died after Stripe created the intent and
    # before its id was recorded, so Stripe is asked first (by the intent's metadata).
    earlier: bool = False


def idempotency_key(statement_id: int) -> str:
    return f"statement:{statement_id}"


# Financer statements to collect: open, collected by Stripe, the financer has a mandate.
_RESERVE = text("""
WITH due AS (
    SELECT s.id, s.net_cents FROM statement s JOIN organisation o ON o.id = s.organisation_id
    WHERE s.kind = 'financer' AND s.status = 'open' AND s.net_cents > 0
      AND o.stripe_customer_id IS NOT NULL AND o.stripe_payment_method_id IS NOT NULL
      -- a public body pays its invoices by transfer unless its participation asks for the
      -- debit (issue 14: clearing.invoices.payment_method)
      AND (coalesce(o.financer_category, '') NOT IN ('state', 'region', 'departement', 'epci',
                                                     'commune')
           OR EXISTS (SELECT 1 FROM invoice i WHERE i.statement_id = s.id
                      AND i.payment_method = 'stripe_sepa'))
      AND (CAST(:batch AS bigint) IS NULL OR s.batch_id = :batch)
      AND (CAST(:ids AS bigint[]) IS NULL OR s.id = ANY(CAST(:ids AS bigint[])))
    ORDER BY s.id
)
INSERT INTO payment (statement_id, amount_cents, idempotency_key, status)
SELECT id, net_cents, 'statement:' || id, 'pending' FROM due
ON CONFLICT (statement_id) DO NOTHING
""")

# Every payment still waiting for its intent id (new ones and those a crash left behind).
_PENDING = text("""
SELECT p.id, s.id, s.batch_id, p.amount_cents, o.stripe_customer_id,
       o.stripe_payment_method_id, p.idempotency_key, p.payment_intent_id,
       p.created_at < now()
FROM payment p JOIN statement s ON s.id = p.statement_id
JOIN organisation o ON o.id = s.organisation_id
WHERE p.payment_intent_id IS NULL AND p.status = 'pending'
  AND s.status IN ('open', 'processing')
  AND o.stripe_customer_id IS NOT NULL AND o.stripe_payment_method_id IS NOT NULL
  AND (CAST(:batch AS bigint) IS NULL OR s.batch_id = :batch)
  AND (CAST(:ids AS bigint[]) IS NULL OR s.id = ANY(CAST(:ids AS bigint[])))
ORDER BY s.id
""")


async def reserve_collections(session: AsyncSession, *, batch_id: int | None = None,
                              statement_ids: Sequence[int] | None = None) -> list[Collection]:
    """Insert the payment row of every financer statement to collect (once: unique per
    statement) and return the rows still waiting for a PaymentIntent. Commit before calling
    Stripe."""
    params = {"batch": batch_id, "ids": list(statement_ids) if statement_ids else None}
    await session.execute(_RESERVE, params)
    rows = (await session.execute(_PENDING, params)).all()
    return [Collection(*row) for row in rows]


async def record_intent(session: AsyncSession, collection: Collection,
                        intent: PaymentIntent) -> None:
    """Keep the intent's id and mark the statement as being collected; the outcome comes by
    webhook (a webhook already processed is not undone)."""
    await session.execute(text("""
        UPDATE payment SET payment_intent_id = :pi, updated_at = now(),
               status = CASE WHEN status = 'pending' THEN 'processing' ELSE status END
        WHERE id = :id AND payment_intent_id IS NULL"""),
        {"pi": intent.id, "id": collection.payment_id})
    await session.execute(text("""
        UPDATE statement SET payment_method = 'stripe',
               status = CASE WHEN status = 'open' THEN 'processing' ELSE status END
        WHERE id = :id"""), {"id": collection.statement_id})


async def collect(sessionmaker: async_sessionmaker[AsyncSession], gateway: CollectingGateway,
                  *, batch_id: int | None = None,
                  statement_ids: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """Create the PaymentIntents of the unpaid financer statements (of `batch_id`, or these
    `statement_ids`, or all). Returns (statement id, intent id) of the intents created or
    found. Owns its transactions: the payment row must be committed before Stripe is
    called, and the intent id committed after; calling it twice creates nothing new."""
    async with transaction(sessionmaker) as session:
        collections = await reserve_collections(session, batch_id=batch_id,
                                                statement_ids=statement_ids)
    done = []
    for collection in collections:
        if collection.earlier:
            # The crash window: Stripe may hold an intent for this statement that we never
            # recorded. Its idempotency key would replay it for 24 hours only; its metadata
            # names the statement for good.
            found = await gateway.find_intent(statement_id=collection.statement_id,
                                              customer_id=collection.customer_id)
            if found is not None:
                log.warning("payment_intent_recovered", statement_id=collection.statement_id,
                            payment_intent_id=found.id)
                async with transaction(sessionmaker) as session:
                    await record_intent(session, collection, found)
                done.append((collection.statement_id, found.id))
                continue
        intent = await gateway.collect(
            statement_id=collection.statement_id, customer_id=collection.customer_id,
            payment_method_id=collection.payment_method_id,
            amount_cents=collection.amount_cents,
            description=remittance_text(collection.batch_id, collection.statement_id),
            idempotency_key=collection.idempotency_key)
        async with transaction(sessionmaker) as session:
            await record_intent(session, collection, intent)
        done.append((collection.statement_id, intent.id))
    return done


# ------------------------------------------------------------------------------ webhooks


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    outcome: str  # duplicate | ignored | unknown_intent | paid | already_paid | failed | …
    statement_id: int | None = None


_STORE_EVENT = text("""
INSERT INTO stripe_event (event_id, type, payment_intent_id, created_at, outcome, payload)
VALUES (:event_id, :type, :pi, :created_at, 'received', CAST(:payload AS jsonb))
ON CONFLICT (event_id) DO NOTHING
RETURNING id
""")

_PAYMENT_BY_INTENT = text("""
SELECT p.id, p.statement_id, p.status, p.payment_intent_id FROM payment p
WHERE p.payment_intent_id = :pi FOR UPDATE
""")

# An intent we never recorded (a crash after Stripe's answer): its metadata names the statement.
_PAYMENT_BY_STATEMENT = text("""
SELECT p.id, p.statement_id, p.status, p.payment_intent_id FROM payment p
WHERE p.statement_id = :sid AND p.payment_intent_id IS NULL FOR UPDATE
""")


async def handle_webhook(session: AsyncSession, event: WebhookEvent, *,
                         now: datetime) -> WebhookOutcome:
    """Store a verified event once and apply it to its payment, statement and the ledger."""
    intent = event.payment_intent
    stored = (await session.execute(_STORE_EVENT, {
        "event_id": event.id, "type": event.type, "pi": intent.id if intent else None,
        "created_at": event.created_at, "payload": json.dumps(dict(event.data), default=str),
    })).first()
    if stored is None:
        return WebhookOutcome(event.id, "duplicate")
    outcome = await _apply(session, event, now)
    await session.execute(text("UPDATE stripe_event SET outcome = :o WHERE id = :id"),
                          {"o": outcome.outcome, "id": stored[0]})
    return outcome


async def _apply(session: AsyncSession, event: WebhookEvent, now: datetime) -> WebhookOutcome:
    intent = event.payment_intent
    if event.type not in (SUCCEEDED, FAILED) or intent is None:
        return WebhookOutcome(event.id, "ignored")
    row = (await session.execute(_PAYMENT_BY_INTENT, {"pi": intent.id})).first()
    if row is None and intent.statement_id and intent.statement_id.isdigit():
        row = (await session.execute(_PAYMENT_BY_STATEMENT,
                                     {"sid": int(intent.statement_id)})).first()
        if row is not None:
            await session.execute(text(
                "UPDATE payment SET payment_intent_id = :pi WHERE id = :id"),
                {"pi": intent.id, "id": row[0]})
    if row is None:
        return WebhookOutcome(event.id, "unknown_intent")
    payment_id, statement_id, status, _pi = row
    if status == "succeeded":
        # A success is final: a replay or a late failure changes nothing.
        return WebhookOutcome(event.id, "already_paid", statement_id)
    if event.type == FAILED:
        message = (intent.failure_message or intent.failure_code or "prélèvement refusé")[:300]
        await session.execute(text("""
            UPDATE payment SET status = 'failed', failure_code = :code, failure_message = :msg,
                   updated_at = :now WHERE id = :id"""),
            {"code": intent.failure_code, "msg": message, "now": now, "id": payment_id})
        await session.execute(text("""
            UPDATE statement SET status = 'failed', failure_message = :msg
            WHERE id = :id AND status IN ('open', 'processing')"""),
            {"msg": message, "id": statement_id})
        return WebhookOutcome(event.id, "failed", statement_id)
    await session.execute(text("""
        UPDATE payment SET status = 'succeeded', failure_code = NULL, failure_message = NULL,
               updated_at = :now WHERE id = :id"""), {"now": now, "id": payment_id})
    if not await _mark_paid(session, statement_id, amount_cents=intent.amount_cents,
                            reference=intent.id, paid_on=None, paid_at=event.created_at):
        # Already paid another way (a transfer recorded after a failed debit), and now the
        # debit went through too: the financer paid twice and must be refunded.
        log.warning("statement_paid_twice", statement_id=statement_id,
                    payment_intent_id=intent.id)
        return WebhookOutcome(event.id, "paid_twice", statement_id)
    return WebhookOutcome(event.id, "paid", statement_id)


async def _mark_paid(session: AsyncSession, statement_id: int, *, amount_cents: int,
                     reference: str, paid_on: date | None, paid_at: datetime) -> bool:
    """Mark the statement paid and post `paid:<statement>`; False if it was already paid."""
    row = (await session.execute(text("""
        UPDATE statement SET status = 'paid', paid_cents = :amount, payment_reference = :ref,
               paid_on = :paid_on, paid_at = :paid_at, failure_message = NULL
        WHERE id = :id AND status <> 'paid'
        RETURNING kind, organisation_id"""),
        {"amount": amount_cents, "ref": reference, "paid_on": paid_on or paris_day(paid_at),
         "paid_at": paid_at,
         "id": statement_id})).first()
    if row is None:
        return False
    kind, organisation_id = row
    postings = (journal.financer_paid(organisation_id, amount_cents) if kind == "financer"
                else journal.site_paid(organisation_id, amount_cents))
    await ledger.post(session, key=journal.paid_key(statement_id), kind=journal.PAID_KIND,
                      postings=postings,
                      memo={"statement_id": statement_id, "reference": reference},
                      at=paid_at)
    if kind == "financer":  # its invoices are paid with it (issue 14)
        await invoices.mark_paid_with_statement(session, statement_id=statement_id,
                                                paid_on=paid_on or paris_day(paid_at))
    return True


# ------------------------------------------------------------------------------ transfers


async def record_transfer(session: AsyncSession, *, statement_id: int, reference: str,
                          amount_cents: int, received_on: date, now: datetime) -> None:
    """The operator records a bank transfer: received from a financer (paid by transfer, or
    after a failed debit) or sent to a site. The amount must be the statement's net amount.
    Recording the same reference again is a no-op; another payment is refused."""
    row = (await session.execute(text("""
        SELECT s.kind, s.status, s.net_cents, s.payment_reference, p.status
        FROM statement s LEFT JOIN payment p ON p.statement_id = s.id
        WHERE s.id = :id FOR UPDATE OF s"""), {"id": statement_id})).first()
    if row is None:
        raise StatementNotFound(statement_id=statement_id)
    kind, status, net, existing_reference, payment_status = row
    if kind == "credit_note":
        raise StatementNotPayable(statement_id=statement_id)
    if status == "paid":
        if existing_reference == reference:
            return
        raise PaymentAlreadyRecorded(statement_id=statement_id, reference=existing_reference)
    if status == "processing" or payment_status in ("pending", "processing"):
        raise PaymentInProgress(statement_id=statement_id)
    if amount_cents != net:
        raise TransferAmountMismatch(statement_id=statement_id, net_cents=net,
                                     amount_cents=amount_cents)
    await _mark_paid(session, statement_id, amount_cents=amount_cents, reference=reference,
                     paid_on=received_on, paid_at=now)


def batch_transfer_reference(batch_id: int, statement_id: int) -> str:
    """The reference of a site's transfer in the batch's SEPA file: the file's message id and
    the transfer's end-to-end id (the statement number)."""
    return f"PN-LOT-{batch_id}/{statement_id}"


@dataclass(frozen=True, slots=True)
class RecordedTransfer:
    statement_id: int
    organisation_id: int
    organisation_name: str
    reference: str
    amount_cents: int


async def record_batch_transfers(session: AsyncSession, *, batch_id: int, sent_on: date,
                                 now: datetime) -> list[RecordedTransfer]:
    """Record at once every transfer of the batch's SEPA file as sent: each site statement
    still open (neither held for its bank details nor already paid) is paid by its net
    amount, through `record_transfer` (one rule), with the file's reference. Running it
    again records nothing new: NothingToTransfer."""
    detail = await batch_detail(session, batch_id)
    due = [s for s in detail.statements if s.kind == "site" and s.status == "open"]
    if not due:
        raise NothingToTransfer(batch_id=batch_id)
    done = []
    for statement in due:
        reference = batch_transfer_reference(batch_id, statement.id)
        await record_transfer(session, statement_id=statement.id, reference=reference,
                              amount_cents=statement.net_cents, received_on=sent_on, now=now)
        done.append(RecordedTransfer(statement.id, statement.organisation_id,
                                     statement.organisation_name, reference,
                                     statement.net_cents))
    log.info("batch_transfers_recorded", batch_id=batch_id, transfers=len(done),
             total_cents=sum(d.amount_cents for d in done))
    return done


# ------------------------------------------------------------------------------ SEPA


def sepa_execution_date(today: date) -> date:
    """The execution date a SEPA file made on `today` (Paris) asks for: the next day, as banks
    take a file for the same day only before their morning cut-off."""
    return today + timedelta(days=1)


async def batch_sepa_file(session: AsyncSession, *, batch_id: int, debtor: Party, today: date,
                          now: datetime) -> SepaFile:
    """The batch's SEPA file made now (`sepa_file` with the execution date of the rule)."""
    return await sepa_file(session, batch_id, debtor=debtor, created_at=now,
                           execution_date=sepa_execution_date(today))


async def sepa_file(session: AsyncSession, batch_id: int, *, debtor: Party,
                    created_at: datetime, execution_date: date) -> SepaFile:
    """The pain.001 file paying the batch's site statements not yet paid. A site whose bank
    details are missing or invalid is held: its statement says why (and is released when the
    details are fixed and the file is made again)."""
    detail = await batch_detail(session, batch_id)
    sites = [s for s in detail.statements
             if s.kind == "site" and s.status in ("open", "held")]
    accounts: dict[int, Any] = {
        r[0]: r for r in (await session.execute(text(
            "SELECT id, name, iban, bic FROM organisation WHERE id = ANY(:ids)"),
            {"ids": [s.organisation_id for s in sites]})).all()}
    transfers = [Transfer(statement_id=s.id,
                          creditor=Party(accounts[s.organisation_id][1],
                                         accounts[s.organisation_id][2],
                                         accounts[s.organisation_id][3]),
                          amount_cents=s.net_cents,
                          remittance_info=remittance_text(batch_id, s.id))
                 for s in sites]
    built = build_credit_transfer(message_id=f"PN-LOT-{batch_id}", debtor=debtor,
                                  transfers=transfers, execution_date=execution_date,
                                  created_at=created_at)
    held = {int(h.transfer.statement_id): h for h in built.held}
    for s in sites:
        hold = held.get(s.id)
        await session.execute(text("""
            UPDATE statement SET status = :status, hold_code = :code, hold_reason = :reason
            WHERE id = :id AND status IN ('open', 'held')"""),
            {"status": "held" if hold else "open", "code": hold.code if hold else None,
             "reason": hold.reason if hold else None, "id": s.id})
    return built


# ------------------------------------------------------------------------------ mandates


async def attach_mandate(session: AsyncSession, *, financer_id: int, customer_id: str,
                         payment_method_id: str) -> None:
    """Keep a financer's Stripe customer and SEPA payment method: its next statements are
    collected by PaymentIntent; without them a financer pays by transfer."""
    updated = (await session.execute(text("""
        UPDATE organisation SET stripe_customer_id = :customer,
               stripe_payment_method_id = :method
        WHERE id = :id AND kind = 'financer' RETURNING id"""),
        {"customer": customer_id, "method": payment_method_id, "id": financer_id})).first()
    if updated is None:
        raise NotFound("Financeur introuvable.", financer_id=financer_id)
