"""`passnum close-batch`, `expire`, `collect` (alias `pay`), `sepa`, `record-transfer` and
`close-programme`: clearing from the command line, through the same service functions as the
API."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer

from kit.clock import first_of_month_cutoff, paris_today, utcnow
from kit.errors import DomainError
from kit.money import format_eur
from kit.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("close-batch")(close_batch)
    app.command("expire")(expire)
    app.command("collect")(collect)
    app.command("pay", help="Alias de `collect`.")(collect)
    app.command("sepa")(sepa)
    app.command("record-transfer")(record_transfer)
    app.command("close-programme")(close_programme)
    app.command("record-batch-transfers")(record_batch_transfers)


def _fail(error: DomainError) -> typer.Exit:
    typer.echo(f"Refusé ({error.code}) : {error.message}", err=True)
    return typer.Exit(1)


def parse_cutoff(text: str | None) -> datetime | date:
    """AAAA-MM-JJ (00:00 in Paris that day) or an ISO 8601 instant; none: the first of this
    month, 00:00 Paris."""
    if not text:
        return first_of_month_cutoff(utcnow())
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter("date attendue : AAAA-MM-JJ ou AAAA-MM-JJTHH:MM") from exc


def parse_day(text: str, option: str) -> date:
    """AAAA-MM-JJ within the service's bounds (kit.clock.check_day)."""
    from kit.clock import check_day

    try:
        return check_day(date.fromisoformat(text))
    except DomainError as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from exc
    except ValueError as exc:
        raise typer.BadParameter("date attendue : AAAA-MM-JJ", param_hint=option) from exc


def close_batch(
    cutoff: str = typer.Option(None, help="Date d'arrêté (AAAA-MM-JJ, 00:00 heure de Paris) ; "
                               "par défaut le 1er du mois courant"),
    preview: bool = typer.Option(False, "--apercu", help="Affiche ce que le lot prendrait, "
                                 "sans rien clore"),
) -> None:
    """Arrête un lot de compensation : tous les encaissements antérieurs non encore compensés.
    Refuse un lot vide et une date antérieure à celle du dernier lot."""
    from sqlalchemy import text

    from api.cli import run_in_transaction
    from api.invoicing import invoice_terms
    from clearing.batches import close_batch as close
    from clearing.batches import preview_batch

    when = parse_cutoff(cutoff)
    if preview:
        try:
            seen = run_in_transaction(lambda s: preview_batch(s, cutoff=when, now=utcnow()))
        except DomainError as error:
            raise _fail(error) from error
        if seen.existing_batch_id:
            typer.echo(f"Lot n° {seen.existing_batch_id} déjà arrêté au "
                       f"{seen.cutoff.isoformat()} : rien ne changerait.")
        else:
            typer.echo(f"Aperçu au {seen.cutoff.isoformat()} : {seen.redemption_count} "
                       f"encaissement(s), {format_eur(seen.gross_cents)}.")
        return

    async def work(session: Any) -> tuple[Any, bool, int]:
        batch, created = await close(session, cutoff=when, now=utcnow(),
                                     invoice_terms=invoice_terms(get_settings()))
        statements = await session.scalar(
            text("SELECT count(*) FROM statement WHERE batch_id = :b"), {"b": batch.id})
        return batch, created, statements

    try:
        batch, created, count = run_in_transaction(work)
    except DomainError as error:
        raise _fail(error) from error
    what = "Lot arrêté" if created else "Lot déjà arrêté à cette date (inchangé)"
    typer.echo(f"{what} : n° {batch.id} au {batch.cutoff.isoformat()}, "
               f"{batch.redemption_count} encaissement(s), {format_eur(batch.gross_cents)}, "
               f"{count} relevé(s).")


def expire(
    today: str = typer.Option(None, help="Jour (AAAA-MM-JJ) ; par défaut aujourd'hui à Paris, "
                              "jamais plus tard, au plus 7 jours en arrière"),
    confirm: bool = typer.Option(False, "--confirmer", help="Confirme une expiration qui "
                                 "toucherait une part importante des chèques actifs"),
) -> None:
    """Expire les chèques dont la date limite est passée et émet les avoirs des programmes finis."""
    from api.cli import run_in_transaction
    from clearing.expiry import operator_expiry

    day = parse_day(today, "--today") if today else paris_today()
    share = get_settings().expiry_confirm_share_percent
    try:
        run = run_in_transaction(lambda session: operator_expiry(
            session, today=day, now=utcnow(), confirm=confirm, confirm_share_percent=share))
    except DomainError as error:
        if error.code == "expiry_confirmation_required":
            typer.echo(f"{error.message} Relancez avec --confirmer.", err=True)
            raise typer.Exit(1) from error
        raise _fail(error) from error
    typer.echo(f"{run.cheques} chèque(s) expiré(s) ({format_eur(run.value_cents)}) au "
               f"{day.isoformat()}.")
    for closed in run.closed:
        typer.echo(f"Programme {closed.programme_id} clos : {len(closed.credit_note_ids)} "
                   f"avoir(s), {format_eur(closed.unused_cents)}.")
    for programme_id in run.waiting:
        typer.echo(f"Programme {programme_id} terminé mais des encaissements attendent un lot.")


def collect(batch: int = typer.Option(None, help="Seulement ce lot")) -> None:
    """Crée les prélèvements Stripe des relevés financeurs impayés (un par relevé)."""
    from api.cli import run_with_sessionmaker
    from api.routers.clearing import stripe_gateway
    from clearing import payments

    settings = get_settings()

    async def work(sessionmaker: Any) -> list[tuple[int, str]]:
        gateway = stripe_gateway(settings)
        try:
            return await payments.collect(sessionmaker, gateway, batch_id=batch)
        finally:
            await gateway.aclose()

    try:
        done = run_with_sessionmaker(work)
    except DomainError as error:
        raise _fail(error) from error
    for statement_id, intent_id in done:
        typer.echo(f"Relevé {statement_id} : prélèvement {intent_id}")
    typer.echo(f"{len(done)} prélèvement(s) demandé(s).")


def sepa(batch: int = typer.Option(..., help="Numéro du lot"),
         out: Path = typer.Option(..., help="Fichier XML à écrire")) -> None:
    """Écrit le fichier de virements SEPA (pain.001.001.03) payant les lieux du lot."""
    from api.cli import run_in_transaction
    from api.sepa_download import operator_account
    from clearing import payments

    settings = get_settings()

    async def work(session: Any) -> Any:
        return await payments.batch_sepa_file(session, batch_id=batch,
                                              debtor=operator_account(settings),
                                              today=paris_today(), now=utcnow())

    try:
        built = run_in_transaction(work)
    except DomainError as error:
        raise _fail(error) from error
    for held in built.held:
        typer.echo(f"Suspendu : relevé {held.transfer.statement_id} "
                   f"({held.transfer.creditor.name}) — {held.reason}", err=True)
    if built.xml is None:
        typer.echo("Aucun virement à émettre.", err=True)
        raise typer.Exit(1)
    out.write_bytes(built.xml)
    typer.echo(f"{built.count} virement(s), {format_eur(built.total_cents)} : {out}")


def record_transfer(
    statement: int = typer.Option(..., help="Numéro du relevé"),
    reference: str = typer.Option(..., help="Référence du virement"),
    amount: int = typer.Option(None, help="Montant en centimes (par défaut le net du relevé)"),
    received_on: str = typer.Option(None, help="Date (AAAA-MM-JJ), par défaut aujourd'hui"),
) -> None:
    """Enregistre un virement : reçu d'un financeur, ou émis vers un lieu."""
    from sqlalchemy import text

    from api.cli import run_in_transaction
    from clearing import payments

    day = parse_day(received_on, "--received-on") if received_on else paris_today()

    async def work(session: Any) -> int:
        net = await session.scalar(text("SELECT net_cents FROM statement WHERE id = :id"),
                                   {"id": statement})
        cents = amount if amount is not None else (net or 0)
        await payments.record_transfer(session, statement_id=statement, reference=reference,
                                       amount_cents=cents, received_on=day, now=utcnow())
        return cents

    try:
        cents = run_in_transaction(work)
    except DomainError as error:
        raise _fail(error) from error
    typer.echo(f"Relevé {statement} payé : {format_eur(cents)}, référence {reference}.")


def close_programme(programme: int = typer.Option(..., help="Numéro du programme")) -> None:
    """Clôt un programme terminé : avoirs des engagements non consommés."""
    from api.cli import run_in_transaction
    from clearing.expiry import close_programme as close

    try:
        closed = run_in_transaction(lambda session: close(
            session, programme_id=programme, today=paris_today(), now=utcnow()))
    except DomainError as error:
        raise _fail(error) from error
    typer.echo(f"Programme {programme} clos : {len(closed.credit_note_ids)} avoir(s), "
               f"{format_eur(closed.unused_cents)}.")


def record_batch_transfers(
    batch: int = typer.Option(..., help="Numéro du lot"),
    sent_on: str = typer.Option(None, help="Date d'envoi du fichier SEPA (AAAA-MM-JJ), par "
                                "défaut aujourd'hui"),
) -> None:
    """Enregistre d'un coup tous les virements du fichier SEPA d'un lot (relevés de lieux
    ouverts ; les suspendus et les payés sont laissés)."""
    from api.cli import run_in_transaction
    from clearing.payments import record_batch_transfers as record

    day = parse_day(sent_on, "--sent-on") if sent_on else paris_today()
    try:
        done = run_in_transaction(lambda s: record(s, batch_id=batch, sent_on=day, now=utcnow()))
    except DomainError as error:
        raise _fail(error) from error
    for d in done:
        typer.echo(f"Relevé {d.statement_id} ({d.organisation_name}) : {format_eur(d.amount_cents)}"
                   f", {d.reference}")
    typer.echo(f"{len(done)} virement(s) enregistré(s), "
               f"{format_eur(sum(d.amount_cents for d in done))}.")
