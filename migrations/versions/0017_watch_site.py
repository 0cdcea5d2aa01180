"""the anomaly watch: when a run last started on each site, shared by the server's workers

Revision ID: 0017_watch_site
Revises: 0016_redeem_many

With one listening socket per worker (api/workers.py), a site's offline batches reach several
workers, and each started a watch run of the site: the same redemptions read once per worker.
`anomaly_watch_site` lets a worker skip a site another worker watched moments ago.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_watch_site"
down_revision: str | None = "0016_redeem_many"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "anomaly_watch_site",
        sa.Column("site_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("watched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_anomaly_watch_site")),
    )


def downgrade() -> None:
    op.drop_table("anomaly_watch_site")
