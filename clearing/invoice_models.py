"""Tables of invoicing and bank reconciliation: the yearly invoice counter, invoices (type 380)
and credit notes (type 381), imported bank statements and their credit lines.

An invoice keeps a snapshot of its buyer, seller and lines (JSON): an issued invoice never
changes, whatever happens later to the organisation or the settings; its PDF is rebuilt from
this row, byte for byte the same content.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from clearing.models import _in, _ts
from kit.db import metadata  # noqa: F401  (naming convention set before tables are declared)

INVOICE_TYPES = ["380", "381"]
# issued: émise; deposited: déposée sur Chorus Pro; in_payment: mise en paiement (Chorus Pro);
# paid: payée (bank line matched, or the statement collected).
INVOICE_STATUSES = ["issued", "deposited", "in_payment", "paid"]
INVOICE_PAYMENT_METHODS = ["transfer", "stripe_sepa"]
# matched: the bank line paid its invoice exactly; partial / over: an amount that differs from
# the invoice's, shown and never applied; suggested: no reference, but the amount and the
# payer's IBAN point at one invoice, which the operator confirms; unmatched: nothing fits;
# duplicate: a reference whose invoice was already paid.
BANK_LINE_STATUSES = ["matched", "partial", "over", "suggested", "unmatched", "duplicate"]


class InvoiceCounter(SQLModel, table=True):
    """The last invoice number of a year. Locked by the UPDATE that takes the next number, in
    the transaction that writes the invoice: a rolled-back close leaves no gap."""

    __tablename__ = "invoice_counter"
    __table_args__ = (sa.CheckConstraint("last_number >= 0", name="positive"),)

    year: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    last_number: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class Invoice(SQLModel, table=True):
    """A facture (380) per financer × programme × batch, or an avoir (381) per financer ×
    programme at the programme's end, referring to the invoices it corrects."""

    __tablename__ = "invoice"
    __table_args__ = (
        sa.CheckConstraint(_in("type_code", INVOICE_TYPES), name="type_code"),
        sa.CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
        sa.CheckConstraint(_in("payment_method", INVOICE_PAYMENT_METHODS), name="payment_method"),
        sa.CheckConstraint("basis_cents >= 0 AND vat_cents >= 0 "
                           "AND total_cents = basis_cents + vat_cents", name="totals"),
        sa.CheckConstraint("(type_code = '380') = (batch_id IS NOT NULL)", name="scope"),
        sa.CheckConstraint("status <> 'paid' OR paid_on IS NOT NULL", name="paid_on"),
        sa.CheckConstraint("engagement_number IS NULL OR length(engagement_number) <= 50",
                           name="engagement_length"),
        sa.UniqueConstraint("year", "sequence", name="uq_invoice_year_sequence"),
        sa.Index("uq_invoice_batch_financer_programme", "batch_id", "financer_id",
                 "programme_id", unique=True, postgresql_where=sa.text("type_code = '380'")),
        sa.Index("uq_invoice_credit_note", "programme_id", "financer_id", unique=True,
                 postgresql_where=sa.text("type_code = '381'")),
        sa.Index("ix_invoice_due", "due_date", postgresql_where=sa.text("status <> 'paid'")),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    number: str = Field(sa_column=sa.Column(sa.String(20), nullable=False, unique=True))
    year: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    sequence: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    type_code: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    financer_id: int = Field(sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True))
    programme_id: int = Field(sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("programme.id"), nullable=False))
    batch_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("batch.id"), index=True))
    statement_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("statement.id"), index=True))
    corrects: list[str] = Field(default_factory=list, sa_column=sa.Column(
        ARRAY(sa.String(20)), nullable=False, server_default="{}"))
    issue_date: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    period_start: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    period_end: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    due_date: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    basis_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    vat_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    total_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    payment_reference: str = Field(sa_column=sa.Column(sa.String(35), nullable=False,
                                                       unique=True))
    payment_method: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    engagement_number: str | None = Field(default=None, sa_column=sa.Column(sa.String(50)))
    service_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    buyer: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    seller: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    lines: list[dict[str, Any]] = Field(sa_column=sa.Column(JSONB, nullable=False))
    chorus_flow_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    chorus_invoice_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    chorus_status: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    deposited_at: datetime | None = Field(default=None, sa_column=_ts(True))
    paid_cents: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    paid_on: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class BankStatement(SQLModel, table=True):
    """An imported camt.053 / camt.054 file, once by its content (sha256)."""

    __tablename__ = "bank_statement"
    __table_args__ = (sa.CheckConstraint(_in("kind", ["camt.053", "camt.054"]), name="kind"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    kind: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    message_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    filename: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    line_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    imported_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    imported_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class BankLine(SQLModel, table=True):
    """A credit on the operator's account, as the bank reported it, and what it paid."""

    __tablename__ = "bank_line"
    __table_args__ = (
        sa.CheckConstraint(_in("status", BANK_LINE_STATUSES), name="status"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.Index("uq_bank_line_paid_invoice", "invoice_id", unique=True,
                 postgresql_where=sa.text("status = 'matched'")),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    bank_statement_id: int = Field(sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("bank_statement.id"), nullable=False, index=True))
    # The bank's own reference of the entry (AcctSvcrRef), or one composed of the message,
    # entry and transaction: the same credit met again in another file is skipped.
    line_key: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    booked_on: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    payer_name: str | None = Field(default=None, sa_column=sa.Column(sa.String(140)))
    payer_iban: str | None = Field(default=None, sa_column=sa.Column(sa.String(34)))
    reference: str | None = Field(default=None, sa_column=sa.Column(sa.String(35)))
    remittance: str | None = Field(default=None, sa_column=sa.Column(sa.String(500)))
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    invoice_id: int | None = Field(default=None, sa_column=sa.Column(
        sa.BigInteger, sa.ForeignKey("invoice.id"), index=True))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
