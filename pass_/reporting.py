"""Read-only figures of a programme for its dashboards: cheques by stage, and breakdowns by
démarche family, by beneficiaries' need level and by commune.

Only counting and summing here (no rule): what a cheque's stage is comes from its status and
activation time, what a redemption counts is its live (unreversed) row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Figure:
    count: int = 0
    value_cents: int = 0


@dataclass(frozen=True)
class Breakdown:
    """One line of a breakdown: its key (démarche family, need level, INSEE code…)."""

    key: str | None
    handed_out: Figure = field(default_factory=Figure)
    redeemed: Figure = field(default_factory=Figure)


@dataclass(frozen=True)
class ProgrammeDashboard:
    printed: Figure  # every cheque made, in stock or not
    handed_out: Figure  # activated for a beneficiary (at the desk or from stock)
    redeemed: Figure
    expired: Figure
    cancelled: Figure  # cancelled after activation (lost or stolen booklets)
    by_demarche: list[Breakdown]
    by_need_level: list[Breakdown]
    by_commune: list[Breakdown]  # redemptions by the site's commune


_STAGES = text("""
SELECT
  count(*), coalesce(sum(value_cents), 0),
  count(*) FILTER (WHERE activated_at IS NOT NULL),
  coalesce(sum(value_cents) FILTER (WHERE activated_at IS NOT NULL), 0),
  count(*) FILTER (WHERE status = 'redeemed'),
  coalesce(sum(value_cents) FILTER (WHERE status = 'redeemed'), 0),
  count(*) FILTER (WHERE status = 'expired'),
  coalesce(sum(value_cents) FILTER (WHERE status = 'expired'), 0),
  count(*) FILTER (WHERE status = 'cancelled' AND activated_at IS NOT NULL),
  coalesce(sum(value_cents) FILTER (WHERE status = 'cancelled' AND activated_at IS NOT NULL), 0)
FROM cheque WHERE programme_id = :programme_id
""")

_BY_DEMARCHE = text("""
SELECT demarche_family, count(*), coalesce(sum(value_cents), 0)
FROM redemption
WHERE programme_id = :programme_id AND reversed_at IS NULL
GROUP BY demarche_family
ORDER BY sum(value_cents) DESC, demarche_family
""")

_BY_NEED = text("""
SELECT b.need_level,
  count(*) FILTER (WHERE c.activated_at IS NOT NULL),
  coalesce(sum(c.value_cents) FILTER (WHERE c.activated_at IS NOT NULL), 0),
  count(*) FILTER (WHERE c.status = 'redeemed'),
  coalesce(sum(c.value_cents) FILTER (WHERE c.status = 'redeemed'), 0)
FROM cheque c
JOIN booklet k ON k.id = c.booklet_id
JOIN beneficiary b ON b.id = k.beneficiary_id
WHERE c.programme_id = :programme_id
GROUP BY b.need_level
ORDER BY b.need_level
""")

_BY_COMMUNE = text("""
SELECT o.commune_insee, count(*), coalesce(sum(r.value_cents), 0)
FROM redemption r
JOIN organisation o ON o.id = r.site_id
WHERE r.programme_id = :programme_id AND r.reversed_at IS NULL
GROUP BY o.commune_insee
ORDER BY sum(r.value_cents) DESC, o.commune_insee
""")


async def programme_dashboard(session: AsyncSession, *, programme_id: int) -> ProgrammeDashboard:
    """The programme's figures; the caller has checked the viewer may see the programme."""
    args = {"programme_id": programme_id}
    s = [int(v) for v in (await session.execute(_STAGES, args)).one()]
    by_demarche = [
        Breakdown(key=row[0], redeemed=Figure(int(row[1]), int(row[2])))
        for row in (await session.execute(_BY_DEMARCHE, args)).all()
    ]
    by_need = [
        Breakdown(
            key=str(row[0]),
            handed_out=Figure(int(row[1]), int(row[2])),
            redeemed=Figure(int(row[3]), int(row[4])),
        )
        for row in (await session.execute(_BY_NEED, args)).all()
    ]
    by_commune = [
        Breakdown(key=row[0], redeemed=Figure(int(row[1]), int(row[2])))
        for row in (await session.execute(_BY_COMMUNE, args)).all()
    ]
    return ProgrammeDashboard(
        printed=Figure(s[0], s[1]),
        handed_out=Figure(s[2], s[3]),
        redeemed=Figure(s[4], s[5]),
        expired=Figure(s[6], s[7]),
        cancelled=Figure(s[8], s[9]),
        by_demarche=by_demarche,
        by_need_level=by_need,
        by_commune=by_commune,
    )
