"""Commands of the public side: `passnum load-communes` (the commune reference), `passnum
lieux-csv` (the directory in the data standard), `passnum open-data` (redemptions, secrecy
applied) and `passnum validity-alerts` (stock about to lapse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("load-communes")(load_communes)
    app.command("lieux-csv")(lieux_csv)
    app.command("open-data")(open_data)


def load_communes(
    reference: Path = typer.Option(
        None, help="Fichier communes.json du paquet @etalab/decoupage-administratif"
    ),
    centres: list[Path] = typer.Option(  # noqa: B008
        [],
        help="Fichier(s) code;latitude;longitude des centres des communes (en plus de ceux livrés)",
    ),
) -> None:
    """Charge (ou met à jour) le référentiel des communes : nom, codes postaux, département,
    centre. Idempotent ; ne télécharge rien."""
    from api.cli import run_in_transaction
    from pass_ import communes

    rows = communes.read_reference(reference or communes.REFERENCE, [communes.CENTRES, *centres])

    async def work(session: Any) -> int:
        return await communes.load_communes(session, rows)

    count = run_in_transaction(work)
    with_centre = sum(1 for r in rows if r.latitude is not None)
    typer.echo(f"{count} communes chargées ({with_centre} avec leur centre).")


def lieux_csv(out: Path = typer.Option(..., help="Fichier CSV à écrire")) -> None:
    """Écrit les lieux qualifiés au format national des lieux de médiation numérique."""
    from api.cli import run_in_transaction
    from api.routers.public import lieux_csv as to_csv
    from kit.clock import utcnow
    from pass_ import sites

    async def work(session: Any) -> str:
        return to_csv(await sites.standard_rows(session, now=utcnow()))

    out.write_text(run_in_transaction(work), encoding="utf-8")
    typer.echo(f"Lieux écrits dans {out}.")


def open_data(out: Path = typer.Option(..., help="Fichier CSV à écrire")) -> None:
    """Écrit les encaissements par mois × commune × démarche × service (secret statistique
    appliqué, Licence Ouverte 2.0)."""
    from api.cli import run_in_transaction
    from pass_ import open_data as od

    out.write_text("\ufeff" + run_in_transaction(od.redemptions_csv), encoding="utf-8")
    typer.echo(f"Données ouvertes écrites dans {out}.")
