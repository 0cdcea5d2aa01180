"""`passnum invoices`, `invoice-pdf`, `overdue`, `import-bank-statement`, `confirm-bank-line`,
`set-participation`, `chorus-deposit` and `chorus-follow`: what the operator does with
invoices and bank statements (issue 14), through the same service functions as the pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kit.clock import paris_today, utcnow
from kit.errors import DomainError
from kit.money import format_eur
from kit.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("invoices")(list_invoices)
    app.command("invoice-pdf")(invoice_pdf)
    app.command("overdue")(overdue)
    app.command("import-bank-statement")(import_bank_statement)
    app.command("confirm-bank-line")(confirm_bank_line)
    app.command("set-participation")(set_participation)
    app.command("chorus-deposit")(chorus_deposit)
    app.command("chorus-follow")(chorus_follow)


def _run(work: Any) -> Any:
    from api.cli import run_in_transaction

    try:
        return run_in_transaction(work)
    except DomainError as error:
        typer.echo(f"Refusé ({error.code}) : {error.message}", err=True)
        raise typer.Exit(1) from error


def _line(inv: Any) -> str:
    due = inv.due_date.strftime("%d/%m/%Y") if inv.due_date else "—"
    return (f"{inv.number}  {inv.type_label:<7} {inv.financer_name[:30]:<30} "
            f"{format_eur(inv.total_cents):>14}  échéance {due}  {inv.status_label}  "
            f"{inv.payment_reference}")


def list_invoices(batch: int = typer.Option(None, help="Lot de compensation"),
                  financer: int = typer.Option(None, help="Organisation du financeur")) -> None:
    """Liste les factures et avoirs (les plus récents d'abord)."""
    from clearing import invoices

    found = _run(lambda s: invoices.list_invoices(s, batch_id=batch, financer_id=financer))
    for inv in found:
        typer.echo(_line(inv))
    typer.echo(f"{len(found)} facture(s).")


def invoice_pdf(number: str = typer.Argument(..., help="N° (PN-2026-000123) ou identifiant"),
                out: Path = typer.Option(..., "--out", help="Fichier PDF à écrire")) -> None:
    """Écrit la facture Factur-X (PDF/A-3) — pour un dépôt manuel sur Chorus Pro."""
    from sqlalchemy import text

    from clearing import invoices
    from clearing.invoices_facturx import facturx_pdf

    async def work(session: Any) -> tuple[str, bytes]:
        invoice_id = int(number) if number.isdigit() else (await session.execute(text(
            "SELECT id FROM invoice WHERE number = :n"), {"n": number})).scalar()
        if invoice_id is None:
            raise invoices.InvoiceNotFound(number=number)
        found = await invoices.get_invoice(session, invoice_id)
        return found.number, facturx_pdf(found, await invoices.cheque_rows(session, found))

    name, pdf = _run(work)
    out.write_bytes(pdf)
    typer.echo(f"Facture {name} écrite dans {out} ({len(pdf)} octets).")


def overdue() -> None:
    """Factures échues non payées, avec les jours de retard."""
    from clearing import invoices

    today = paris_today()
    found = _run(lambda s: invoices.list_invoices(s, overdue_on=today))
    for inv in found:
        typer.echo(f"{_line(inv)}  — {inv.days_late(today)} jour(s) de retard")
    typer.echo(f"{len(found)} facture(s) en retard.")


def import_bank_statement(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                      help="Relevé camt.053 ou camt.054")) -> None:
    """Importe un relevé bancaire et rapproche ses virements des factures (sans effet la
    seconde fois)."""
    from clearing import bank

    data = file.read_bytes()
    result = _run(lambda s: bank.import_statement(s, data, filename=file.name,
                                                  imported_by=None, now=utcnow()))
    if result.already_imported:
        typer.echo("Relevé déjà importé : rien n'a changé.")
        return
    typer.echo(f"{result.imported} virement(s) importé(s) : {result.matched} facture(s) "
               f"payée(s), {result.suggested} proposition(s) à confirmer, "
               f"{result.partial} partiel(s), {result.over} trop-perçu(s), "
               f"{result.duplicate} en double, {result.unmatched} non rapproché(s).")


def confirm_bank_line(line: int = typer.Argument(..., help="Ligne bancaire proposée")) -> None:
    """Confirme qu'un virement proposé (montant et IBAN du payeur) paie sa facture."""
    from clearing import bank

    invoice_id = _run(lambda s: bank.confirm_suggestion(s, bank_line_id=line, now=utcnow()))
    typer.echo(f"Ligne {line} rapprochée : facture {invoice_id} payée.")


def set_participation(
    programme: int = typer.Option(..., help="Programme"),
    financer: int = typer.Option(..., help="Organisation du financeur"),
    engagement: str = typer.Option(None, help="N° d'engagement (BT-13, 50 caractères)"),
    service_code: str = typer.Option(None, help="Code service Chorus Pro (BT-10)"),
    payment_method: str = typer.Option(None, help="transfer ou stripe_sepa"),
) -> None:
    """Références de facturation d'un financeur dans un programme."""
    from pydantic import ValidationError

    from pass_.participation import ParticipationUpdate, update_participation

    sent = {k: v for k, v in (("engagement_number", engagement), ("service_code", service_code),
                               ("payment_method", payment_method)) if v is not None}
    try:
        data = ParticipationUpdate.model_validate(sent)
    except ValidationError as exc:
        typer.echo(f"Refusé : {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from exc
    found = _run(lambda s: update_participation(s, programme_id=programme,
                                                organisation_id=financer, data=data))
    typer.echo(f"{found.organisation_name} : engagement {found.engagement_number or '—'}, "
               f"code service {found.service_code or '—'}, "
               f"paiement {found.payment_method or 'selon sa nature'}.")


def chorus_deposit(invoice: int = typer.Option(None, help="Une seule facture (identifiant)")
                   ) -> None:
    """Dépose sur Chorus Pro les factures des financeurs publics non encore déposées."""
    from api.invoicing import chorus_config
    from clearing import chorus

    config = chorus_config(get_settings())
    if invoice is not None:
        typer.echo(_run(lambda s: chorus.deposit_one(s, config, invoice)))
        return
    done = _run(lambda s: chorus.deposit_due(s, config))
    typer.echo(f"{len(done)} facture(s) déposée(s) : {', '.join(done) or '—'}.")


def chorus_follow() -> None:
    """Relève l'état des factures déposées sur Chorus Pro (jusqu'à « mise en paiement »)."""
    from api.invoicing import chorus_config
    from clearing import chorus

    seen = _run(lambda s: chorus.follow(s, chorus_config(get_settings())))
    for number, status in seen.items():
        typer.echo(f"{number} : {chorus.STATUS_LABELS.get(status, status)}")
    typer.echo(f"{len(seen)} facture(s) suivie(s).")
