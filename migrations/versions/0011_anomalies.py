"""the anomaly watch: alerts, and the refused scans one of its rules counts

Revision ID: 0011_anomalies
Revises: 0007_ledger_seal

Two new tables (clearing/anomaly_models.py), nothing changed in existing ones: the watch reads
redemptions after the fact and never sits on the redemption path.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_anomalies"
down_revision: str | None = "0010_public_side"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RULES = "'booklet_burst', 'outside_hours', 'daily_spike', 'booklet_spread', 'refused_scans'"
STATUSES = "'open', 'justified', 'site_suspended'"


def upgrade() -> None:
    op.create_table(
        "anomaly",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=200), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=True),
        sa.Column("programme_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.BigInteger(), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"rule IN ({RULES})", name=op.f("ck_anomaly_rule")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_anomaly_status")),
        sa.CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL) AND "
            "(status = 'open' OR length(btrim(resolution_note)) > 0)",
            name=op.f("ck_anomaly_resolution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomaly")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_anomaly_fingerprint")),
    )
    op.create_index("ix_anomaly_status_opened_at", "anomaly", ["status", "opened_at"])
    op.create_index("ix_anomaly_programme_id", "anomaly", ["programme_id"])
    op.create_table(
        "refused_scan",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refused_scan")),
    )
    op.create_index("ix_refused_scan_user_id_refused_at", "refused_scan", ["user_id", "refused_at"])
    op.create_index("ix_refused_scan_refused_at", "refused_scan", ["refused_at"])


def downgrade() -> None:
    op.drop_table("refused_scan")
    op.drop_table("anomaly")
