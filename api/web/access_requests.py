"""The operator's page of access requests left by ProConnect sign-ins (pass_/sso.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.web import csrf
from api.web.session import OperatorPage, redirect
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import sso

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])


@router.get("/operateur/demandes-acces")
async def requests_page(request: Request, principal: OperatorPage,
                        session: SessionDep) -> Response:
    return render(request, "operator/access_requests.html", {
        "title": "Demandes d'accès", "requests": await sso.open_access_requests(session)})


@router.post("/operateur/demandes-acces/{request_id}/traitee")
async def handled(request_id: int, request: Request, principal: OperatorPage,
                  session: SessionDep) -> Response:
    try:
        async with session.begin_nested():
            await sso.mark_handled(session, request_id=request_id, now=utcnow())
    except DomainError as exc:
        return redirect(request, "/operateur/demandes-acces", flash=("error", exc.message))
    return redirect(request, "/operateur/demandes-acces",
                    flash=("success", "Demande marquée comme traitée."))
