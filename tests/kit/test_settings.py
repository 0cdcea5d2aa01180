"""Secrets: from the environment, else generated once in the data folder, the same for all."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest

from kit.settings import Settings


def _read_secret(data_dir: str, barrier: Any, results: Any) -> None:
    barrier.wait()  # every process asks at the same moment
    results.put(Settings(data_dir=Path(data_dir)).secret("jwt_secret"))


def test_a_missing_secret_is_generated_once_private_and_read_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = settings.secret("jwt_secret")
    path = tmp_path / "secrets" / "jwt_secret"
    assert len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path).secret("jwt_secret") == first
    assert [p.name for p in path.parent.iterdir()] == ["jwt_secret"]  # no draft left behind


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    workers = [
        ctx.Process(target=_read_secret, args=(str(tmp_path), barrier, results)) for _ in range(n)
    ]
    for w in workers:
        w.start()
    secrets = [results.get(timeout=120) for _ in range(n)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert len(set(secrets)) == 1
    assert (tmp_path / "secrets" / "jwt_secret").read_text() == secrets[0]


def test_a_secret_from_the_environment_wins(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PASSNUM_JWT_SECRET", "secret-venu-de-l-environnement-42")
    assert Settings(data_dir=tmp_path).secret("jwt_secret") == (
        "secret-venu-de-l-environnement-42"
    )
    assert not (tmp_path / "secrets").exists()


def test_an_empty_secret_file_is_refused_rather_than_used(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "jwt_secret"
    path.parent.mkdir()
    path.write_text("\n")
    with pytest.raises(RuntimeError, match="empty or too short"):
        Settings(data_dir=tmp_path).secret("jwt_secret")


def test_database_url_and_port_are_read_without_prefix(monkeypatch: Any) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5433/db")
    monkeypatch.setenv("PORT", "8123")
    settings = Settings()
    assert (settings.database_url, settings.port) == ("postgresql://u@h:5433/db", 8123)
