"""Pages of the anomaly watch (issue 16): the operator's alerts, to justify with a note or to
close by suspending the site, with each rule explained; a financer's alerts on its programmes.
The same service (clearing/anomalies.py) as GET/POST /api/v1/anomalies."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.anomaly_watch import thresholds
from api.deps import SessionDep
from api.security import Principal
from api.web import csrf
from api.web.session import FinancerPage, OperatorPage, redirect
from api.web.templating import render
from clearing import anomalies, anomaly_review
from kit.clock import utcnow
from kit.errors import DomainError

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

STATUS_CHOICES = [
    ("open", "À examiner"),
    ("justified", "Justifiées"),
    ("site_suspended", "Lieu suspendu"),
]
BASE = "/operateur/alertes"


async def _page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    *,
    template: str,
    status: str,
    programme_ids: list[int] | None,
    errors: dict[int, str] | None = None,
    notes: dict[int, str] | None = None,
    code: int = 200,
) -> Response:
    if status not in dict(STATUS_CHOICES):
        status = "open"
    found = await anomaly_review.list_anomalies(session, status=status, programme_ids=programme_ids)
    views = await anomaly_review.describe(session, found)
    rules = anomalies.explain_rules(thresholds(request.app.state.settings))
    return render(
        request,
        template,
        {
            "title": "Alertes",
            "views": views,
            "rules": rules,
            "status": status,
            "status_choices": STATUS_CHOICES,
            "status_labels": anomalies.STATUS_LABELS,
            "errors": errors or {},
            "notes": notes or {},
        },
        status_code=code,
    )


@router.get("/operateur/alertes")
async def operator_alerts(
    request: Request, principal: OperatorPage, session: SessionDep, statut: str = "open"
) -> Response:
    return await _page(
        request,
        principal,
        session,
        template="operator/anomalies.html",
        status=statut,
        programme_ids=None,
    )


@router.post("/operateur/alertes/surveiller")
async def run_watch(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    run = await anomalies.watch(
        session, now=utcnow(), thresholds=thresholds(request.app.state.settings)
    )
    n = len(run.opened)
    text = (
        f"Surveillance lancée : {n} nouvelle{'s' if n > 1 else ''} alerte{'s' if n > 1 else ''}."
        if n
        else "Surveillance lancée : aucune nouvelle alerte."
    )
    return redirect(request, BASE, flash=("success", text))


@router.post("/operateur/alertes/{anomaly_id}/{action}")
async def close_alert(
    anomaly_id: int, action: str, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    form = await request.form()
    note = str(form.get("note") or "")
    if action not in ("justifier", "suspendre"):
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    try:
        if action == "suspendre" and form.get("confirmation") != "oui":
            raise anomaly_review.NoteRequired(
                "Cochez la case pour confirmer la suspension du lieu.", code="confirmation_required"
            )
        async with session.begin_nested():  # a refusal undoes only this
            if action == "justifier":
                await anomaly_review.resolve(
                    session,
                    anomaly_id=anomaly_id,
                    note=note,
                    user_id=principal.user_id,
                    now=utcnow(),
                )
            else:
                await anomaly_review.suspend_site(
                    session,
                    anomaly_id=anomaly_id,
                    note=note,
                    user_id=principal.user_id,
                    now=utcnow(),
                )
    except DomainError as exc:
        return await _page(
            request,
            principal,
            session,
            template="operator/anomalies.html",
            status="open",
            programme_ids=None,
            errors={anomaly_id: exc.message},
            notes={anomaly_id: note},
            code=400,
        )
    message = (
        "Alerte marquée justifiée."
        if action == "justifier"
        else "Lieu suspendu : il ne peut plus encaisser tant qu'il n'est pas requalifié "
        "(page Qualification des lieux)."
    )
    return redirect(request, BASE, flash=("success", message))


@router.get("/financeur/alertes")
async def financer_alerts(
    request: Request, principal: FinancerPage, session: SessionDep, statut: str = "open"
) -> Response:
    programmes = await anomaly_review.financer_programme_ids(
        session, financer_id=principal.organisation_id
    )
    return await _page(
        request,
        principal,
        session,
        template="financer/anomalies.html",
        status=statut,
        programme_ids=programmes,
    )
