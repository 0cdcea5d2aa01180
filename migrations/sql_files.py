"""Installing the database functions kept as `.sql` files inside the packages (ledger/posting.sql,
pass_/redeem.sql): a revision that changes them runs them again (`CREATE OR REPLACE`)."""

from __future__ import annotations

from importlib.resources.abc import Traversable

from alembic import op


def install(*sources: Traversable) -> None:
    """Run each file — several statements with dollar-quoted bodies — as one simple query on
    the migration's own driver connection (asyncpg), within the migration's transaction. The
    files are package data: they ship with an installed wheel too."""
    from sqlalchemy.util import await_only

    driver = op.get_bind().connection.driver_connection
    if driver is None:
        raise RuntimeError("the migration's connection has no driver connection")
    for source in sources:
        await_only(driver.execute(source.read_text(encoding="utf-8")))
