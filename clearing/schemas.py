"""Request and response models of clearing: batches, statements and their lines, payments.

(The pain.001 XSD lives in the `clearing/schemas/` folder beside this module; a folder without
`__init__.py` never shadows a module, so `clearing.schemas` is this file.)
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from kit.clock import Day, Instant


class BatchCreate(BaseModel):
    """`cutoff`: an instant, or a day (00:00 in Paris; a naive instant is Paris time too);
    none means the first of this month. Bounded (2000-01-01 … twenty years ahead)."""

    model_config = ConfigDict(extra="forbid")

    cutoff: Instant | None = None


class BatchPreviewRead(BaseModel):
    """What closing at `cutoff` would clear; `existing_batch_id` when it is already closed."""

    cutoff: datetime
    last_cutoff: datetime | None
    redemption_count: int
    gross_cents: int
    existing_batch_id: int | None


class BatchTransfersRecord(BaseModel):
    """The batch's SEPA file was sent to the bank on `sent_on`: record all its transfers."""

    model_config = ConfigDict(extra="forbid")

    sent_on: Day


class RecordedTransferRead(BaseModel):
    statement_id: int
    organisation_id: int
    organisation_name: str
    reference: str
    amount_cents: int


class ExpireRequest(BaseModel):
    """`today`: the expiry day (default: today in Paris; never later, at most 7 days back).
    `confirm`: required when the run would expire more than the configured share of the live
    cheques (answer 409 `expiry_confirmation_required` with the figures otherwise)."""

    model_config = ConfigDict(extra="forbid")

    today: Day | None = None
    confirm: bool = False


class ExpiryPreviewRead(BaseModel):
    today: date
    cheques: int
    value_cents: int
    active_cheques: int
    share_percent: float
    threshold_percent: int
    needs_confirmation: bool


class TransferRecord(BaseModel):
    """A bank transfer the operator saw on its account (financer) or sent (site)."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=140)
    amount_cents: int = Field(gt=0)
    received_on: Day


class StatementSummary(BaseModel):
    id: int
    kind: str
    organisation_id: int
    organisation_name: str
    batch_id: int | None
    programme_id: int | None
    gross_cents: int
    fee_cents: int
    net_cents: int
    cheque_count: int
    status: str
    payment_method: str | None
    hold_code: str | None
    hold_reason: str | None
    payment_reference: str | None
    paid_cents: int | None
    paid_on: date | None
    paid_at: datetime | None
    failure_message: str | None
    content_hash: str


class HeldTransfer(BaseModel):
    statement_id: int
    organisation_id: int
    organisation_name: str
    net_cents: int
    code: str
    reason: str


class BatchSummary(BaseModel):
    id: int
    cutoff: datetime
    period_start: datetime | None
    closed_at: datetime | None
    redemption_count: int
    gross_cents: int


class BatchRead(BatchSummary):
    statements: list[StatementSummary]
    held: list[HeldTransfer]


class SiteLine(BaseModel):
    """One cheque redeemed at the site."""

    redemption_id: int
    cheque_serial: str
    redeemed_at: datetime
    redeemed_on: date
    service: str
    demarche_family: str | None
    programme_id: int
    programme_name: str
    value_cents: int


class FinancerLine(BaseModel):
    """What a financer is charged for a programme, démarche family and site commune (or, in a
    credit note, what it gets back for a programme)."""

    programme_id: int
    programme_name: str
    demarche_family: str | None
    commune_insee: str | None
    cheque_count: int
    amount_cents: int
    commune_name: str | None = None  # from the commune reference (pass_/communes.py)


class ProgrammeStanding(BaseModel):
    """A financer's commitment to a programme against what batches have allocated so far."""

    programme_id: int
    programme_name: str
    commitment_cents: int
    allocated_before_cents: int
    allocated_cents: int
    cumulative_cents: int
    remaining_cents: int
    beyond_commitment_cents: int


class PaymentRead(BaseModel):
    payment_intent_id: str | None
    status: str
    amount_cents: int
    failure_message: str | None


class OrganisationRef(BaseModel):
    """An organisation as a statement names it."""

    id: int
    name: str
    siret: str
    commune_insee: str
    address: str | None = None
    commune_name: str | None = None  # from the commune reference (pass_/communes.py)


class StatementRead(StatementSummary):
    organisation: OrganisationRef
    batch_cutoff: datetime | None
    period_start: datetime | None
    lines: list[SiteLine | FinancerLine]
    programmes: list[ProgrammeStanding]
    payment: PaymentRead | None
