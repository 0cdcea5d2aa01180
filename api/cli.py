"""The `passnum` command: serve, migrate, create-admin, demo, audit, keys… (Typer).

Each command opens its own transaction (kit.db.transaction) and calls the same service
functions as the API. Feature commands live in `api/commands/` (each module has
`register(app)`), so a feature adds its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import pkgutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from kit.db import make_engine, make_sessionmaker, resolve_url, transaction
from kit.settings import Settings, get_settings

app = typer.Typer(
    help="Pass numérique — service d'émission et de compensation.",
    no_args_is_help=True,
    add_completion=False,
)
T = TypeVar("T")


def database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return resolve_url(settings.database_url, settings.data_dir)


def run_in_transaction(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` in one transaction on the configured database."""

    async def main() -> T:
        engine = make_engine(database_url(), pool_size=2, max_overflow=0)
        try:
            async with transaction(make_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def run_with_sessionmaker(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(sessionmaker)` for jobs that manage several transactions themselves."""

    async def main() -> T:
        engine = make_engine(database_url(), pool_size=4, max_overflow=0)
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


@app.command()
def migrate() -> None:
    """Applique les migrations de la base de données."""
    from migrations.registry import upgrade

    upgrade(database_url())
    typer.echo("Base de données à jour.")


@app.command()
def serve(
    port: int = typer.Option(None, help="Port (par défaut PORT ou 8000)"),
    host: str = typer.Option(None, help="Adresse d'écoute (127.0.0.1)"),
    workers: int = typer.Option(1, help="Nombre de processus"),
    access_log: bool = typer.Option(False, help="Journal d'accès d'uvicorn"),
) -> None:
    """Démarre le service web."""
    import uvicorn

    settings = get_settings()
    # Resolve the database once, so every worker uses the same server (the embedded one too).
    os.environ["DATABASE_URL"] = database_url(settings)
    settings.secret("jwt_secret")  # generate before workers race to do it
    from pass_.tokens import Keyring

    Keyring.load_or_create(settings.keys_dir)
    # One sealer process beside the workers, rather than a sealer task in each worker, and one
    # rollup process likewise (the figures of the pages, counted off the hot path).
    sealer = _side_process(settings.sealer_in_app, "passnum-sealer", settings.log_json,
                           settings.sealer_interval)
    if sealer is not None:
        os.environ["PASSNUM_SEALER_IN_APP"] = "false"  # read by the workers' settings
    rollup = _side_process(settings.rollup_in_app, "passnum-rollup", settings.log_json,
                           settings.rollup_interval)
    if rollup is not None:
        os.environ["PASSNUM_ROLLUP_IN_APP"] = "false"  # read by the workers' settings
    # uvicorn stops on SIGTERM, then raises the signal again once its server is down: with the
    # default action the process would die right there, before the `finally` that ends the
    # sealer (which, with the multiprocessing resource tracker, was left running). As an
    # exception, the signal unwinds through the `finally` instead.
    previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_signal)
    from api import logging as api_logging

    api_logging.configure(json=settings.log_json)  # this process's lines (uvicorn's too)
    stopped_by: int | None = None
    try:
        options: dict[str, Any] = dict(
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            access_log=access_log,
            log_level="warning",
            log_config=None,  # no text format of uvicorn's own: its lines are JSON (api.logging)
            proxy_headers=True,
        )
        if workers > 1:  # a listening socket per worker, so connections spread evenly
            from api.workers import PortSharingWorkers

            PortSharingWorkers(uvicorn.Config("api.app:app_factory", **options)).run()
        else:
            uvicorn.run("api.app:app_factory", **options)
    except _Signalled as stop:
        stopped_by = stop.signum
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if sealer is not None:
            _stop_process(sealer)
        if rollup is not None:
            _stop_process(rollup)
    if stopped_by is not None:  # end as the signal would have: a supervisor sees -SIGTERM
        signal.signal(stopped_by, signal.SIG_DFL)
        os.kill(os.getpid(), stopped_by)


def _side_process(wanted: bool, name: str, log_json: bool, interval: float) -> Any:
    """A process of `serve` beside the workers (spawned, so it shares no state with them),
    given the database, the log format, its interval and this process's id to die with."""
    if not wanted:
        return None
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(
        target=_side_main,
        args=(name, os.environ["DATABASE_URL"], log_json, interval, os.getpid()),
        name=name, daemon=True,
    )
    process.start()
    return process


class _Signalled(SystemExit):
    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise _Signalled(signum)


def _stop_process(process: Any, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    process.terminate()
    process.join(timeout=timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout=timeout)


def _die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` is gone, however it went (kill -9 included): the
    kernel's parent-death signal on Linux, and a watch on the parent id everywhere."""
    import ctypes
    import threading
    import time

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # died before the line above
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# The loops `serve` runs in processes of their own beside the workers, by process name.
_SIDE_LOOPS = {
    "passnum-sealer": ("ledger.sealer", "run_sealer_loop"),  # chains the committed entries
    "passnum-rollup": ("pass_.reporting", "run_rollup_loop"),  # counts them into the figures
}


def _side_main(name: str, database_url: str, log_json: bool, interval: float,
               parent_pid: int | None = None) -> None:
    """A side process of `passnum serve` (the sealer, the rollup), logging as the app, running
    its loop every `interval` seconds on an engine of its own.

    Ctrl-C reaches the whole process group: a side process ignores it and is ended by
    `serve`, which stops it after the web server (or by the parent-death watch if `serve` is
    gone). Sealing in its own process also keeps the hashing of a second's worth of entries
    off the workers' event loops."""
    from api import logging as api_logging
    from kit.db import run_with_own_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid or os.getppid())
    api_logging.configure(json=log_json)
    with contextlib.suppress(OSError):  # named in ps and top (Linux)
        Path("/proc/self/comm").write_text(name)
    module, function = _SIDE_LOOPS[name]
    loop = getattr(importlib.import_module(module), function)
    run_with_own_engine(database_url, lambda sessionmaker: loop(sessionmaker, interval))


@app.command()
def rollup() -> None:
    """Compte dans les chiffres des tableaux de bord les opérations scellées du journal."""
    from pass_.reporting import refresh_rollup_once

    total = run_with_sessionmaker(refresh_rollup_once)
    typer.echo(f"Chiffres à jour : {total} opération(s) du journal comptée(s).")


@app.command("create-admin")
def create_admin(
    email: str = typer.Option(...),
    password: str = typer.Option(...),
    organisation: str = typer.Option("Opérateur Pass numérique"),
) -> None:
    """Crée un administrateur de l'opérateur (et l'organisation opérateur si besoin)."""
    from pydantic import ValidationError

    from api.seed import ensure_admin
    from kit.errors import DomainError
    from pass_ import accounts

    async def work(session: Any) -> tuple[str, bool]:
        existed = await accounts.find_user_by_email(session, email.strip()) is not None
        user = await ensure_admin(
            session, email=email, password=password, organisation_name=organisation
        )
        return str(user.email), existed

    try:
        address, existed = run_in_transaction(work)
    except (DomainError, ValidationError) as exc:
        typer.echo(f"Administrateur non créé : {_explain(exc)}", err=True)
        raise typer.Exit(1) from None
    if existed:
        typer.echo(f"Administrateur déjà existant : {address} (mot de passe inchangé)")
    else:
        typer.echo(f"Administrateur prêt : {address}")


def _explain(exc: Exception) -> str:
    """A French sentence for a refused input (a domain error or a schema's validation)."""
    from pydantic import ValidationError

    from kit.errors import DomainError

    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, ValidationError):
        reasons = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ()))
            inner = (err.get("ctx") or {}).get("error")
            if isinstance(inner, DomainError):
                reasons.append(inner.message)
            elif field == "email":
                reasons.append("adresse e-mail invalide")
            elif field == "password":
                reasons.append("le mot de passe doit comporter de 10 à 200 caractères")
            else:
                reasons.append(f"{field} invalide")
        return " ; ".join(reasons) + "."
    return str(exc)


@app.command()
def demo() -> None:
    """Crée (ou complète) le territoire de démonstration et affiche les identifiants."""
    from api.seed import seed_demo

    logins = run_in_transaction(lambda s: seed_demo(s, get_settings()))
    typer.echo("Territoire de démonstration prêt (AdmiVille). Identifiants :")
    for role, email, password in logins:
        typer.echo(f"  {role:<32} {email:<34} {password}")


@app.command()
def audit(
    incremental: bool = typer.Option(
        False, "--incremental",
        help="Seulement ce qui suit le dernier point de contrôle (audit complet sinon)"),
) -> None:
    """Vérifie le journal (équilibre, chaîne de hachage) et les relevés ; code 1 si écart.

    L'audit complet relit tout l'historique et, conforme, enregistre un point de contrôle ;
    `--incremental` ne vérifie que ce qui est venu après le dernier."""
    from clearing.audit import run_audit, run_incremental_audit

    result = run_in_transaction(run_incremental_audit if incremental else run_audit)
    if result.ok:
        typer.echo(f"Audit conforme : {result.summary}")
        return
    typer.echo(f"Audit : {len(result.differences)} écart(s)", err=True)
    for diff in result.differences:
        typer.echo(f"  - {diff.kind} : {diff.message}", err=True)
    raise typer.Exit(1)


@app.command()
def seal() -> None:
    """Scelle (chaîne de hachage) les écritures validées en attente."""
    from ledger.sealer import seal_pending

    total = 0

    async def work(session: Any) -> int:
        return await seal_pending(session)

    while True:
        n = run_in_transaction(work)
        total += n
        if n == 0:
            break
    typer.echo(f"{total} écriture(s) scellée(s).")


keys = typer.Typer(help="Clés de signature des chèques.")
app.add_typer(keys, name="keys")


@keys.command("rotate")
def keys_rotate() -> None:
    """Ajoute une nouvelle clé active ; les anciennes clés publiques restent valides."""
    from pass_.tokens import Keyring

    keyring = Keyring.load_or_create(get_settings().keys_dir)
    kid = keyring.rotate()
    typer.echo(
        f"Nouvelle clé active : {kid}. Clés publiées : "
        f"{', '.join(k['kid'] for k in keyring.jwks()['keys'])}"
    )


@keys.command("list")
def keys_list() -> None:
    """Liste les clés publiques publiées."""
    from pass_.tokens import Keyring

    keyring = Keyring.load_or_create(get_settings().keys_dir)
    for key in keyring.jwks()["keys"]:
        active = " (active)" if key["kid"] == keyring.active_kid else ""
        typer.echo(f"{key['kid']}{active}")


def _register_commands() -> None:
    from api import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"api.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()

if __name__ == "__main__":
    app()
