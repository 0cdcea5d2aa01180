"""The operator's money pages: closing a clearing batch, its statements and SEPA file,
recording bank transfers, the expiry run, and the audit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep, SettingsDep
from api.invoicing import invoice_terms
from api.sepa_download import batch_sepa_download
from api.web import csrf
from api.web.forms import ParseError, blank_to_none, parse_euros
from api.web.session import OperatorPage, redirect
from api.web.statements import STATUS_BADGE, status_text
from api.web.templating import datetime_fr, render
from clearing import payments, statements
from clearing.audit import run_audit, run_incremental_audit
from clearing.batches import BatchPreview, close_batch, preview_batch
from clearing.errors import BatchEmpty
from clearing.expiry import operator_expiry, preview_expiry
from kit.clock import check_day, first_of_month_cutoff, paris_today, utcnow
from kit.errors import DomainError
from kit.money import format_eur

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

CUTOFF_CHOICES = [
    ("debut_mois", "Au 1er du mois en cours, 0 h (heure de Paris)"),
    ("maintenant", "Maintenant : tous les encaissements faits jusqu'à cet instant"),
    ("date", "À une date précise (0 h, heure de Paris)"),
]


async def _page(
    request: Request, session: SessionDep, *, values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None, status: int = 200,
    preview: BatchPreview | None = None,
) -> Response:  # fmt: skip
    return render(
        request,
        "operator/clearing.html",
        {
            "title": "Compensation",
            "batches": await statements.list_batches(session),
            "choices": CUTOFF_CHOICES,
            "default_cutoff": datetime_fr(first_of_month_cutoff()),
            "values": values or {"choix": "debut_mois"},
            "errors": errors or {},
            "preview": preview,
        },
        status_code=status,
    )


def _chosen_cutoff(values: dict[str, str], now: datetime) -> datetime | date:
    """The cutoff the form names (ParseError when the precise date is missing or invalid)."""
    choice = values.get("choix", "")
    if choice == "maintenant":
        return now
    if choice == "date":
        try:
            return check_day(date.fromisoformat(values.get("date", "")))
        except DomainError as exc:
            raise ParseError(exc.message) from exc
        except ValueError as exc:
            raise ParseError("Indiquez la date d'arrêté (jour, mois, année).") from exc
    return first_of_month_cutoff(now)


@router.get("/operateur/compensation")
async def clearing(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    return await _page(request, session)


@router.post("/operateur/compensation")
async def close(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    """Two steps: the chosen cutoff first gives a preview (« 5 encaissements, 50,00 € »);
    only the preview's « Clore le lot » (etape=clore, with the exact instant previewed)
    closes. An empty batch is refused at both steps."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    choice = values.get("choix", "")
    now = utcnow()
    cutoff: datetime | date
    if values.get("etape") == "clore":
        try:
            cutoff = datetime.fromisoformat(values.get("arrete", ""))
        except ValueError:
            errors = {"_form": "L'aperçu a expiré : choisissez à nouveau la date d'arrêté."}
            return await _page(request, session, values=values, errors=errors, status=400)
    else:
        try:
            cutoff = _chosen_cutoff(values, now)
        except ParseError as exc:
            errors = {"date": str(exc)}
            return await _page(request, session, values=values, errors=errors, status=400)
        try:
            seen = await preview_batch(session, cutoff=cutoff, now=now)
            if seen.existing_batch_id is None and seen.redemption_count == 0:
                raise BatchEmpty()
        except DomainError as exc:
            errors = {"date" if choice == "date" else "_form": exc.message}
            return await _page(request, session, values=values, errors=errors, status=400)
        return await _page(request, session, values=values, preview=seen)
    try:
        async with session.begin_nested():  # a refusal undoes only this
            batch, created = await close_batch(
                session,
                cutoff=cutoff,
                now=now,
                closed_by=principal.user_id,  # type: ignore[arg-type]
                invoice_terms=invoice_terms(request.app.state.settings),
            )
    except DomainError as exc:
        errors = {"date" if choice == "date" else "_form": exc.message}
        return await _page(request, session, values=values, errors=errors, status=400)
    what = (
        f"Lot n° {batch.id} clos au {datetime_fr(batch.cutoff)} : "
        f"{batch.redemption_count} encaissement(s), {format_eur(batch.gross_cents)}."
        if created
        else f"Le lot n° {batch.id} arrêté au {datetime_fr(batch.cutoff)} existait déjà : "
        "rien n'a changé."
    )
    return redirect(request, f"/operateur/compensation/lots/{batch.id}", flash=("success", what))


@router.get("/operateur/compensation/lots/{batch_id}")
async def batch(
    batch_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    try:
        detail = await statements.batch_detail(session, batch_id)
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    return render(
        request,
        "operator/batch.html",
        {
            "title": f"Lot de compensation n° {detail.id}",
            "b": detail,
            "today_iso": paris_today().isoformat(),
            "status_text": status_text,
            "status_badge": STATUS_BADGE,
        },
    )


async def _statement_page(
    request: Request,
    session: SessionDep,
    statement_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    try:
        found = await statements.get_statement(session, statement_id, organisation_id=None)
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    base = f"/operateur/compensation/lots/{found.batch_id}" if found.batch_id else "/operateur"
    # Issue 16 item 10: the trail names the batch, not « Relevés » (the operator has no list).
    trail = [("/operateur", "Accueil"), ("/operateur/compensation", "Compensation")]
    if found.batch_id:
        trail.append((base, f"Lot n° {found.batch_id}"))
    trail.append(("", f"Relevé n° {found.id}"))
    return render(
        request,
        "statements/detail.html",
        {
            "title": f"Relevé n° {found.id}",
            "s": found,
            "base": base,
            "trail": trail,
            "status_text": status_text,
            "status_badge": STATUS_BADGE,
            "record_transfer": found.kind != "credit_note" and found.status != "paid",
            "values": values or {"received_on": paris_today().isoformat()},
            "errors": errors or {},
        },
        status_code=status,
    )


@router.get("/operateur/releves/{statement_id}")
async def statement(
    statement_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    return await _statement_page(request, session, statement_id)


@router.post("/operateur/releves/{statement_id}/virement")
async def transfer(
    statement_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    """A bank transfer received from a financer, or sent to a site, recorded by its reference."""
    values = blank_to_none(await request.form(), "reference", "amount", "received_on")
    errors: dict[str, str] = {}
    if not values["reference"]:
        errors["reference"] = "Indiquez la référence du virement (relevé bancaire)."
    try:
        amount = parse_euros(values["amount"])
        if amount is None:
            errors["amount"] = "Indiquez le montant du virement."
    except ParseError as exc:
        errors["amount"], amount = str(exc), None
    try:
        received_on = check_day(date.fromisoformat(values["received_on"] or ""))
    except ValueError:  # DateOutOfRange is a ValueError too
        errors["received_on"] = "Indiquez la date du virement."
    if not errors:
        try:
            async with session.begin_nested():  # a refusal undoes only this
                await payments.record_transfer(
                    session,
                    statement_id=statement_id,
                    reference=values["reference"],
                    amount_cents=amount,  # type: ignore[arg-type]
                    received_on=received_on,
                    now=utcnow(),
                )
        except DomainError as exc:
            errors = {"amount" if exc.code == "transfer_amount_mismatch" else "_form": exc.message}
        else:
            return redirect(
                request,
                f"/operateur/releves/{statement_id}",
                flash=("success", f"Virement {values['reference']} enregistré : relevé payé."),
            )
    return await _statement_page(
        request, session, statement_id, values=values, errors=errors, status=400
    )


@router.post("/operateur/compensation/lots/{batch_id}/sepa")
async def sepa(
    batch_id: int,
    request: Request,
    principal: OperatorPage,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The pain.001 file of the batch, exactly as the API makes it (same function); when there
    is nothing to pay, the page says so instead of an error body."""
    try:
        async with session.begin_nested():  # a refusal undoes only this
            return await batch_sepa_download(session, settings, batch_id=batch_id)
    except DomainError as exc:
        level = "info" if exc.code == "nothing_to_transfer" else "error"
        return redirect(
            request, f"/operateur/compensation/lots/{batch_id}", flash=(level, exc.message)
        )


@router.post("/operateur/compensation/lots/{batch_id}/virements")
async def batch_transfers(
    batch_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    """Every transfer of the batch's SEPA file recorded at once, after an explicit
    confirmation that the file went to the bank (it cannot be undone)."""
    form = await request.form()
    url = f"/operateur/compensation/lots/{batch_id}"
    if form.get("confirmer") != "oui":
        return redirect(request, url, flash=(
            "error", "Cochez la confirmation : le fichier SEPA de ce lot a bien été transmis "
                     "à la banque."))
    try:
        sent_on = check_day(date.fromisoformat(str(form.get("envoye_le") or "")))
    except (DomainError, ValueError):
        return redirect(request, url, flash=(
            "error", "Indiquez la date d'envoi du fichier SEPA (jour, mois, année)."))
    try:
        async with session.begin_nested():  # a refusal undoes only this
            done = await payments.record_batch_transfers(
                session, batch_id=batch_id, sent_on=sent_on, now=utcnow())
    except DomainError as exc:
        level = "info" if exc.code == "nothing_to_transfer" else "error"
        return redirect(request, url, flash=(level, exc.message))
    total = format_eur(sum(d.amount_cents for d in done))
    return redirect(request, url, flash=(
        "success", f"{len(done)} virement(s) enregistré(s), {total} : relevés réglés."))


async def _expiry_page(request: Request, session: SessionDep, *, run: Any = None,
                       error: str | None = None, status: int = 200) -> Response:
    settings = request.app.state.settings
    preview = None
    try:
        async with session.begin_nested():
            preview = await preview_expiry(
                session, today=paris_today(), now=utcnow(),
                confirm_share_percent=settings.expiry_confirm_share_percent)
    except DomainError:
        pass
    return render(request, "operator/expiry.html",
                  {"title": "Expiration", "run": run, "preview": preview, "error": error},
                  status_code=status)


@router.get("/operateur/expiration")
async def expiry_page(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    return await _expiry_page(request, session)


@router.post("/operateur/expiration")
async def expiry_run(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    """Today's expiry; beyond the configured share of live cheques the page asked for the
    confirmation box, and refuses without it."""
    form = await request.form()
    settings = request.app.state.settings
    try:
        async with session.begin_nested():
            run = await operator_expiry(
                session, today=paris_today(), now=utcnow(), confirm=form.get("confirmer") == "oui",
                confirm_share_percent=settings.expiry_confirm_share_percent)
    except DomainError as exc:
        return await _expiry_page(request, session, error=exc.message, status=400)
    return await _expiry_page(request, session, run=run)


@router.get("/operateur/audit")
async def audit(
    request: Request, principal: OperatorPage, session: SessionDep, lancer: bool = False,
    depuis_controle: bool = False,
) -> Response:
    result = None
    if lancer:
        result = await (run_incremental_audit if depuis_controle else run_audit)(session)
    return render(request, "operator/audit.html", {"title": "Audit", "result": result})
