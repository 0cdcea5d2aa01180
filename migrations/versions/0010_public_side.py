"""the public side: commune reference, site profiles, booklet check codes

Revision ID: 0010_public_side
Revises: 0007_ledger_seal

- `commune`: the commune reference (INSEE code → name, postcodes, département, centre), filled
  by `passnum load-communes` (pass_/communes.py) from the dataset shipped in a package;
- `organisation`: a site's public profile (postcode, coordinates, OpenStreetMap opening hours,
  itinerant stops, accessibility, phone, website, when it was last edited and checked);
- `booklet.check_code`: the short code printed on the cover beside the number (/mon-pass);
  existing booklets get one each (the default is volatile, so one per row).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_public_side"
down_revision: str | None = "0009_invoices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK_CODE_DEFAULT = "upper(substr(md5((gen_random_uuid())::text), 1, 6))"


def upgrade() -> None:
    op.create_table(
        "commune",
        sa.Column("code", sa.String(5), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("search_name", sa.String(100), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("postcodes", postgresql.ARRAY(sa.String(5)), nullable=False, server_default="{}"),
        sa.Column("population", sa.Integer),
        sa.Column("latitude", sa.Float),
        sa.Column("longitude", sa.Float),
        sa.PrimaryKeyConstraint("code", name="pk_commune"),
    )
    op.create_index(
        "ix_commune_search_name",
        "commune",
        ["search_name"],
        postgresql_ops={"search_name": "text_pattern_ops"},
    )
    op.create_index("ix_commune_postcodes", "commune", ["postcodes"], postgresql_using="gin")
    op.add_column("organisation", sa.Column("postcode", sa.String(5)))
    op.add_column("organisation", sa.Column("latitude", sa.Float))
    op.add_column("organisation", sa.Column("longitude", sa.Float))
    op.add_column("organisation", sa.Column("opening_hours", sa.String(500)))
    op.add_column(
        "organisation",
        sa.Column(
            "stops",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.add_column("organisation", sa.Column("accessibility", sa.String(500)))
    op.add_column("organisation", sa.Column("phone", sa.String(20)))
    op.add_column("organisation", sa.Column("website", sa.String(300)))
    op.add_column("organisation", sa.Column("profile_updated_at", sa.DateTime(timezone=True)))
    op.add_column("organisation", sa.Column("profile_checked_at", sa.DateTime(timezone=True)))
    op.add_column(
        "booklet",
        sa.Column(
            "check_code",
            sa.String(6),
            nullable=False,
            server_default=sa.text(CHECK_CODE_DEFAULT),
        ),
    )


def downgrade() -> None:
    op.drop_column("booklet", "check_code")
    for column in (
        "profile_checked_at",
        "profile_updated_at",
        "website",
        "phone",
        "accessibility",
        "stops",
        "opening_hours",
        "longitude",
        "latitude",
        "postcode",
    ):
        op.drop_column("organisation", column)
    op.drop_index("ix_commune_postcodes", table_name="commune")
    op.drop_index("ix_commune_search_name", table_name="commune")
    op.drop_table("commune")
