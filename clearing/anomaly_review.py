"""Reading and closing the anomaly watch's alerts (clearing/anomalies.py opens them): the
operator marks an alert « justifiée » with a note, or suspends its site through the
qualification service (pass_.accounts.set_qualification); financers read their programmes'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from clearing.anomalies import organisation_names
from clearing.anomaly_models import ANOMALY_STATUSES, Anomaly
from kit.errors import Conflict, InvalidInput, NotFound
from pass_ import accounts
from pass_.enums import Qualification

MAX_NOTE = 2000


class AnomalyNotFound(NotFound):
    code = "anomaly_not_found"
    message = "Cette alerte n'existe pas."


class AnomalyClosed(Conflict):
    code = "anomaly_closed"
    message = "Cette alerte a déjà été traitée."


class NoteRequired(InvalidInput):
    code = "note_required"
    message = "Écrivez une note qui dit pourquoi (au plus 2 000 caractères)."



@dataclass(frozen=True)
class AnomalyView:
    anomaly: Anomaly
    site_name: str | None
    programme_name: str | None
    evidence_rows: list[dict[str, Any]]


async def list_anomalies(
    session: AsyncSession,
    *,
    status: str | None = "open",
    programme_ids: Sequence[int] | None = None,
    limit: int = 500,
) -> list[Anomaly]:
    """Alerts, newest first; `programme_ids` limits them to those programmes (a financer's)."""
    if status is not None and status not in ANOMALY_STATUSES:
        raise InvalidInput(
            "Statut inconnu : open, justified ou site_suspended.", code="validation_error"
        )
    stmt = (
        sa.select(Anomaly)
        .order_by(col(Anomaly.opened_at).desc(), col(Anomaly.id).desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(col(Anomaly.status) == status)
    if programme_ids is not None:
        stmt = stmt.where(col(Anomaly.programme_id).in_(list(programme_ids)))
    return list((await session.scalars(stmt)).all())


async def describe(session: AsyncSession, anomalies: Sequence[Anomaly]) -> list[AnomalyView]:
    """Names and the evidence's redemptions (cheque serial, site, time) for pages."""
    site_names = await organisation_names(session, (a.site_id for a in anomalies if a.site_id))
    programme_ids = sorted({a.programme_id for a in anomalies if a.programme_id})
    programme_names: dict[int, str] = {}
    if programme_ids:
        programme_names = {
            int(i): str(n)
            for i, n in await session.execute(
                sa.text("SELECT id, name FROM programme WHERE id = ANY(:ids)"),
                {"ids": programme_ids},
            )
        }
    wanted = sorted({int(i) for a in anomalies for i in a.evidence.get("redemption_ids", [])})
    rows: dict[int, dict[str, Any]] = {}
    if wanted:
        for r in await session.execute(
            sa.text(
                "SELECT r.id, c.serial, r.redeemed_at, o.name AS site, o.commune_insee "
                "FROM redemption r JOIN cheque c ON c.id = r.cheque_id "
                "JOIN organisation o ON o.id = r.site_id WHERE r.id = ANY(:ids)"
            ),
            {"ids": wanted},
        ):
            rows[int(r.id)] = {
                "id": int(r.id),
                "serial": r.serial,
                "at": r.redeemed_at,
                "site": r.site,
                "commune_insee": r.commune_insee,
            }
    return [
        AnomalyView(
            anomaly=a,
            site_name=site_names.get(a.site_id) if a.site_id else None,
            programme_name=programme_names.get(a.programme_id) if a.programme_id else None,
            evidence_rows=[
                rows[int(i)] for i in a.evidence.get("redemption_ids", []) if int(i) in rows
            ],
        )
        for a in anomalies
    ]


async def _open_for_update(session: AsyncSession, anomaly_id: int) -> Anomaly:
    anomaly = await session.get(Anomaly, anomaly_id, with_for_update=True)
    if anomaly is None:
        raise AnomalyNotFound(anomaly_id=anomaly_id)
    if anomaly.status != "open":
        raise AnomalyClosed(anomaly_id=anomaly_id, status=anomaly.status)
    return anomaly


def _clean_note(note: str | None) -> str:
    text = (note or "").strip()
    if not text or len(text) > MAX_NOTE:
        raise NoteRequired()
    return text


async def resolve(
    session: AsyncSession,
    *,
    anomaly_id: int,
    note: str | None,
    user_id: int | None,
    now: datetime,
) -> Anomaly:
    """Mark an alert « justifiée », with the operator's note saying why."""
    text = _clean_note(note)
    anomaly = await _open_for_update(session, anomaly_id)
    anomaly.status, anomaly.resolution_note = "justified", text
    anomaly.resolved_at, anomaly.resolved_by = now, user_id
    await session.flush()
    return anomaly


async def suspend_site(
    session: AsyncSession,
    *,
    anomaly_id: int,
    note: str | None,
    user_id: int | None,
    now: datetime,
) -> Anomaly:
    """Suspend the alert's site (the qualification service's own transition, reversible from
    the qualification page) and close the alert with the note."""
    text = _clean_note(note)
    anomaly = await _open_for_update(session, anomaly_id)
    if anomaly.site_id is None:
        raise InvalidInput("Cette alerte ne concerne pas un lieu.", code="anomaly_without_site")
    await accounts.set_qualification(
        session, site_id=anomaly.site_id, to=Qualification.suspended, now=now
    )
    anomaly.status, anomaly.resolution_note = "site_suspended", text
    anomaly.resolved_at, anomaly.resolved_by = now, user_id
    await session.flush()
    return anomaly


async def financer_programme_ids(session: AsyncSession, *, financer_id: int) -> list[int]:
    """The programmes a financer takes part in (the alerts it may see)."""
    return [
        int(p)
        for p in (
            await session.scalars(
                sa.text(
                    "SELECT DISTINCT programme_id FROM programme_financer "
                    "WHERE organisation_id = :org"
                ),
                {"org": financer_id},
            )
        ).all()
    ]
