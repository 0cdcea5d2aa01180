"""the territory rule as a database function that every reader calls

Revision ID: 0014_territory_function
Revises: 0013_read_scale

Installs pass_/redeem.sql again: `pass_in_territory(commune, territory)`, the one definition of
"is this commune in the programme's territory", and `pass_redeem`, which now calls it (the
site lists, the booklet's cover and « mon pass » call it too, instead of a Python copy).
"""

from collections.abc import Sequence
from importlib.resources import files

from migrations.sql_files import install

revision: str = "0014_territory_function"
down_revision: str | None = "0013_read_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    install(files("pass_") / "redeem.sql")


def downgrade() -> None:
    # pass_redeem (as the file now stands) calls pass_in_territory: both stay until 0008's
    # downgrade drops them.
    pass
