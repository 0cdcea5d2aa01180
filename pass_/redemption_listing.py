"""Listing redemptions, newest first, of one site or of all, paged by a keyset cursor.

A page is read from an index in `redeemed_at` order (`ix_redemption_redeemed_at_id`, migration
0013, for all sites; `ix_redemption_site_redeemed_at` for one): the next page starts after the
last row shown (`cursor`), so any page costs what the first one does, however far down. Numbered
pages (`page`, an offset) are kept for the first MAX_PAGE pages only: beyond, an offset reads
and throws away every row before it, and the answer says to follow `next_cursor`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_midnight
from kit.errors import InvalidInput
from pass_.models import Cheque, Redemption
from pass_.redemption import REVERSAL_WINDOW
from pass_.redemption_schemas import RedemptionListItem, RedemptionPage

__all__ = ["MAX_PAGE", "InvalidCursor", "PageTooDeep", "list_redemptions"]

MAX_PAGE = 100


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    message = "Le curseur de pagination est invalide : repartez de la première page."


class PageTooDeep(InvalidInput):
    code = "page_too_deep"
    message = (
        f"Les pages sont numérotées jusqu'à {MAX_PAGE} : au-delà, suivez le lien de la page "
        "suivante (paramètre cursor) ou resserrez les dates."
    )


def _encode_cursor(redeemed_at: datetime, redemption_id: int) -> str:
    raw = f"{redeemed_at.astimezone(UTC).isoformat()}|{redemption_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, id_text = raw.split("|")
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor() from None


async def list_redemptions(
    session: AsyncSession,
    *,
    site_id: int | None,
    now: datetime,
    from_day: date | None = None,
    to_day: date | None = None,
    limit: int = 50,
    cursor: str | None = None,
    page: int | None = None,
    viewer_site_id: int | None = None,
) -> RedemptionPage:
    """Redemptions, newest first: of one site (`site_id`) or all (`None`), between the Paris
    days `from_day` and `to_day` included; paged by `cursor` (keyset) or `page` (at most
    MAX_PAGE, else PageTooDeep).

    `reversible` says whether the redeeming site could still reverse it now."""
    if page is not None and page > MAX_PAGE and not cursor:
        raise PageTooDeep(page=page, max_page=MAX_PAGE)
    r = Redemption.__table__  # type: ignore[attr-defined]
    c = Cheque.__table__  # type: ignore[attr-defined]
    query = select(
        r.c.id,
        c.c.serial,
        r.c.value_cents,
        r.c.service,
        r.c.demarche_family,
        r.c.redeemed_at,
        r.c.scanned_at,
        r.c.site_id,
        r.c.reversed_at,
        r.c.batch_id,
    ).join(c, c.c.id == r.c.cheque_id)
    if site_id is not None:
        query = query.where(r.c.site_id == site_id)
    if from_day is not None:
        query = query.where(r.c.redeemed_at >= paris_midnight(from_day))
    if to_day is not None:
        query = query.where(r.c.redeemed_at < paris_midnight(to_day + timedelta(days=1)))
    if cursor:
        at, last_id = _decode_cursor(cursor)
        query = query.where(tuple_(r.c.redeemed_at, r.c.id) < tuple_(literal(at), literal(last_id)))
    elif page and page > 1:
        query = query.offset((page - 1) * limit)
    query = query.order_by(r.c.redeemed_at.desc(), r.c.id.desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    items = [
        RedemptionListItem(
            id=row.id,
            cheque_serial=row.serial,
            value_cents=row.value_cents,
            service=row.service,
            demarche_family=row.demarche_family,
            redeemed_at=row.redeemed_at,
            scanned_at=row.scanned_at,
            site_id=row.site_id,
            reversed_at=row.reversed_at,
            in_batch=row.batch_id is not None,
            reversible=(
                row.reversed_at is None
                and row.batch_id is None
                and now - row.redeemed_at < REVERSAL_WINDOW
                and (viewer_site_id is None or viewer_site_id == row.site_id)
            ),
        )
        for row in rows[:limit]
    ]
    next_cursor = _encode_cursor(items[-1].redeemed_at, items[-1].id) if len(rows) > limit else None
    return RedemptionPage(
        items=items, limit=limit, next_cursor=next_cursor, page=None if cursor else (page or 1)
    )
