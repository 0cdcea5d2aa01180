"""redemptions and idempotency

Revision ID: 0004_redemption
Revises: 0003_issuance
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0004_redemption"
down_revision: str | None = "0003_issuance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", postgresql.JSON(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_record_user_id"),
    )
    op.create_table(
        "redemption",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("cheque_id", sa.BigInteger(), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("value_cents", sa.BigInteger(), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.Column("demarche_family", sa.String(length=32), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "reversed_at IS NULL OR batch_id IS NULL", name=op.f("ck_redemption_reversed_unbatched")
        ),
        sa.CheckConstraint("value_cents > 0", name=op.f("ck_redemption_value_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption")),
    )
    op.create_index("ix_redemption_batch_id", "redemption", ["batch_id"], unique=False)
    op.create_index(
        "ix_redemption_site_redeemed_at", "redemption", ["site_id", "redeemed_at"], unique=False
    )
    op.create_index(
        "ix_redemption_unbatched",
        "redemption",
        ["redeemed_at", "id"],
        unique=False,
        postgresql_where=sa.text("batch_id IS NULL AND reversed_at IS NULL"),
    )
    op.create_index(
        "uq_redemption_live_cheque",
        "redemption",
        ["cheque_id"],
        unique=True,
        postgresql_where=sa.text("reversed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_redemption_live_cheque",
        table_name="redemption",
        postgresql_where=sa.text("reversed_at IS NULL"),
    )
    op.drop_index(
        "ix_redemption_unbatched",
        table_name="redemption",
        postgresql_where=sa.text("batch_id IS NULL AND reversed_at IS NULL"),
    )
    op.drop_index("ix_redemption_site_redeemed_at", table_name="redemption")
    op.drop_index("ix_redemption_batch_id", table_name="redemption")
    op.drop_table("redemption")
    op.drop_table("idempotency_record")
