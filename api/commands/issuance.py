"""`passnum pseudonymise` (GDPR retention of beneficiaries) and `passnum order` (a bulk order of
booklets from the command line, written to a print-ready PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kit.clock import utcnow
from kit.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("pseudonymise")(pseudonymise)
    app.command("order")(order)


def pseudonymise() -> None:
    """Efface les références des bénéficiaires au-delà de la durée de conservation."""
    from api.cli import run_in_transaction
    from pass_.beneficiaries import pseudonymise_beneficiaries

    retention_days = get_settings().beneficiary_retention_days

    async def work(session: Any) -> int:
        return await pseudonymise_beneficiaries(
            session, now=utcnow(), retention_days=retention_days
        )

    count = run_in_transaction(work)
    typer.echo(f"{count} bénéficiaire(s) pseudonymisé(s) (conservation : {retention_days} jours).")


def order(
    programme: int = typer.Option(..., help="Identifiant du programme"),
    issuer: int = typer.Option(..., help="Identifiant de la structure prescriptrice"),
    booklets: int = typer.Option(..., help="Nombre de carnets"),
    size: int = typer.Option(..., help="Chèques par carnet"),
    out: Path = typer.Option(..., help="Fichier PDF à écrire"),
    workers: int = typer.Option(2, help="Processus pour le calcul des QR codes"),
) -> None:
    """Commande des carnets imprimés à l'avance et écrit le PDF prêt à imprimer."""
    from sqlalchemy import select
    from sqlmodel import col

    from api.cli import run_with_sessionmaker
    from kit.db import transaction
    from kit.errors import DomainError
    from pass_ import booklet_print, issuance
    from pass_.enums import OrganisationKind, Role
    from pass_.models import Organisation
    from pass_.programmes import Actor
    from pass_.tokens import Keyring

    keyring = Keyring.load_or_create(get_settings().keys_dir)

    async def work(sessionmaker: Any) -> tuple[int, int, bytes]:
        # The order is committed first; the PDF is rendered afterwards from what was stored.
        async with transaction(sessionmaker) as session:
            operator_id = await session.scalar(
                select(col(Organisation.id))
                .where(col(Organisation.kind) == OrganisationKind.operator.value)
                .order_by(col(Organisation.id))
            )
            actor = Actor(user_id=None, organisation_id=operator_id or 0, role=Role.operator_admin)
            placed = await issuance.order_booklets(
                session,
                keyring=keyring,
                actor=actor,
                programme_id=programme,
                issuer_id=issuer,
                booklets=booklets,
                size=size,
                now=utcnow(),
            )
        async with sessionmaker() as session:
            content = await booklet_print.order_pdf(
                session,
                actor=actor,
                order_id=placed.id,
                workers=workers,
                public_url=get_settings().public_url,
            )
        return placed.id, placed.cheque_count, content

    try:
        order_id, cheques, content = run_with_sessionmaker(work)
    except DomainError as exc:
        typer.echo(f"Erreur : {exc.message}", err=True)
        raise typer.Exit(1) from None
    out.write_bytes(content)
    typer.echo(f"Commande {order_id} : {booklets} carnet(s), {cheques} chèques en stock → {out}")
