"""The operator's money pages: the audit (clearing, expiry and SEPA files join as they land)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.web import csrf
from api.web.session import OperatorPage
from api.web.templating import render
from clearing.audit import run_audit

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])


@router.get("/operateur/audit")
async def audit(
    request: Request, principal: OperatorPage, session: SessionDep, lancer: bool = False
) -> Response:
    result = await run_audit(session) if lancer else None
    return render(request, "operator/audit.html", {"title": "Audit", "result": result})
