"""access requests of people signed in with ProConnect whom no account matches

Revision ID: 0012_hardening
Revises: 0007_ledger_seal
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_hardening"
down_revision: str | None = "0011_anomalies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_request",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("siret", sa.String(length=14), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisation.id"],
            name=op.f("fk_access_request_organisation_id_organisation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_request")),
    )
    op.create_index(
        "uq_access_request_open", "access_request", ["siret", "email"], unique=True,
        postgresql_where=sa.text("handled_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_access_request_open", table_name="access_request",
        postgresql_where=sa.text("handled_at IS NULL"),
    )
    op.drop_table("access_request")
