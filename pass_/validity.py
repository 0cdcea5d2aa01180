"""The end of a programme's validity, handled ahead (issue 15).

- From `alert_days` (30 by default, `PASSNUM_VALIDITY_ALERT_DAYS`) before a programme's last day
  of validity (`valid_until`), its issuers and financers see an alert with the unused stock
  (booklets printed ahead, never handed out) and the handed-out cheques still unused.
- From `stop_days` (15, `PASSNUM_HAND_OUT_STOP_DAYS`) before it, stock booklets can no longer
  be handed out (`HandOutClosed`): a person would get cheques with no time left to use them.
  Booklets issued at the desk follow the programme's own rule (until `valid_until`).
- The operator sees the unused stock per issuer (`stock_report`).
Expiry and credit notes are unchanged (clearing/expiry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import Conflict
from pass_.enums import Role


class HandOutClosed(Conflict):
    code = "hand_out_closed"
    message = "Ce carnet ne peut plus être remis : le programme se termine bientôt."


def hand_out_deadline(valid_until: date, stop_days: int) -> date:
    """The last day a stock booklet may be handed out."""
    return valid_until - timedelta(days=stop_days)


def check_hand_out(*, programme_name: str, valid_until: date, today: date, stop_days: int) -> None:
    last = hand_out_deadline(valid_until, stop_days)
    if stop_days > 0 and today > last:
        raise HandOutClosed(
            f"Ce carnet ne peut plus être remis : les chèques du programme « {programme_name} » "
            f"ne sont valables que jusqu'au {valid_until:%d/%m/%Y}, et les carnets du stock ne "
            f"sont plus remis dans les {stop_days} derniers jours (depuis le "
            f"{last + timedelta(days=1):%d/%m/%Y}), pour laisser aux personnes le temps de les "
            "utiliser. Émettez plutôt un carnet à l'accueil si le programme le permet encore, ou "
            "attendez le programme suivant.",
            programme_id=None,
            valid_until=valid_until.isoformat(),
            last_hand_out_day=last.isoformat(),
        )


@dataclass(frozen=True)
class StockLine:
    programme_id: int
    programme_name: str
    valid_until: date
    issuer_id: int
    issuer_name: str
    stock_booklets: int
    stock_cheques: int
    stock_value_cents: int
    unused_cheques: int  # handed out, still active
    unused_value_cents: int
    days_left: int


# Per programme and issuer: stock (booklets in stock and their cheques) and handed-out cheques
# still active; programmes not closed, ending within `horizon` days (or all when NULL).
_STOCK = text("""
SELECT p.id, p.name, p.valid_until, b.issuer_id, o.name,
       count(DISTINCT b.id) FILTER (WHERE b.status = 'in_stock'),
       count(c.id) FILTER (WHERE c.status = 'in_stock'),
       coalesce(sum(c.value_cents) FILTER (WHERE c.status = 'in_stock'), 0),
       count(c.id) FILTER (WHERE c.status = 'active'),
       coalesce(sum(c.value_cents) FILTER (WHERE c.status = 'active'), 0)
FROM programme p
JOIN booklet b ON b.programme_id = p.id
JOIN organisation o ON o.id = b.issuer_id
JOIN cheque c ON c.booklet_id = b.id
WHERE p.closed_at IS NULL
  AND p.valid_until >= :today
  AND (CAST(:horizon AS date) IS NULL OR p.valid_until <= :horizon)
  AND (CAST(:issuer_id AS bigint) IS NULL OR b.issuer_id = :issuer_id)
  AND (CAST(:financer_id AS bigint) IS NULL OR EXISTS (
       SELECT 1 FROM programme_financer f
       WHERE f.programme_id = p.id AND f.organisation_id = :financer_id))
GROUP BY p.id, p.name, p.valid_until, b.issuer_id, o.name
HAVING count(c.id) FILTER (WHERE c.status IN ('in_stock', 'active')) > 0
ORDER BY p.valid_until, p.id, o.name
""")


async def stock_report(
    session: AsyncSession,
    *,
    today: date,
    within_days: int | None = None,
    issuer_id: int | None = None,
    financer_id: int | None = None,
) -> list[StockLine]:
    """Unused stock and handed-out unused cheques per programme and issuer, for programmes
    still valid (ending within `within_days` when given)."""
    horizon = today + timedelta(days=within_days) if within_days is not None else None
    rows = await session.execute(
        _STOCK,
        {"today": today, "horizon": horizon, "issuer_id": issuer_id, "financer_id": financer_id},
    )
    return [
        StockLine(*r[:5], *(int(x) for x in r[5:]), days_left=(r[2] - today).days)  # type: ignore[misc]
        for r in rows.all()
    ]


@dataclass(frozen=True)
class Alert:
    programme_id: int
    programme_name: str
    valid_until: date
    days_left: int
    hand_out_until: date
    hand_out_closed: bool
    stock_booklets: int
    stock_value_cents: int
    unused_cheques: int
    unused_value_cents: int


async def alerts(
    session: AsyncSession,
    *,
    role: Role,
    organisation_id: int,
    today: date,
    alert_days: int,
    stop_days: int,
) -> list[Alert]:
    """The alerts an issuer's agent or a financer sees: one per programme of theirs ending
    within `alert_days`, with their unused stock and handed-out unused cheques (an issuer's
    own; a financer's, all issuers of its programmes). Programmes ending soon with nothing left
    unused still alert the agent: no booklet issued now has much time left."""
    if role not in (Role.issuer_agent, Role.financer):
        return []
    horizon = today + timedelta(days=alert_days)
    programmes = await session.execute(
        text("""
SELECT p.id, p.name, p.valid_until FROM programme p
WHERE p.closed_at IS NULL AND p.valid_until BETWEEN :today AND :horizon
  AND (EXISTS (SELECT 1 FROM programme_issuer i
               WHERE i.programme_id = p.id AND i.organisation_id = :org AND :role = 'issuer_agent')
    OR EXISTS (SELECT 1 FROM programme_financer f
               WHERE f.programme_id = p.id AND f.organisation_id = :org AND :role = 'financer'))
ORDER BY p.valid_until, p.id
"""),
        {"today": today, "horizon": horizon, "org": organisation_id, "role": role.value},
    )
    found = programmes.all()
    if not found:
        return []
    lines = await stock_report(
        session,
        today=today,
        within_days=alert_days,
        issuer_id=organisation_id if role == Role.issuer_agent else None,
        financer_id=organisation_id if role == Role.financer else None,
    )
    out = []
    for pid, name, until in found:
        mine = [line for line in lines if line.programme_id == pid]
        last = hand_out_deadline(until, stop_days)
        out.append(
            Alert(
                programme_id=pid,
                programme_name=name,
                valid_until=until,
                days_left=(until - today).days,
                hand_out_until=last,
                hand_out_closed=stop_days > 0 and today > last,
                stock_booklets=sum(m.stock_booklets for m in mine),
                stock_value_cents=sum(m.stock_value_cents for m in mine),
                unused_cheques=sum(m.unused_cheques for m in mine),
                unused_value_cents=sum(m.unused_value_cents for m in mine),
            )
        )
    return out
