"""programmes, beneficiaries, booklets, cheques

Revision ID: 0003_issuance
Revises: 0002_ledger
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0003_issuance"
down_revision: str | None = '0002_ledger'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
