"""`passnum stop-db`: stops the embedded PostgreSQL that `serve` (and `make run`) leave
running in the data folder."""

from __future__ import annotations

import typer

from kit.embedded import EmbeddedStopFailed, Stop, pgdata_of, stop_embedded
from kit.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("stop-db")(stop_db)


def stop_db(
    timeout: int = typer.Option(60, help="Attente maximale de l'arrêt, en secondes"),
) -> None:
    """Arrête proprement le serveur PostgreSQL intégré du dossier de données (sessions en cours
    interrompues) ; ne touche jamais au serveur désigné par DATABASE_URL."""
    settings = get_settings()  # never database_url(): it would start the embedded server
    pgdata = pgdata_of(settings.data_dir)
    try:
        outcome = stop_embedded(settings.data_dir, timeout_s=timeout)
    except EmbeddedStopFailed as exc:
        typer.echo(f"Échec de l'arrêt du serveur PostgreSQL intégré ({pgdata}) :\n{exc}", err=True)
        raise typer.Exit(1) from None
    if outcome is Stop.STOPPED:
        typer.echo(f"Serveur PostgreSQL intégré arrêté ({pgdata}).")
    elif outcome is Stop.NOT_RUNNING:
        typer.echo(f"Le serveur PostgreSQL intégré ({pgdata}) n'était pas démarré : rien à faire.")
    else:
        typer.echo(f"Aucune base intégrée dans {pgdata} : rien à arrêter.")
    if settings.database_url:
        typer.echo(
            "DATABASE_URL est défini : le service utilise ce serveur-là, que cette "
            "commande n'arrête pas."
        )
