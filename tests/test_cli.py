"""Smoke test of the real `passnum` commands, run as processes against a database of their own
on the suite's server: migrate, demo (twice), create-admin, audit, then serve over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from kit.db import execute_on_server as _admin
from kit.db import libpq_url, with_database

ROOT = Path(__file__).resolve().parent.parent
PASSNUM = Path(sys.executable).with_name("passnum")  # the console script pip installed
DEMO_LOGIN = ("admin@demo.passnum.fr", "demo-passnum-2026")
COMMAND_TIMEOUT_S = 300  # generous: a busy CI machine; a hung command still fails the test


async def _row_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        return {
            t["tablename"]: await conn.fetchval(f'SELECT count(*) FROM "{t["tablename"]}"')
            for t in tables
        }
    finally:
        await conn.close()


def row_counts(url: str) -> dict[str, int]:
    return asyncio.run(_row_counts(url))


async def _post_and_wait_sealed(url: str) -> int | None:
    """Post an entry; its sealed_seq once the running server's sealer has chained it."""
    from sqlalchemy import text

    from kit.db import make_engine, make_sessionmaker, transaction
    from ledger import service as ledger

    engine = make_engine(url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    try:
        async with transaction(sessions) as session:
            await ledger.post(session, key="cli:seal", kind="test",
                              postings=[("test:cli:a", -1), ("test:cli:b", 1)])
        for _ in range(150):
            async with sessions() as session:
                seq = await session.scalar(text(
                    "SELECT s.sealed_seq FROM ledger_entry e JOIN ledger_seal s "
                    "ON s.entry_id = e.id WHERE e.idempotency_key = 'cli:seal'"))
            if seq is not None:
                return int(seq)
            await asyncio.sleep(0.1)
        return None
    finally:
        await engine.dispose()


@pytest.fixture
def cli_env(server_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of the commands: a fresh database and a data folder of their own."""
    name = f"passnum_cli_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSNUM_")}
    env.pop("PORT", None)
    env.update(
        DATABASE_URL=with_database(server_url, name),
        PASSNUM_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
    )
    try:
        yield env
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def passnum(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PASSNUM), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(base: str, server: subprocess.Popen[str], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        assert server.poll() is None, f"passnum serve exited with {server.returncode}"
        try:
            response = httpx.get(f"{base}/healthz", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)  # polling interval, not a wait for the condition itself
    raise AssertionError(f"/healthz not healthy after {deadline_s} s: {last}")


def test_audit_passes_on_a_freshly_migrated_database(cli_env: dict[str, str]) -> None:
    ok(passnum(cli_env, "migrate"))
    assert "Audit conforme" in ok(passnum(cli_env, "audit"))


def test_migrate_demo_create_admin_and_serve(cli_env: dict[str, str]) -> None:
    url = cli_env["DATABASE_URL"]
    assert "Base de données à jour." in ok(passnum(cli_env, "migrate"))
    ok(passnum(cli_env, "migrate"))  # again: nothing to do, no error

    # The commune reference, from the shipped npm dataset; again: same rows.
    assert "communes chargées" in ok(passnum(cli_env, "load-communes"))
    assert "communes chargées" in ok(passnum(cli_env, "load-communes"))

    # demo twice: same logins, same rows.
    first = ok(passnum(cli_env, "demo"))
    assert "AdmiVille" in first
    logins = [line.split() for line in first.splitlines()[1:] if "@" in line]
    assert len(logins) == 8 and [DEMO_LOGIN[0], DEMO_LOGIN[1]] == logins[0][-2:]
    counts = row_counts(url)
    assert counts["organisation"] == 9 and counts["app_user"] == 8  # 4 sites, one itinerant
    second = ok(passnum(cli_env, "demo"))
    assert second == first
    assert row_counts(url) == counts

    # create-admin: a new operator admin in the existing operator organisation; twice is fine.
    created = ok(passnum(cli_env, "create-admin", "--email", "Chef@Exemple.fr",
                         "--password", "un-mot-de-passe-long"))
    assert "Administrateur prêt : chef@exemple.fr" in created
    again = ok(passnum(cli_env, "create-admin", "--email", "chef@exemple.fr",
                       "--password", "un-mot-de-passe-long"))
    assert "déjà existant : chef@exemple.fr" in again
    # Refused, in French, with nothing written: a mediator's e-mail, a short password.
    mediator = passnum(cli_env, "create-admin", "--email", "mediateur@clic-solidaire.fr",
                       "--password", "un-mot-de-passe-long")
    assert mediator.returncode == 1 and "pas administrateur" in mediator.stderr
    short = passnum(cli_env, "create-admin", "--email", "autre@exemple.fr", "--password", "court")
    assert short.returncode == 1 and "mot de passe" in short.stderr
    assert "Traceback" not in mediator.stderr + short.stderr
    after_admin = row_counts(url)
    assert after_admin == {**counts, "app_user": counts["app_user"] + 1}

    assert "Audit conforme" in ok(passnum(cli_env, "audit"))

    # serve: healthy, demo login over HTTP, then stopped.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stderr_path = Path(cli_env["PASSNUM_DATA_DIR"]).parent / "serve.stderr"
    with stderr_path.open("w") as stderr:
        server = subprocess.Popen(
            [str(PASSNUM), "serve", "--port", str(port)],
            env=cli_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, stopped as a whole below
        )
        try:
            wait_until_healthy(base, server, deadline_s=120)
            with httpx.Client(base_url=base, timeout=30) as http:
                for email, password in (DEMO_LOGIN, ("chef@exemple.fr", "un-mot-de-passe-long")):
                    token = http.post(
                        "/api/v1/auth/token",
                        data={"username": email, "password": password},
                        headers={"X-Request-ID": "cli-login"},
                    )
                    assert token.status_code == 200, token.text
                    assert token.headers["x-request-id"] == "cli-login"
                    me = http.get(
                        "/api/v1/me",
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                    )
                    assert me.status_code == 200, me.text
                    assert me.json()["role"] == "operator_admin"
                refused = http.post(
                    "/api/v1/auth/token", data={"username": DEMO_LOGIN[0], "password": "non"}
                )
                assert refused.status_code == 401
            # The sealer process started beside the workers chains a new entry within seconds.
            assert asyncio.run(_post_and_wait_sealed(url)) is not None
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM, or 0.
    assert server.returncode in (0, -signal.SIGTERM), stderr_path.read_text()

    # Its log: one JSON event per line, each request with its id, and no personal data.
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
    requests = [e for e in events if e.get("event") == "request"]
    assert len(requests) >= 6
    assert all(e.get("request_id") for e in requests)
    assert {e["request_id"] for e in requests if e["route"] == "/api/v1/auth/token"} >= {
        "cli-login"
    }
    log_text = stderr_path.read_text()
    for secret in ("@", "demo-passnum-2026", "un-mot-de-passe-long"):
        assert secret not in log_text
