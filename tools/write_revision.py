"""Developer tool: fill a revision file's upgrade/downgrade with the tables' create/drop ops.

Usage: python tools/write_revision.py migrations/versions/0001_accounts.py organisation app_user
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

from tools.render_migration import main as render


def fill(path: Path, tables: list[str]) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        render(tables)
    up, down = buf.getvalue().split("# ---- downgrade")
    clean = []
    for block in (up, down):
        lines = [ln for ln in block.splitlines() if ln.strip() and "###" not in ln]
        text = "\n".join(lines)
        text = re.sub(r"ARRAY\((String|Integer)\(", r"ARRAY(sa.\1(", text)
        text = text.replace("server_default=sa.text('1')", "server_default=sa.text('true')")
        clean.append(text)
    src = path.read_text()
    src = re.sub(r"def upgrade\(\) -> None:\n    pass", "def upgrade() -> None:\n" + clean[0], src)
    src = re.sub(
        r"def downgrade\(\) -> None:\n    pass", "def downgrade() -> None:\n" + clean[1], src
    )
    if "postgresql." in src and "dialects import postgresql" not in src:
        src = src.replace(
            "from alembic import op  # noqa: F401",
            "from alembic import op  # noqa: F401\nfrom sqlalchemy.dialects import postgresql",
        )
    path.write_text(src)


if __name__ == "__main__":
    fill(Path(sys.argv[1]), sys.argv[2:])
