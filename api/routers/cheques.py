"""Checking a cheque without redeeming it: `GET /api/v1/cheques/{code}` (DESIGN.md §7)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import SessionDep, SiteMediator
from api.ratelimit import enforce
from kit.clock import utcnow
from pass_ import redemption as service
from pass_.redemption_schemas import MAX_CODE_LENGTH, ChequeCheck

router = APIRouter(prefix="/api/v1", tags=["encaissements"])


@router.get(
    "/cheques/{code:path}",
    response_model=ChequeCheck,
    responses={
        403: {"description": "site_not_qualified"},
        404: {"description": "cheque_not_found"},
        422: {"description": "invalid_token, invalid_serial, serial_check_failed"},
        429: {"description": "rate_limited (Retry-After)"},
    },
)
async def check_cheque(
    code: str, request: Request, principal: SiteMediator, session: SessionDep
) -> ChequeCheck:
    """Vérifie un chèque (code saisi ou QR) sans l'encaisser : encaissable ici aujourd'hui ?"""
    enforce(request, principal)
    return await service.check_cheque(
        session,
        keyring=request.app.state.keyring,
        site_id=principal.organisation_id,
        # The path takes anything (slashes included) so junk gets the code's own error.
        code=code[: MAX_CODE_LENGTH + 1],
        now=utcnow(),
    )
