"""The public side's JSON and CSV (issue 15): the directory of qualified sites (no login), its
export in the *lieux de médiation numérique* data standard, « mon pass » (what is left on a
booklet, with its check code), and a site's profile, edited by the site."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.deps import CurrentUser, OperatorAdmin, SessionDep
from api.ratelimit import rate_limits, refuse_if_waiting
from kit.clock import paris_today, utcnow
from pass_ import communes, mon_pass, sites

router = APIRouter(prefix="/api/v1", tags=["public"])


@router.get("/public/lieux")
async def public_lieux(
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="commune ou code postal")],
) -> list[dict[str, Any]]:
    """Qualified sites, nearest first from the centre of the commune named (or served by the
    postcode) in `q`; an empty list when no commune matches."""
    found = await sites.search_directory(session, query=q, now=utcnow())
    return [s.as_json() for s in found.sites]


@router.get("/public/communes")
async def public_communes(
    session: SessionDep, q: Annotated[str, Query(min_length=1, max_length=100)]
) -> list[dict[str, Any]]:
    """Communes by name or postcode (for forms that pick a commune)."""
    return [
        {
            "code": c.code,
            "nom": c.name,
            "departement": c.departement,
            "codes_postaux": c.postcodes,
            "libelle": c.label,
        }
        for c in await communes.search(session, q)
    ]


@router.get("/public/lieux.csv", response_class=Response)
async def public_lieux_csv(session: SessionDep) -> Response:
    """Every qualified site in the national data standard of *lieux de médiation numérique*
    (table schema v1.0.2, comma-separated as the standard's files are; Licence Ouverte 2.0)."""
    return Response(
        lieux_csv(await sites.standard_rows(session, now=utcnow())),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lieux-pass-numerique.csv"'},
    )


def lieux_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sites.STANDARD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@router.get("/public/booklets/{number}")
async def public_booklet(
    number: str,
    request: Request,
    session: SessionDep,
    code: Annotated[str, Query(max_length=12)] = "",
) -> dict[str, object]:
    """What is left on a booklet: `code` is the check code printed on its cover. No personal
    data; a wrong number or code → 404 `booklet_check_failed`, the same for both."""
    check_public_rate(request, number)
    balance = await mon_pass.booklet_balance(
        session, number=number, code=code, now=utcnow(), today=paris_today()
    )
    return balance.as_json()


def check_public_rate(request: Request, number: str) -> None:
    """As cheque checks: the client address's bucket, and one per booklet number (so a code
    cannot be guessed from many addresses either)."""
    limits = rate_limits(request)
    address = request.client.host if request.client else "unknown"
    key = f"b:{(number or '').upper()[:40]}"
    refuse_if_waiting(
        max(limits.per_address.wait_for(f"a:{address}"), limits.per_user.wait_for(key))
    )
    limits.per_address.consume(f"a:{address}")
    limits.per_user.consume(key)


@router.patch("/sites/{site_id}/profile")
async def patch_site_profile(
    site_id: int, data: sites.SiteProfileUpdate, principal: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    """A mediator of the site, or the operator, edits its public profile. Invalid opening hours
    → 422 `invalid_opening_hours` with `details.position` (1-based character)."""
    await sites.update_profile(
        session,
        role=principal.role,
        organisation_id=principal.organisation_id,
        site_id=site_id,
        data=data,
        now=utcnow(),
    )
    return await site_profile_json(session, site_id)


@router.post("/sites/{site_id}/profile/check")
async def check_site_profile(site_id: int, _: OperatorAdmin, session: SessionDep) -> dict[str, Any]:
    """The operator has checked the profile as it stands."""
    await sites.check_profile(session, site_id=site_id, now=utcnow())
    return await site_profile_json(session, site_id)


async def site_profile_json(session: SessionDep, site_id: int) -> dict[str, Any]:
    from pass_.models import Organisation

    org = await session.get(Organisation, site_id)
    assert org is not None
    return {
        "id": org.id,
        "nom": org.name,
        "adresse": org.address,
        "code_postal": org.postcode,
        "code_insee": org.commune_insee,
        "latitude": org.latitude,
        "longitude": org.longitude,
        "horaires": org.opening_hours,
        "etapes": org.stops,
        "services": org.services,
        "accessibilite": org.accessibility,
        "telephone": org.phone,
        "courriel": org.email,
        "site_web": org.website,
        "qualification": org.qualification,
        "profile_updated_at": org.profile_updated_at,
        "profile_checked_at": org.profile_checked_at,
    }


@router.get("/open-data/redemptions.csv", response_class=Response)
async def open_data_redemptions(session: SessionDep) -> Response:
    """Redemptions by month × commune of the site × démarche family × service (counts and
    value), cells under 11 redemptions suppressed, no beneficiary data; Licence Ouverte 2.0.
    The rule is written in the file's first lines (starting with #)."""
    from pass_ import open_data

    return Response(
        "\ufeff" + await open_data.redemptions_csv(session),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="encaissements-pass-numerique.csv"'},
    )
