"""« Mon pass »: what is left on a booklet, for whoever holds it (its number and the check code
printed on its cover), with no personal data: never the beneficiary, never where a cheque was
spent. A wrong number and a wrong code get the same answer."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import NotFound
from pass_ import communes, sites
from pass_.issuance import normalise_booklet_number
from pass_.programmes import communes_in_territory


class BookletCheckFailed(NotFound):
    code = "booklet_check_failed"
    message = (
        "Nous ne trouvons pas ce carnet avec ce code. Vérifiez le numéro (CN-…) et le code "
        "imprimés sur la couverture du carnet."
    )


@dataclass
class BookletBalance:
    number: str
    status: str  # active | in_stock | cancelled
    cheques_left: int
    value_left_cents: int
    face_value_cents: int | None
    valid_until: date | None
    redeem_until: date | None
    programme_name: str
    lieux: list[sites.PublicSite]

    def as_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "status": self.status,
            "cheques_left": self.cheques_left,
            "value_left_cents": self.value_left_cents,
            "face_value_cents": self.face_value_cents,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "redeem_until": self.redeem_until.isoformat() if self.redeem_until else None,
            "programme": self.programme_name,
            "lieux": [s.as_json() for s in self.lieux],
        }


_BOOKLET = text("""
SELECT b.id, b.number, b.check_code, b.status, p.name, o.commune_insee, p.territory,
       count(c.id) FILTER (WHERE c.status = 'active' AND c.redeem_until >= :today),
       coalesce(sum(c.value_cents) FILTER (
           WHERE c.status = 'active' AND c.redeem_until >= :today), 0),
       min(c.value_cents), max(c.valid_until), max(c.redeem_until)
FROM booklet b
JOIN programme p ON p.id = b.programme_id
JOIN organisation o ON o.id = b.issuer_id
LEFT JOIN cheque c ON c.booklet_id = b.id
WHERE b.number = :number
GROUP BY b.id, p.name, p.territory, o.commune_insee
""")


async def booklet_balance(
    session: AsyncSession, *, number: str, code: str, now: datetime, today: date
) -> BookletBalance:
    canonical = normalise_booklet_number(number or "")
    given = (code or "").strip().upper()
    row = None
    if canonical is not None and 0 < len(given) <= 12:
        row = (await session.execute(_BOOKLET, {"number": canonical, "today": today})).first()
    # Compared in constant time, and the same error whether the number or the code is wrong.
    if row is None or not hmac.compare_digest(row[2].encode(), given.encode()):
        raise BookletCheckFailed()
    (
        _,
        number_,
        _,
        status,
        programme_name,
        issuer_commune,
        territory,
        left,
        value,
        face,
        until,
        redeem,
    ) = row
    near = await communes.get_commune(session, issuer_commune)
    # The nearest sites where these cheques are accepted: in the programme's territory.
    nearest = await sites.directory(session, near=near, now=now, limit=200)
    inside = await communes_in_territory(session, [s.code_insee for s in nearest], territory)
    lieux = [s for s in nearest if s.code_insee in inside][:5]
    if status != "active":
        left, value = 0, 0
    return BookletBalance(
        number=number_,
        status=status,
        cheques_left=int(left),
        value_left_cents=int(value),
        face_value_cents=face,
        valid_until=until,
        redeem_until=redeem,
        programme_name=programme_name,
        lieux=lieux,
    )
