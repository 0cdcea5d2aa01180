"""the redemption and the posting set-based: one call for many scans, many entries

Revision ID: 0016_redeem_many
Revises: 0015_cheaper_posting

Installs ledger/posting.sql and pass_/redeem.sql again, same rules, same results, now taking
many at once:
- `ledger_post_many` posts many entries in a few statements (validation, fingerprints, the
  entries and their postings); `ledger_post` is its case of one entry;
- `pass_redeem` takes arrays, one value a scan, and decides and writes them all with one
  statement per step (the read, the claim, the redemptions, the ledger entries), instead of
  one call per scan: its scalar form is dropped.
"""

from collections.abc import Sequence
from importlib.resources import files

from alembic import op

from migrations.sql_files import install

revision: str = "0016_redeem_many"
down_revision: str | None = "0015_cheaper_posting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one-scan form installed by 0008 to 0015 (a database migrated before this revision).
SCALAR = ("pass_redeem(text, text, bigint, bigint, bigint, bigint, date, timestamptz, text, "
          "text, timestamptz, interval, interval, boolean)")


def upgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SCALAR}")
    # pass_redeem's rows, as the file now defines them (0008 may have made them already, from
    # the same file: created again, unchanged).
    op.execute("DROP TYPE IF EXISTS pass_redeem_scan")
    install(files("ledger") / "posting.sql", files("pass_") / "redeem.sql")


def downgrade() -> None:
    # The functions stay (the files as they now stand) until 0008's downgrade drops them.
    pass
