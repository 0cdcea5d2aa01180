"""End of validity in the pages: the alert issuers' agents and financers see (a partial,
`_validity_alert.html`, fed by `alerts_for`), and the operator's table of unused stock per
issuer (/operateur/stock); the same as JSON at GET /api/v1/validity/stock."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import CurrentUser, SessionDep
from api.security import Principal
from api.web.session import OperatorPage
from api.web.templating import render
from kit.clock import paris_today
from kit.errors import Forbidden
from pass_ import validity
from pass_.enums import Role

router = APIRouter()


async def alerts_for(request: Request, principal: Principal, session: Any) -> list[validity.Alert]:
    settings = request.app.state.settings
    return await validity.alerts(
        session,
        role=principal.role,
        organisation_id=principal.organisation_id,
        today=paris_today(),
        alert_days=settings.validity_alert_days,
        stop_days=settings.hand_out_stop_days,
    )


@router.get("/operateur/stock", include_in_schema=False)
async def stock_page(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    settings = request.app.state.settings
    lines = await validity.stock_report(session, today=paris_today())
    return render(
        request,
        "operator/stock.html",
        {
            "title": "Fin de validité : stock non utilisé",
            "lines": lines,
            "alert_days": settings.validity_alert_days,
            "stop_days": settings.hand_out_stop_days,
        },
    )


@router.get("/api/v1/validity/stock", tags=["programmes"])
async def stock_json(
    request: Request, principal: CurrentUser, session: SessionDep
) -> list[dict[str, Any]]:
    """Unused stock and handed-out unused cheques per programme and issuer, for programmes
    still valid: the operator sees all, an issuer its own, a financer its programmes'."""
    role = principal.role
    if role == Role.site_mediator:
        raise Forbidden("Votre rôle ne permet pas cette action.")
    lines = await validity.stock_report(
        session,
        today=paris_today(),
        issuer_id=principal.organisation_id if role == Role.issuer_agent else None,
        financer_id=principal.organisation_id if role == Role.financer else None,
    )
    stop = request.app.state.settings.hand_out_stop_days
    return [
        {
            "programme_id": s.programme_id,
            "programme": s.programme_name,
            "valid_until": s.valid_until.isoformat(),
            "days_left": s.days_left,
            "hand_out_until": validity.hand_out_deadline(s.valid_until, stop).isoformat(),
            "issuer_id": s.issuer_id,
            "issuer": s.issuer_name,
            "stock_booklets": s.stock_booklets,
            "stock_cheques": s.stock_cheques,
            "stock_value_cents": s.stock_value_cents,
            "unused_cheques": s.unused_cheques,
            "unused_value_cents": s.unused_value_cents,
        }
        for s in lines
    ]
