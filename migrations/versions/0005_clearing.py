"""clearing batches, statements, payments

Revision ID: 0005_clearing
Revises: 0004_redemption
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0005_clearing"
down_revision: str | None = "0004_redemption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batch",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("closed_by", sa.BigInteger(), nullable=True),
        sa.Column("redemption_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("gross_cents", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "period_start IS NULL OR period_start < cutoff", name=op.f("ck_batch_period")
        ),
        sa.CheckConstraint(
            "redemption_count >= 0 AND gross_cents >= 0", name=op.f("ck_batch_totals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch")),
        sa.UniqueConstraint("cutoff", name=op.f("uq_batch_cutoff")),
    )
    op.create_table(
        "allocation_pattern",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("pattern", sa.Integer(), nullable=False),
        sa.Column("financer_id", sa.BigInteger(), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_allocation_pattern_amount_positive")),
        sa.PrimaryKeyConstraint(
            "batch_id", "pattern", "financer_id", name=op.f("pk_allocation_pattern")
        ),
    )
    op.create_table(
        "allocation",
        sa.Column("redemption_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("pattern", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("redemption_id", name=op.f("pk_allocation")),
    )
    op.create_table(
        "statement",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("programme_id", sa.BigInteger(), nullable=True),
        sa.Column("gross_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("net_cents", sa.BigInteger(), nullable=False),
        sa.Column("cheque_count", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_method", sa.String(length=16), nullable=True),
        sa.Column("hold_code", sa.String(length=32), nullable=True),
        sa.Column("hold_reason", sa.String(length=300), nullable=True),
        sa.Column("payment_reference", sa.String(length=140), nullable=True),
        sa.Column("paid_cents", sa.BigInteger(), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_message", sa.String(length=300), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "(kind = 'credit_note') = (batch_id IS NULL) AND (kind = 'credit_note') = (programme_id IS NOT NULL)",
            name=op.f("ck_statement_kind_scope"),
        ),
        sa.CheckConstraint(
            "(kind = 'site' AND net_cents = gross_cents - fee_cents) OR (kind = 'financer' AND net_cents = gross_cents + fee_cents) OR (kind = 'credit_note' AND fee_cents = 0 AND net_cents = gross_cents)",
            name=op.f("ck_statement_net"),
        ),
        sa.CheckConstraint(
            "kind IN ('site', 'financer', 'credit_note')", name=op.f("ck_statement_kind")
        ),
        sa.CheckConstraint(
            "payment_method IS NULL OR payment_method IN ('sepa_transfer', 'stripe', 'transfer')",
            name=op.f("ck_statement_payment_method"),
        ),
        sa.CheckConstraint(
            "status <> 'paid' OR paid_cents IS NOT NULL", name=op.f("ck_statement_paid_amount")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'held', 'processing', 'paid', 'failed', 'issued')",
            name=op.f("ck_statement_status"),
        ),
        sa.CheckConstraint(
            "gross_cents >= 0 AND fee_cents >= 0 AND net_cents >= 0",
            name=op.f("ck_statement_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name=op.f("fk_statement_batch_id_batch")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_statement_organisation_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programme.id"], name=op.f("fk_statement_programme_id_programme")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement")),
    )
    op.create_index(
        op.f("ix_statement_organisation_id"), "statement", ["organisation_id"], unique=False
    )
    op.create_index(
        "uq_statement_batch_organisation",
        "statement",
        ["batch_id", "organisation_id"],
        unique=True,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_index(
        "uq_statement_credit_note",
        "statement",
        ["programme_id", "organisation_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'credit_note'"),
    )
    op.create_table(
        "statement_line",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("statement_id", sa.BigInteger(), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("demarche_family", sa.String(length=32), nullable=True),
        sa.Column("commune_insee", sa.String(length=5), nullable=True),
        sa.Column("cheque_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "cheque_count >= 0 AND amount_cents >= 0", name=op.f("ck_statement_line_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["statement.id"],
            name=op.f("fk_statement_line_statement_id_statement"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_line")),
    )
    op.create_index(
        op.f("ix_statement_line_statement_id"), "statement_line", ["statement_id"], unique=False
    )
    op.create_table(
        "payment",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("statement_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=300), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'succeeded', 'failed')",
            name=op.f("ck_payment_status"),
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payment_amount_positive")),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["statement.id"], name=op.f("fk_payment_statement_id_statement")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_payment_payment_intent_id")),
        sa.UniqueConstraint("statement_id", name=op.f("uq_payment_statement_id")),
    )
    op.create_table(
        "stripe_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_event")),
        sa.UniqueConstraint("event_id", name=op.f("uq_stripe_event_event_id")),
    )


def downgrade() -> None:
    op.drop_table("stripe_event")
    op.drop_table("payment")
    op.drop_index(op.f("ix_statement_line_statement_id"), table_name="statement_line")
    op.drop_table("statement_line")
    op.drop_index(
        "uq_statement_credit_note",
        table_name="statement",
        postgresql_where=sa.text("kind = 'credit_note'"),
    )
    op.drop_index(
        "uq_statement_batch_organisation",
        table_name="statement",
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_statement_organisation_id"), table_name="statement")
    op.drop_table("statement")
    op.drop_table("allocation")
    op.drop_table("allocation_pattern")
    op.drop_table("batch")
