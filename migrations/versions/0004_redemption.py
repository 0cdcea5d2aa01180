"""redemptions and idempotency

Revision ID: 0004_redemption
Revises: 0003_issuance
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0004_redemption"
down_revision: str | None = '0003_issuance'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
