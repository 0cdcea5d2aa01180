"""Tables of clearing: batches, per-redemption allocations, statements and their lines,
Stripe payments and the webhook events received.

Vocabularies are text with CHECK constraints, as in pass_/models.py. `allocation` is the one
large table (a row per cleared redemption): it has no foreign keys, so a batch of a million
redemptions is written with COPY without a trigger per row; the audit checks it instead.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.db import metadata  # noqa: F401  (naming convention set before tables are declared)


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(nullable: bool = False, default_now: bool = False) -> Any:
    return sa.Column(
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


STATEMENT_KINDS = ["site", "financer", "credit_note"]
# open: to pay (site) or to collect (financer); held: site transfer suspended (bank details);
# processing: a PaymentIntent is in flight; paid; failed: the debit failed; issued: credit note.
STATEMENT_STATUSES = ["open", "held", "processing", "paid", "failed", "issued"]
PAYMENT_METHODS = ["sepa_transfer", "stripe", "transfer"]
PAYMENT_STATUSES = ["pending", "processing", "succeeded", "failed"]


class Batch(SQLModel, table=True):
    """All redemptions before `cutoff` not yet cleared, at the time it was closed."""

    __tablename__ = "batch"
    __table_args__ = (
        sa.CheckConstraint("redemption_count >= 0 AND gross_cents >= 0", name="totals"),
        sa.CheckConstraint("period_start IS NULL OR period_start < cutoff", name="period"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    cutoff: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, unique=True)
    )
    # The previous batch's cutoff: the period the statements cover (for the reader).
    period_start: datetime | None = Field(default=None, sa_column=_ts(True))
    closed_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    closed_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    redemption_count: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    gross_cents: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )


class AllocationPattern(SQLModel, table=True):
    """One way a batch charged a redemption: the financers' parts of a given value, family and
    programme under given remaining commitments (DESIGN.md §6). A batch has a few hundred."""

    __tablename__ = "allocation_pattern"
    __table_args__ = (sa.CheckConstraint("amount_cents > 0", name="amount_positive"),)

    batch_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    pattern: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    financer_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    programme_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class Allocation(SQLModel, table=True):
    """How one redemption of a batch was charged: its pattern's parts, which sum to its value.

    One narrow row per redemption (a pattern number, not the parts), written by COPY when the
    batch closes: a million redemptions cost a million small rows, not three million."""

    __tablename__ = "allocation"

    redemption_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    batch_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    pattern: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


class Statement(SQLModel, table=True):
    """A relevé: what a site is paid or a financer owes for a batch, or a credit note (avoir)
    returning a financer's unused commitment when a programme ends.

    Sites: net = gross − commission (`fee_cents`). Financers: net = gross + fee (amount due).
    Credit notes: net = gross, no fee. `content_hash` fingerprints totals and lines."""

    __tablename__ = "statement"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", STATEMENT_KINDS), name="kind"),
        sa.CheckConstraint(_in("status", STATEMENT_STATUSES), name="status"),
        sa.CheckConstraint(
            f"payment_method IS NULL OR {_in('payment_method', PAYMENT_METHODS)}",
            name="payment_method",
        ),
        sa.CheckConstraint(
            "(kind = 'credit_note') = (batch_id IS NULL) "
            "AND (kind = 'credit_note') = (programme_id IS NOT NULL)",
            name="kind_scope",
        ),
        sa.CheckConstraint("gross_cents >= 0 AND fee_cents >= 0 AND net_cents >= 0",
                           name="amounts"),
        sa.CheckConstraint(
            "(kind = 'site' AND net_cents = gross_cents - fee_cents) OR "
            "(kind = 'financer' AND net_cents = gross_cents + fee_cents) OR "
            "(kind = 'credit_note' AND fee_cents = 0 AND net_cents = gross_cents)",
            name="net",
        ),
        sa.CheckConstraint("status <> 'paid' OR paid_cents IS NOT NULL", name="paid_amount"),
        sa.Index(
            "uq_statement_batch_organisation",
            "batch_id",
            "organisation_id",
            unique=True,
            postgresql_where=sa.text("batch_id IS NOT NULL"),
        ),
        sa.Index(
            "uq_statement_credit_note",
            "programme_id",
            "organisation_id",
            unique=True,
            postgresql_where=sa.text("kind = 'credit_note'"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    organisation_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True
        )
    )
    batch_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("batch.id"))
    )
    programme_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("programme.id"))
    )
    gross_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    fee_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    net_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    cheque_count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    payment_method: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    hold_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    hold_reason: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    payment_reference: str | None = Field(default=None, sa_column=sa.Column(sa.String(140)))
    paid_cents: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    paid_on: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    paid_at: datetime | None = Field(default=None, sa_column=_ts(True))
    failure_message: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    content_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class StatementLine(SQLModel, table=True):
    """A line of a financer statement (allocated by programme, démarche family and site
    commune) or of a credit note (one per programme). Site statements need no stored lines:
    their lines are the batch's redemptions of the site."""

    __tablename__ = "statement_line"
    __table_args__ = (
        sa.CheckConstraint("cheque_count >= 0 AND amount_cents >= 0", name="amounts"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    statement_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("statement.id"), nullable=False, index=True
        )
    )
    programme_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    demarche_family: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    commune_insee: str | None = Field(default=None, sa_column=sa.Column(sa.String(5)))
    cheque_count: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class Payment(SQLModel, table=True):
    """The one Stripe PaymentIntent collecting a financer statement.

    The row is committed before Stripe is called (unique `statement_id`), so a retry or a
    concurrent collect finds it and never creates a second intent."""

    __tablename__ = "payment"
    __table_args__ = (
        sa.CheckConstraint(_in("status", PAYMENT_STATUSES), name="status"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    statement_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("statement.id"), nullable=False, unique=True
        )
    )
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    idempotency_key: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    payment_intent_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(64), unique=True)
    )
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    failure_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    failure_message: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class StripeEvent(SQLModel, table=True):
    """A verified webhook event, stored once by its id (a replay finds it and does nothing)."""

    __tablename__ = "stripe_event"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    event_id: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, unique=True))
    type: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    payment_intent_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    received_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    outcome: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))


class AuditCheckpoint(SQLModel, table=True):
    """What a conforming full audit verified, so the next audit may check only what came after
    (clearing/audit.py, `run_incremental_audit`)."""

    __tablename__ = "audit_checkpoint"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False,
                            server_default=sa.func.now()),
    )
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))  # full | incremental
    sealed_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    chain_hash: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    entry_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))  # largest then
    last_batch_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # {account code: balance} over the sealed prefix; {batch id: digest of its replay}.
    balances: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    batch_digests: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    # The replay's allocations per programme and financer after last_batch_id.
    allocated: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
