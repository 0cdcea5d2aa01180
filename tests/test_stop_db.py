"""`passnum stop-db` stops the embedded PostgreSQL of the data folder, cleanly, and does nothing
when there is none running — on a scratch server of its own, never the suite's ./.passnum."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from typer.testing import CliRunner

from kit.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


def use_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str | None) -> None:
    if database_url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("PASSNUM_DATABASE_URL", raising=False)
    monkeypatch.setenv("PASSNUM_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    # The command acts on the configured data folder: make sure it is this scratch one.
    assert get_settings().data_dir == data_dir


@pytest.fixture
def settings_reset() -> Iterator[None]:
    yield
    get_settings.cache_clear()


@pytest.fixture
def scratch_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An embedded server started as the service starts it (kit.db.embedded_url), by a process
    that then exits, leaving it running; killed at the end if the test did not stop it."""
    data_dir = tmp_path / "data"
    started = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from kit.db import embedded_url; "
         "print(embedded_url(Path(sys.argv[1])))", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    url = started.stdout.strip().splitlines()[-1]
    pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    try:
        yield data_dir, url
    finally:
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown of a server the test left


def accepts_connections(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def postmaster_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def shared_postmaster() -> str | None:
    pid_file = ROOT / ".passnum" / "pgdata" / "postmaster.pid"
    return pid_file.read_text() if pid_file.exists() else None


def test_stop_db_stops_the_embedded_server_cleanly_then_has_nothing_to_do(
    scratch_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, settings_reset: None
) -> None:
    from api.cli import app

    data_dir, url = scratch_server
    pgdata = (data_dir / "pgdata").resolve()
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    assert accepts_connections(url)
    shared_before = shared_postmaster()
    use_data_dir(monkeypatch, data_dir, database_url=None)

    result = CliRunner().invoke(app, ["stop-db"])

    assert result.exit_code == 0, result.output
    assert f"Serveur PostgreSQL intégré arrêté ({pgdata})." in result.output
    assert not postmaster_alive(pid)
    assert not (pgdata / "postmaster.pid").exists()
    assert not accepts_connections(url)
    # A clean shutdown: the next start needs no crash recovery.
    assert "database system is shut down" in (pgdata / "log").read_text()
    # The suite's own embedded server, if any, is untouched.
    assert shared_postmaster() == shared_before

    again = CliRunner().invoke(app, ["stop-db"])
    assert again.exit_code == 0, again.output
    assert f"Le serveur PostgreSQL intégré ({pgdata}) n'était pas démarré : rien à faire." in (
        again.output
    )


def test_stop_db_without_an_embedded_database_does_nothing_and_leaves_database_url_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_reset: None
) -> None:
    from api.cli import app

    data_dir = tmp_path / "data"
    # A server nobody listens for: the command must not even try to reach it.
    use_data_dir(monkeypatch, data_dir, database_url="postgresql://nobody@127.0.0.1:1/nothing")

    result = CliRunner().invoke(app, ["stop-db"])

    assert result.exit_code == 0, result.output
    assert f"Aucune base intégrée dans {(data_dir / 'pgdata').resolve()} : rien à arrêter." in (
        result.output
    )
    assert "DATABASE_URL est défini" in result.output
    assert not data_dir.exists()
