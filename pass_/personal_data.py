"""Data protection (RGPD) on request of a beneficiary, through their issuer: the export of what
the service holds about them (art. 15 and 20) and the erasure of their record (art. 17).

Erasure drops what points at the person — the agent's reference, the birth year and the
commune — and keeps the need level (programme statistics), the booklets, the cheques and every
euro in the ledger and the statements: public money stays accountable, and nothing left names
anyone. The retention job (`passnum pseudonymise`, `beneficiaries.pseudonymise_beneficiaries`)
does the same for records idle past the retention period, without a request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from pass_.beneficiaries import get_beneficiary
from pass_.models import Beneficiary

log = structlog.get_logger()

_BOOKLETS = text("""
SELECT b.number, p.name, b.status, b.size, b.created_at, b.handed_out_at, b.cancelled_at
FROM booklet b JOIN programme p ON p.id = b.programme_id
WHERE b.beneficiary_id = :id ORDER BY b.id
""")

_CHEQUES = text("""
SELECT c.serial, b.number, c.value_cents, c.status, c.redeem_until, r.redeemed_at, o.name,
       r.service
FROM cheque c JOIN booklet b ON b.id = c.booklet_id
LEFT JOIN redemption r ON r.cheque_id = c.id AND r.reversed_at IS NULL
LEFT JOIN organisation o ON o.id = r.site_id
WHERE b.beneficiary_id = :id ORDER BY b.id, c.position
""")


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


async def export_beneficiary(session: AsyncSession, *, issuer_id: int,
                             beneficiary_id: int) -> dict[str, Any]:
    """Everything held about the beneficiary, as JSON-ready data (only their issuer may ask:
    another issuer's beneficiary is NotFound)."""
    person = await get_beneficiary(session, issuer_id=issuer_id, beneficiary_id=beneficiary_id)
    booklets = (await session.execute(_BOOKLETS, {"id": person.id})).all()
    cheques = (await session.execute(_CHEQUES, {"id": person.id})).all()
    log.info("beneficiary_exported", beneficiary_id=person.id, issuer_id=issuer_id)
    return {
        "beneficiary": {
            "id": person.id, "reference": person.reference, "need_level": person.need_level,
            "birth_year": person.birth_year, "commune_insee": person.commune_insee,
            "created_at": _iso(person.created_at), "last_booklet_at": _iso(person.last_booklet_at),
            "pseudonymised_at": _iso(person.pseudonymised_at),
        },
        "booklets": [
            {"number": n, "programme": p, "status": s, "size": size, "created_at": _iso(c),
             "handed_out_at": _iso(h), "cancelled_at": _iso(x)}
            for n, p, s, size, c, h, x in booklets],
        "cheques": [
            {"serial": serial, "booklet": number, "value_cents": value, "status": status,
             "redeem_until": _iso(until), "redeemed_at": _iso(at), "redeemed_at_site": site,
             "service": service}
            for serial, number, value, status, until, at, site, service in cheques],
        "retention": "La référence est effacée trois ans après le dernier carnet "
                     "(PASSNUM_BENEFICIARY_RETENTION_DAYS), ou plus tôt sur demande.",
    }


async def erase_beneficiary(session: AsyncSession, *, issuer_id: int, beneficiary_id: int,
                            now: datetime) -> Beneficiary:
    """Erase the record on request: reference, birth year and commune dropped; need level,
    booklets, cheques and money kept. Erasing again changes nothing more."""
    person = await get_beneficiary(session, issuer_id=issuer_id, beneficiary_id=beneficiary_id)
    await session.execute(
        update(Beneficiary)
        .where(col(Beneficiary.id) == person.id)
        .values(reference=None, birth_year=None, commune_insee=None,
                pseudonymised_at=person.pseudonymised_at or now)
        .execution_options(synchronize_session="fetch"))
    await session.refresh(person)
    log.info("beneficiary_erased", beneficiary_id=person.id, issuer_id=issuer_id)
    return person
