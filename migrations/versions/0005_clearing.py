"""clearing batches, statements, payments

Revision ID: 0005_clearing
Revises: 0004_redemption
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0005_clearing"
down_revision: str | None = "0004_redemption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
