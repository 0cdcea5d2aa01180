"""Invoice pages (issue 14): the financer's invoices with how to pay them and their Factur-X
PDF; the operator's invoices, overdue list with days late, bank-statement import and the
matches to confirm, Chorus Pro deposits, and the buyer references of each participation with a
warning when a public financer lacks what its Chorus Pro structure requires."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.invoicing import chorus_config
from api.web import csrf
from api.web.session import FinancerPage, OperatorPage, redirect
from api.web.templating import render
from clearing import bank, chorus, invoices
from kit.clock import paris_today, utcnow
from kit.errors import DomainError
from pass_.participation import ParticipationUpdate, list_participations, update_participation

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

STATUS_BADGE = {"issued": "new", "deposited": "info", "in_payment": "info", "paid": "success"}


def _context() -> dict[str, object]:
    return {"status_badge": STATUS_BADGE, "method_labels": invoices.METHOD_LABELS,
            "line_labels": bank.BANK_LINE_LABELS, "today": paris_today()}


@router.get("/financeur/factures")
async def financer_invoices(request: Request, principal: FinancerPage,
                            session: SessionDep) -> Response:
    found = await invoices.list_invoices(session, financer_id=principal.organisation_id)
    return render(request, "invoices/financer.html",
                  {"title": "Factures", "invoices": found, **_context()})


async def _operator_page(request: Request, session: SessionDep, *, errors: dict[str, str]
                         | None = None, status: int = 200) -> Response:
    today = paris_today()
    participations = await list_participations(session)
    return render(request, "invoices/operator.html", {
        "title": "Factures et encaissements",
        "overdue": await invoices.list_invoices(session, overdue_on=today),
        "invoices": await invoices.list_invoices(session, limit=100),
        "pending": await bank.list_lines(session, pending_only=True),
        "warnings": [p for p in participations if p.missing],
        "chorus_enabled": chorus_config(request.app.state.settings) is not None,
        "errors": errors or {}, **_context()}, status_code=status)


@router.get("/operateur/factures")
async def operator_invoices(request: Request, _: OperatorPage,
                            session: SessionDep) -> Response:
    return await _operator_page(request, session)


@router.post("/operateur/factures/releve-bancaire")
async def import_bank_statement(request: Request, principal: OperatorPage,
                                session: SessionDep) -> Response:
    form = await request.form()
    upload = form.get("releve")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return await _operator_page(request, session, status=400, errors={
            "releve": "Choisissez le fichier du relevé bancaire (camt.053 ou camt.054)."})
    data = await upload.read(bank.MAX_FILE_BYTES + 1)
    try:
        async with session.begin_nested():
            result = await bank.import_statement(session, data, filename=upload.filename,
                                                 imported_by=principal.user_id, now=utcnow())
    except DomainError as exc:
        return await _operator_page(request, session, status=400,
                                    errors={"releve": exc.message})
    if result.already_imported:
        what = "Ce relevé avait déjà été importé : rien n'a changé."
    else:
        waiting = result.suggested + result.partial + result.over + result.duplicate
        what = (f"Relevé importé : {result.imported} crédit(s), {result.matched} facture(s) "
                f"payée(s), {waiting} à vérifier, {result.unmatched} non rapproché(s).")
    return redirect(request, "/operateur/factures", flash=("success", what))


@router.post("/operateur/factures/lignes/{line_id}/confirmer")
async def confirm_line(line_id: int, request: Request, _: OperatorPage,
                       session: SessionDep) -> Response:
    try:
        async with session.begin_nested():
            invoice_id = await bank.confirm_suggestion(session, bank_line_id=line_id,
                                                       now=utcnow())
    except DomainError as exc:
        return redirect(request, "/operateur/factures", flash=("error", exc.message))
    invoice = await invoices.get_invoice(session, invoice_id)
    return redirect(request, "/operateur/factures",
                    flash=("success", f"Facture {invoice.number} payée par ce virement."))


@router.post("/operateur/factures/{invoice_id}/chorus")
async def deposit(invoice_id: int, request: Request, _: OperatorPage,
                  session: SessionDep) -> Response:
    """Deposit one invoice on Chorus Pro (when configured), then follow its status. A deposit
    cannot be withdrawn: the first click shows what will be sent and asks to confirm."""
    form = await request.form()
    if form.get("confirme") != "oui":
        try:
            invoice = await invoices.get_invoice(session, invoice_id)
        except DomainError:
            return render(request, "not_found.html", {"title": "Page introuvable"},
                          status_code=404)
        return render(request, "invoices/confirm_deposit.html",
                      {"title": f"Déposer la facture {invoice.number}", "inv": invoice})
    try:
        result = await chorus.deposit_one(session, chorus_config(request.app.state.settings),
                                         invoice_id)
    except DomainError as exc:
        return redirect(request, "/operateur/factures", flash=("error", exc.message))
    return redirect(request, "/operateur/factures", flash=("success", result))


@router.get("/operateur/programmes/{programme_id}/financeurs")
async def participations(programme_id: int, request: Request, _: OperatorPage,
                         session: SessionDep) -> Response:
    found = await list_participations(session, programme_id=programme_id)
    if not found:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    return render(request, "invoices/participations.html", {
        "title": "Références de facturation des financeurs", "programme_id": programme_id,
        "participations": found, **_context()})


@router.post("/operateur/programmes/{programme_id}/financeurs/{organisation_id}")
async def edit_participation(programme_id: int, organisation_id: int, request: Request,
                             _: OperatorPage, session: SessionDep) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    back = f"/operateur/programmes/{programme_id}/financeurs"
    try:
        data = ParticipationUpdate.model_validate({
            "engagement_number": values.get("engagement_number", ""),
            "service_code": values.get("service_code", ""),
            "payment_method": values.get("payment_method") or None,
            "requires_engagement": "requires_engagement" in values,
            "requires_service_code": "requires_service_code" in values})
        async with session.begin_nested():
            found = await update_participation(session, programme_id=programme_id,
                                               organisation_id=organisation_id, data=data)
    except (DomainError, ValueError) as exc:
        message = getattr(exc, "message", None) or (
            "Le numéro d'engagement fait au plus 50 caractères, le code service au plus 100.")
        return redirect(request, back, flash=("error", message))
    return redirect(request, back, flash=(
        "success", f"Références de {found.organisation_name} enregistrées : elles figureront "
                   "sur ses prochaines factures."))
