"""`passnum purge-idempotency`: deletes the stored idempotent answers past their retention
period (pass_/retention.py), a chunk per transaction."""

from __future__ import annotations

from typing import Any

import typer

from kit.clock import utcnow
from kit.errors import DomainError
from pass_.retention import DEFAULT_DAYS, MIN_DAYS


def register(app: typer.Typer) -> None:
    app.command("purge-idempotency")(purge_idempotency)


def purge_idempotency(
    days: int = typer.Option(
        DEFAULT_DAYS, help=f"Durée de conservation en jours (au moins {MIN_DAYS})"
    ),
) -> None:
    """Supprime les réponses idempotentes (clés Idempotency-Key) enregistrées il y a plus de
    N jours."""
    from api.cli import run_with_sessionmaker
    from pass_.retention import idempotency_cutoff, purge_idempotency_records

    now = utcnow()
    try:
        idempotency_cutoff(now, days)  # refuse before starting or reaching any server

        async def work(sessionmaker: Any) -> int:
            return await purge_idempotency_records(sessionmaker, now=now, days=days)

        count = run_with_sessionmaker(work)
    except DomainError as error:
        typer.echo(f"Refusé ({error.code}) : {error.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{count} réponse(s) idempotente(s) supprimée(s) (conservation : {days} jours).")
