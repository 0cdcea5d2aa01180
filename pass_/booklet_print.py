"""Printing booklets: what the PDF renderer (pass_/pdf.py) needs for one booklet at the
desk or a whole bulk order — the cheques, the programme, the issuer and the territory's
qualified sites for the cover — read once per programme and issuer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from pass_ import communes, pdf
from pass_.enums import OrganisationKind, Qualification, Role
from pass_.issuance import own_booklet, visible_order
from pass_.models import Booklet, Cheque, Organisation
from pass_.programmes import Actor, communes_in_territory, get_programme, require_role


def _site_print(site: Organisation, commune_names: dict[str, str]) -> pdf.SitePrint:
    # Addresses are written "street, town", so the town is read from there when it is; else
    # the commune's name from the reference (its code only if the reference lacks it).
    address = site.address or ""
    street, _, town = address.rpartition(",")
    if street and town.strip():
        return pdf.SitePrint(site.name, town.strip(), street.strip())
    name = commune_names.get(site.commune_insee, f"commune {site.commune_insee}")
    return pdf.SitePrint(site.name, name, address)


async def qualified_sites(session: AsyncSession, territory: Sequence[str]) -> list[Organisation]:
    """The qualified mediation sites of a territory (département or commune codes)."""
    candidates = (
        await session.scalars(
            select(Organisation)
            .where(
                col(Organisation.kind) == OrganisationKind.site.value,
                col(Organisation.qualification) == Qualification.qualified.value,
                or_(*(col(Organisation.commune_insee).startswith(code) for code in territory)),
            )
            .order_by(col(Organisation.commune_insee), col(Organisation.name))
        )
    ).all()
    inside = await communes_in_territory(session, [s.commune_insee for s in candidates],
                                         territory)
    return [s for s in candidates if s.commune_insee in inside]


def territory_label(territory: Sequence[str], commune_names: dict[str, str]) -> str:
    """« département 35 », or a commune by its name (its code only if the reference lacks it)."""
    parts = [
        f"département {code}" if len(code) <= 3 else commune_names.get(code, f"commune {code}")
        for code in territory
    ]
    return ", ".join(parts)


async def _prints(
    session: AsyncSession, booklets: Sequence[Booklet], public_url: str = ""
) -> list[pdf.BookletPrint]:
    """What the PDF renderer needs for booklets of one programme and issuer (`public_url`: where
    the cover's QR code sends a phone, see pdf.BookletPrint.cover_url)."""
    if not booklets:
        return []
    programme = await get_programme(session, booklets[0].programme_id)
    issuer = await session.get(Organisation, booklets[0].issuer_id)
    qualified = await qualified_sites(session, programme.territory)
    names = await communes.names(
        session, [*(s.commune_insee for s in qualified), *programme.territory]
    )
    sites = [_site_print(s, names) for s in qualified]
    by_booklet: dict[int, list[pdf.ChequePrint]] = {}
    rows = await session.execute(
        select(
            col(Cheque.booklet_id),
            col(Cheque.serial),
            col(Cheque.token),
            col(Cheque.value_cents),
            col(Cheque.valid_from),
            col(Cheque.valid_until),
            col(Cheque.redeem_until),
        )
        .where(col(Cheque.booklet_id).in_([b.id for b in booklets]))
        .order_by(col(Cheque.booklet_id), col(Cheque.position))
    )
    for booklet_id, *fields in rows.all():
        by_booklet.setdefault(booklet_id, []).append(pdf.ChequePrint(*fields))
    label = territory_label(programme.territory, names)
    issuer_name = issuer.name if issuer else ""
    return [
        pdf.BookletPrint(
            number=b.number,
            programme_name=programme.name,
            issuer_name=issuer_name,
            territory_label=label,
            cheques=by_booklet.get(b.id, []),  # type: ignore[arg-type]
            sites=sites,
            check_code=b.check_code,
            public_url=public_url,
        )
        for b in booklets
    ]


async def booklet_pdf(
    session: AsyncSession, *, actor: Actor, ref: str | int, public_url: str = ""
) -> bytes:
    """The printable booklet (cover with the territory's qualified sites, then the cheques);
    for its issuer only."""
    require_role(actor, Role.issuer_agent)
    booklet = await own_booklet(session, issuer_id=actor.organisation_id, ref=ref)
    [booklet_print] = await _prints(session, [booklet], public_url)
    return await asyncio.to_thread(pdf.render_booklet, booklet_print)


async def order_prints(
    session: AsyncSession, *, actor: Actor, order_id: int, public_url: str = ""
) -> list[pdf.BookletPrint]:
    await visible_order(session, actor=actor, order_id=order_id)
    booklets = (
        await session.scalars(
            select(Booklet).where(col(Booklet.order_id) == order_id).order_by(col(Booklet.id))
        )
    ).all()
    return await _prints(session, booklets, public_url)


async def order_pdf(
    session: AsyncSession, *, actor: Actor, order_id: int, workers: int = 2, public_url: str = ""
) -> bytes:
    """The order's print-ready PDF, every booklet after its cover (QR codes computed on
    `workers` processes)."""
    prints = await order_prints(
        session, actor=actor, order_id=order_id, public_url=public_url
    )
    return await asyncio.to_thread(pdf.render_booklets_parallel, prints, workers)
