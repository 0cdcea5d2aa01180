"""Developer tool: print Alembic operations creating the given tables from the models.

Usage: python tools/render_migration.py organisation app_user
(Autogenerate on an empty database, restricted to those tables; paste into a revision, then read
and edit.)"""

from __future__ import annotations

import sys

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from kit.db import NAMING_CONVENTION, metadata
from migrations.registry import import_all_models


def main(names: list[str]) -> None:
    import_all_models()
    md = MetaData(naming_convention=NAMING_CONVENTION)
    for table in metadata.sorted_tables:
        table.to_metadata(md)
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, compare_to: (
                    type_ != "table" or name in names
                ),
            },
        )
        script = produce_migrations(ctx, md)
        print(render_python_code(script.upgrade_ops))
        print("# ---- downgrade")
        print(render_python_code(script.downgrade_ops))


if __name__ == "__main__":
    main(sys.argv[1:])
