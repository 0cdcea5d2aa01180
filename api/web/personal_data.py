"""Data protection pages: the public « Données personnelles » notice, and the issuer agent's
export and erasure of a beneficiary's record on request (pass_/personal_data.py)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.web import csrf
from api.web.session import AgentPage, redirect
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import personal_data

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])


@router.get("/donnees-personnelles")
async def notice(request: Request) -> Response:
    settings = request.app.state.settings
    return render(request, "personal_data.html", {
        "title": "Données personnelles",
        "retention_years": round(settings.beneficiary_retention_days / 365),
        "retention_days": settings.beneficiary_retention_days,
    })


@router.get("/prescripteur/beneficiaires/{beneficiary_id}/donnees.json")
async def export(beneficiary_id: int, request: Request, principal: AgentPage,
                 session: SessionDep) -> Response:
    try:
        data = await personal_data.export_beneficiary(
            session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id)
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
        headers={"Content-Disposition":
                 f'attachment; filename="beneficiaire-{beneficiary_id}.json"'})


@router.post("/prescripteur/beneficiaires/{beneficiary_id}/effacer")
async def erase(beneficiary_id: int, request: Request, principal: AgentPage,
                session: SessionDep) -> Response:
    url = f"/prescripteur/beneficiaires/{beneficiary_id}"
    form = await request.form()
    if form.get("confirmer") != "oui":
        return redirect(request, url, flash=(
            "error", "Cochez la confirmation : l'effacement est définitif."))
    try:
        async with session.begin_nested():
            await personal_data.erase_beneficiary(
                session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id,
                now=utcnow())
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    return redirect(request, url, flash=(
        "success", "Données effacées : la référence, l'année de naissance et la commune ne sont "
                   "plus conservées. Les chèques et les montants restent."))
