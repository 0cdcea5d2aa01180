"""Issue 17, item 4: every way of stopping `passnum serve` leaves no process behind — SIGTERM
(systemd, docker), SIGINT to the process group (Ctrl-C in `make run`), the server process
killed outright (a crashed worker), a worker of two killed — with real processes; and, with
two workers, each listens on a socket of its own (api/workers.py), so the kernel spreads
connections over them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
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


def _workers(server_pid: int) -> list[psutil.Process]:
    """The server's worker processes (not its sealer, rollup or resource tracker)."""
    return [p for p in psutil.Process(server_pid).children(recursive=True)
            if _name(p) not in ("passnum-sealer", "passnum-rollup")
            and "resource_tracker" not in " ".join(p.cmdline())]


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
            worker = _workers(server.pid)[0]
            worker.kill()
            server.send_signal(signal.SIGTERM)
            family = psutil.Process(server.pid).children(recursive=True) + family
        server.wait(timeout=60)
        left = _gone([p for p in family if p.pid != server.pid])
        assert not left, f"{how}: left running: {left}"
    finally:
        _cleanup(server, family)


def _inode(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")  # "socket:[12345]"


def _listening(process: psutil.Process, port: int) -> set[str]:
    """The listening sockets on `port` that `process` holds, by inode."""
    return {_inode(process.pid, c.fd) for c in process.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.fd != -1}


def _listeners_on(port: int) -> int:
    """Listening sockets on `port` in the whole system (held by a process or not)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _wait(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)  # polling interval


def _stop(server: subprocess.Popen, family: list[psutil.Process]) -> None:
    with contextlib.suppress(psutil.Error):
        family = family + psutil.Process(server.pid).children(recursive=True)
    server.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=60)
    _cleanup(server, family)


def _port_of(server_pid: int) -> int:
    cmdline = psutil.Process(server_pid).cmdline()
    return int(cmdline[cmdline.index("--port") + 1])


def _each_worker_listens(server_pid: int, port: int) -> bool:
    workers = _workers(server_pid)
    return len(workers) == 2 and all(_listening(w, port) for w in workers)


def test_each_worker_has_its_own_socket_and_connections_spread(serve_env: dict) -> None:
    server, family = _start(serve_env, workers=2)
    try:
        port = _port_of(server.pid)
        _wait(lambda: _each_worker_listens(server.pid, port))
        workers = _workers(server.pid)
        sockets = [_listening(w, port) for w in workers]
        assert sockets[0].isdisjoint(sockets[1]), "the workers share one socket"
        assert not _listening(psutil.Process(server.pid), port), "the supervisor keeps a copy"
        assert _listeners_on(port) == 2

        # 32 connections opened at once, kept open (as wrk's, or a proxy's pool): each worker
        # takes a share (a hash of the addresses; fewer than 4 of 32 is a chance of 1 in 10⁶).
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            def held(worker: psutil.Process) -> int:
                return sum(1 for c in worker.net_connections(kind="tcp")
                           if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
            _wait(lambda: sum(held(w) for w in workers) == 32)
            shares = sorted(held(w) for w in workers)
            assert shares[0] >= 4, shares
        finally:
            for client in clients:
                client.close()
    finally:
        _stop(server, family)


def test_a_dead_workers_socket_goes_with_it(serve_env: dict) -> None:
    """A worker killed: its replacement binds a new socket, and no socket is left listening
    with nobody to accept (connections sent to it would hang)."""
    server, family = _start(serve_env, workers=2)
    try:
        port = _port_of(server.pid)
        _wait(lambda: _each_worker_listens(server.pid, port))
        victim = _workers(server.pid)[0]
        victim.kill()
        victim.wait(timeout=30)
        _wait(lambda: victim.pid not in {w.pid for w in _workers(server.pid)}
              and _each_worker_listens(server.pid, port))
        assert _listeners_on(port) == 2
        for _ in range(40):  # fresh connections each: every one is answered
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        _stop(server, family)
