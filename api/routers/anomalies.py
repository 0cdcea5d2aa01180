"""Anomaly alerts as JSON (issue 16): the operator reads all and closes them, a financer reads
those of its programmes, anyone else gets 403. The watch itself runs from `passnum watch`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import OperatorAdmin, SessionDep, require
from api.security import Principal
from clearing import anomaly_review
from clearing.anomaly_models import Anomaly
from kit.clock import utcnow
from pass_.enums import Role

router = APIRouter(prefix="/api/v1", tags=["alertes"])

AnomalyReader = Annotated[Principal, Depends(require(Role.operator_admin, Role.financer))]


class Evidence(BaseModel):
    redemption_ids: list[int]
    booklet_number: str | None = None


class AnomalyRead(BaseModel):
    id: int
    rule: str
    site_id: int | None
    programme_id: int | None
    opened_at: datetime
    status: str
    summary: str
    evidence: Evidence
    resolution_note: str | None = None
    resolved_at: datetime | None = None


class AnomalyResolve(BaseModel):
    note: str = Field(min_length=1, max_length=anomaly_review.MAX_NOTE, description="Pourquoi")


def read(a: Anomaly) -> AnomalyRead:
    ev: dict[str, Any] = a.evidence or {}
    return AnomalyRead(
        id=int(a.id),  # type: ignore[arg-type]
        rule=a.rule,
        site_id=a.site_id,
        programme_id=a.programme_id,
        opened_at=a.opened_at,
        status=a.status,
        summary=a.summary,
        evidence=Evidence(
            redemption_ids=[int(i) for i in ev.get("redemption_ids", [])],
            booklet_number=ev.get("booklet_number"),
        ),
        resolution_note=a.resolution_note,
        resolved_at=a.resolved_at,
    )


async def visible_programmes(session: SessionDep, principal: Principal) -> list[int] | None:
    """None for the operator (every alert); a financer's programmes otherwise."""
    if principal.role == Role.operator_admin:
        return None
    return await anomaly_review.financer_programme_ids(
        session, financer_id=principal.organisation_id
    )


@router.get("/anomalies", response_model=list[AnomalyRead])
async def list_anomalies(
    principal: AnomalyReader,
    session: SessionDep,
    status: Literal["open", "justified", "site_suspended", "all"] = Query("open"),
) -> list[AnomalyRead]:
    """Alertes de la surveillance, les plus récentes d'abord (opérateur : toutes ; financeur :
    celles de ses programmes)."""
    found = await anomaly_review.list_anomalies(
        session,
        status=None if status == "all" else status,
        programme_ids=await visible_programmes(session, principal),
    )
    return [read(a) for a in found]


@router.post(
    "/anomalies/{anomaly_id}/resolve",
    response_model=AnomalyRead,
    responses={404: {"description": "anomaly_not_found"}, 409: {"description": "anomaly_closed"}},
)
async def resolve(
    anomaly_id: int, data: AnomalyResolve, principal: OperatorAdmin, session: SessionDep
) -> AnomalyRead:
    """Marque l'alerte « justifiée », avec une note qui dit pourquoi."""
    done = await anomaly_review.resolve(
        session, anomaly_id=anomaly_id, note=data.note, user_id=principal.user_id, now=utcnow()
    )
    return read(done)


@router.post(
    "/anomalies/{anomaly_id}/suspend-site",
    response_model=AnomalyRead,
    responses={404: {"description": "anomaly_not_found"}, 409: {"description": "anomaly_closed"}},
)
async def suspend_site(
    anomaly_id: int, data: AnomalyResolve, principal: OperatorAdmin, session: SessionDep
) -> AnomalyRead:
    """Suspend le lieu de l'alerte (qualification « suspendu », réversible) et clôt l'alerte."""
    done = await anomaly_review.suspend_site(
        session, anomaly_id=anomaly_id, note=data.note, user_id=principal.user_id, now=utcnow()
    )
    return read(done)
