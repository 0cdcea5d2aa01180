"""index idempotency_record by age, for its purge

Revision ID: 0006_idempotency_purge
Revises: 0005_clearing

Built CONCURRENTLY: the table is on the redemption path and, having never been purged, is at its
largest when this runs; a plain CREATE INDEX would block redemptions for the whole build. A
concurrent build cannot run in a transaction, hence the autocommit block; an interrupted one
leaves an invalid index behind, which the upgrade drops first, so it can simply be run again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_idempotency_purge"
down_revision: str | None = "0005_clearing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_idempotency_record_created_at"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX, table_name="idempotency_record", postgresql_concurrently=True, if_exists=True
        )
        op.create_index(
            INDEX, "idempotency_record", ["created_at"], unique=False, postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX, table_name="idempotency_record", postgresql_concurrently=True, if_exists=True
        )
