"""Issue 17, item 4: every way of stopping `passnum serve` leaves no process behind — SIGTERM
(systemd, docker), SIGINT to the process group (Ctrl-C in `make run`), the server process
killed outright (a crashed worker), a worker of two killed — with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kit.db import execute_on_server as _admin
from kit.db import with_database
from tests.test_cli import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-c", "from api.cli import app; app()"]  # this tree's code


@pytest.fixture(scope="module")
def serve_env(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    name = f"passnum_stop_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSNUM_")}
    env.pop("PORT", None)
    env.update(DATABASE_URL=with_database(server_url, name), PYTHONPATH=str(ROOT),
               PASSNUM_DATA_DIR=str(tmp_path_factory.mktemp("stop") / "data"))
    migrated = subprocess.run([*SERVE, "migrate"], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300, check=False)
    assert migrated.returncode == 0, migrated.stderr
    try:
        yield env
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _start(env: dict, workers: int) -> tuple[subprocess.Popen, list[psutil.Process]]:
    port = free_port()
    server = subprocess.Popen([*SERVE, "serve", "--port", str(port), "--workers", str(workers)],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until_healthy(f"http://127.0.0.1:{port}", server, deadline_s=120)  # type: ignore[arg-type]
    family = psutil.Process(server.pid).children(recursive=True)
    names = {_name(p) for p in family}
    assert "passnum-sealer" in names, names  # the process the bug left behind is there
    assert "passnum-rollup" in names, names  # and the figures' rollup, stopped the same way
    return server, family


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return "?"


def _gone(processes: list[psutil.Process], timeout: float = 30) -> list[str]:
    """Those still running after `timeout` seconds (a zombie waiting for its reaper is gone)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    left = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {_name(p)} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return left


def _cleanup(server: subprocess.Popen, family: list[psutil.Process]) -> None:
    for p in family:  # only if the test failed: never leave them to the next test
        if p.is_running():
            p.kill()
    if server.poll() is None:
        server.kill()
    server.wait(timeout=30)


@pytest.mark.parametrize(("how", "workers"), [
    ("sigterm", 1), ("ctrl_c", 1), ("killed", 1), ("worker_killed", 2),
])
def test_no_process_is_left_behind_however_serve_stops(serve_env: dict, how: str,
                                                       workers: int) -> None:
    server, family = _start(serve_env, workers)
    try:
        if how == "sigterm":
            server.send_signal(signal.SIGTERM)  # to the server alone, as systemd or docker
        elif how == "ctrl_c":
            os.killpg(server.pid, signal.SIGINT)  # the terminal sends it to the whole group
        elif how == "killed":
            server.kill()
        else:  # one of the workers crashes; uvicorn starts another; then the server stops
            worker = next(p for p in family
                          if _name(p) not in ("passnum-sealer", "passnum-rollup")
                          and "resource_tracker" not in " ".join(p.cmdline()))
            worker.kill()
            server.send_signal(signal.SIGTERM)
            family = psutil.Process(server.pid).children(recursive=True) + family
        server.wait(timeout=60)
        left = _gone([p for p in family if p.pid != server.pid])
        assert not left, f"{how}: left running: {left}"
    finally:
        _cleanup(server, family)
