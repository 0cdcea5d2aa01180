"""Stopping the embedded PostgreSQL of a data folder, which the service starts
(kit.db.embedded_url) and leaves running when it stops.

Only the data folder is acted on, with the `pg_ctl` of the `pgserver` wheel; no connection is
made, so a server named by DATABASE_URL is never touched.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import subprocess
from pathlib import Path

__all__ = ["EmbeddedStopFailed", "Stop", "pgdata_of", "stop_embedded"]


class Stop(enum.Enum):
    """What `stop_embedded` found and did."""

    STOPPED = "stopped"  # a server was running; it is stopped
    NOT_RUNNING = "not_running"  # a data folder, no server running on it
    NO_DATA = "no_data"  # no embedded database in this data folder


class EmbeddedStopFailed(RuntimeError):
    """pg_ctl could not tell the server's state or stop it; the message is pg_ctl's output."""


def pgdata_of(data_dir: Path) -> Path:
    """The embedded server's data directory inside the service's data folder."""
    return (data_dir / "pgdata").resolve()


def stop_embedded(data_dir: Path, *, timeout_s: int = 60) -> Stop:
    """Stop the embedded server of `data_dir` if it runs, in fast mode: sessions are ended,
    open transactions rolled back, and the server shuts down cleanly (a checkpoint, no crash
    recovery at the next start). Waits up to `timeout_s` seconds for it to be down."""
    pgdata = pgdata_of(data_dir)
    if not (pgdata / "PG_VERSION").is_file():
        return Stop.NO_DATA
    status = _pg_ctl(pgdata, "status")
    if status.returncode == 3:  # pg_ctl: "no server running" (a stale postmaster.pid too)
        return Stop.NOT_RUNNING
    if status.returncode != 0:
        raise EmbeddedStopFailed(_output(status))
    stop = _pg_ctl(pgdata, "stop", "-m", "fast", "-w", "-t", str(timeout_s), timeout_s=timeout_s)
    if stop.returncode != 0:
        # It may have stopped by itself between the two calls.
        if _pg_ctl(pgdata, "status").returncode == 3:
            return Stop.NOT_RUNNING
        raise EmbeddedStopFailed(_output(stop))
    return Stop.STOPPED


def _pg_ctl(pgdata: Path, *args: str, timeout_s: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_pg_ctl_path()), "-D", str(pgdata), *args],
        capture_output=True,
        text=True,
        check=False,
        user=_owner(pgdata),
        # pg_ctl's own -t bounds the stop; this only guards against a hung pg_ctl.
        timeout=timeout_s + 30,
    )


def _pg_ctl_path() -> Path:
    # Found, not imported: importing pgserver sets up its runtime folder and locks (and warns
    # when XDG_RUNTIME_DIR is unset), none of which stopping a server needs.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedStopFailed("pgserver n'est pas installé : pg_ctl introuvable.")
    return Path(spec.origin).parent / "pginstall" / "bin" / "pg_ctl"


def _owner(pgdata: Path) -> int | None:
    """pg_ctl refuses to run as root: when we are root (pgserver then runs the server as a
    system user of its own), run it as the data directory's owner."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    owner = pgdata.stat().st_uid
    return owner if owner != 0 else None


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip() or result.stdout.strip()) or f"pg_ctl: code {result.returncode}"
