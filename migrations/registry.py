"""Imports every package's models so the shared metadata is complete, and runs Alembic
(also from code that runs an event loop: `upgrade_in_thread`, `downgrade_in_thread`)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

MODEL_MODULES = (
    "ledger.models",
    "pass_.models",
    "clearing.models",
    "clearing.invoice_models",
    "clearing.anomaly_models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a package not written yet
            if exc.name != name:
                raise


def alembic_config(url: str | None = None) -> Config:
    here = Path(__file__).resolve().parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(here / "versions"))
    if url:
        cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def upgrade_in_thread(url: str, revision: str = "head") -> None:
    """`upgrade` for code running inside an event loop (async tests, async benchmarks)."""
    _in_thread(upgrade, url, revision)


def downgrade_in_thread(url: str, revision: str = "base") -> None:
    """`downgrade` for code running inside an event loop."""
    _in_thread(downgrade, url, revision)


def _in_thread(fn: Callable[[str, str], None], url: str, revision: str) -> None:
    # Alembic's env (migrations/env.py) calls asyncio.run, which refuses to start while a loop
    # runs in the calling thread: run it in a thread of its own, wait for it, and re-raise its
    # exception here. The caller's loop is blocked meanwhile, as by any synchronous call.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(url, revision)
        except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"alembic-{fn.__name__}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
