"""the posting and the redemption with fewer statements a call

Revision ID: 0015_cheaper_posting
Revises: 0014_territory_function

Installs ledger/posting.sql and pass_/redeem.sql again, same rules, same results:
- `ledger_post` writes an entry and its postings in one statement, and checks the amounts with a
  loop instead of a query;
- `ledger_content_hash` is PL/pgSQL, ordering the postings without a query;
- `pass_redeem` calls `ledger_post` as an expression (no function scan);
- `pass_in_territory` is one expression that PostgreSQL inlines where it is called.
"""

from collections.abc import Sequence
from importlib.resources import files

from migrations.sql_files import install

revision: str = "0015_cheaper_posting"
down_revision: str | None = "0014_territory_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A function whose language changes (ledger_content_hash: SQL → PL/pgSQL) is replaced in
    # place by CREATE OR REPLACE, its callers untouched.
    install(files("ledger") / "posting.sql", files("pass_") / "redeem.sql")


def downgrade() -> None:
    # The functions stay (the files as they now stand) until 0008's downgrade drops them.
    pass
