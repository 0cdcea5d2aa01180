"""the ledger's posting and the redemption as database functions

Revision ID: 0008_redeem_function
Revises: 0007_ledger_seal

Installs `ledger_post` (with `ledger_canonical_json`, `ledger_content_hash`, `ledger_open_accounts`) from
ledger/posting.sql and `pass_redeem` from pass_/redeem.sql: the one
definition of posting an entry and of redeeming a cheque, called by every road. The files are
read when the revision runs; a later change to them comes with a revision of its own that
installs them again (`CREATE OR REPLACE`).
"""

from collections.abc import Sequence
from importlib.resources import files

from alembic import op

from migrations.sql_files import install

revision: str = "0008_redeem_function"
down_revision: str | None = "0007_ledger_seal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger's first: the redemption posts through `ledger_post`. (Package data: the files
# ship with an installed wheel too.)
SOURCES = (files("ledger") / "posting.sql", files("pass_") / "redeem.sql")

# What the files define as they now stand (this revision installs them), and what they
# defined before (a database migrated then).
FUNCTIONS = (
    "pass_redeem(text[], text[], bigint[], bigint[], bigint[], bigint[], date[], text[], "
    "text[], timestamptz[], timestamptz, interval, interval, boolean)",  # since 0016
    "pass_redeem(text, text, bigint, bigint, bigint, bigint, date, timestamptz, text, text, "
    "timestamptz, interval, interval, boolean)",  # until 0016
    "ledger_post(text, text, jsonb, timestamptz, text[], bigint[])",
    "ledger_post_many(text[], text[], jsonb[], timestamptz[], int[], text[], bigint[])",
    "ledger_open_accounts(text[])",
    "ledger_content_hash(text, jsonb, text[], bigint[])",
    "ledger_canonical_json(jsonb)",
    "pass_in_territory(text, text[])",  # in pass_/redeem.sql since 0014
    "pass_redemption_accounts(bigint, bigint)",  # since 0016
)


def upgrade() -> None:
    install(*SOURCES)


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("DROP TYPE IF EXISTS pass_redeem_scan")  # pass_redeem's rows, since 0016
