"""read side at national scale: listing and per-programme indexes, the figures' rollup, audit
checkpoints

Revision ID: 0013_read_scale
Revises: 0007_ledger_seal

- `redemption (redeemed_at, id)`: the operator's listing in keyset order (newest first); a
  site's listing already has `(site_id, redeemed_at)`. One index only: every index of
  `redemption` is written again when clearing marks a batch's redemptions (the per-programme
  reads go to the rollup instead).
- `booklet (programme_id) INCLUDE (size, status, handed_out_at) WHERE handed_out_at IS NULL`
  (every column it reads, so an index-only scan): cheques not handed out
  (stock), counted per programme without reading the cheques.
- `figure_rollup` and its cursor: each programme's figures by stage and one dimension, summed
  from the sealed journal off the hot path (pass_/reporting.py, `refresh_rollup`). The cursor
  starts at 0: the first `passnum rollup` (or the app's background job) reads the whole chain
  once.
- `audit_checkpoint`: what a conforming audit verified (clearing/audit.py).

Indexes are built CONCURRENTLY outside the migration's transaction, so a live database keeps
taking redemptions meanwhile.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0013_read_scale"
down_revision: str | None = "0012_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_redemption_redeemed_at_id", "redemption", "(redeemed_at, id)"),
    ("ix_booklet_not_handed_out", "booklet",
     "(programme_id) INCLUDE (size, status, handed_out_at) WHERE handed_out_at IS NULL"),
]


def upgrade() -> None:
    op.create_table(
        "figure_rollup",
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("cheques", sa.BigInteger(), nullable=False),
        sa.Column("value_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("programme_id", "dimension", "key", "stage",
                                name="pk_figure_rollup"),
    )
    op.create_table(
        "figure_rollup_cursor",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("sealed_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="single"),
        sa.PrimaryKeyConstraint("id", name="pk_figure_rollup_cursor"),
    )
    op.execute("INSERT INTO figure_rollup_cursor (id, sealed_seq, updated_at) VALUES (1, 0, now())")
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sealed_seq", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("last_batch_id", sa.BigInteger(), nullable=False),
        sa.Column("balances", JSONB(), nullable=False),
        sa.Column("batch_digests", JSONB(), nullable=False),
        sa.Column("allocated", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoint"),
    )
    with op.get_context().autocommit_block():
        for name, table, columns in INDEXES:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {columns}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _table, _columns in reversed(INDEXES):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.drop_table("audit_checkpoint")
    op.drop_table("figure_rollup_cursor")
    op.drop_table("figure_rollup")
