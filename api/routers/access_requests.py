"""Access requests left by ProConnect sign-ins that matched no account (pass_/sso.py): the
operator's list."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import OperatorAdmin, SessionDep
from pass_ import sso

router = APIRouter(prefix="/api/v1", tags=["comptes"])


class AccessRequestRead(BaseModel):
    id: int
    siret: str
    email: str
    reason: str
    created_at: datetime
    organisation_name: str | None


@router.get("/access-requests", response_model=list[AccessRequestRead])
async def list_access_requests(_: OperatorAdmin, session: SessionDep) -> list[AccessRequestRead]:
    """Open requests, oldest first: `unknown_siret` (no organisation with that SIRET) or
    `unknown_account` (the organisation exists, no account for that e-mail)."""
    return [AccessRequestRead.model_validate(r) for r in await sso.open_access_requests(session)]
