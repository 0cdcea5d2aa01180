"""The site's profile pages: the mediators edit what /lieux publishes (/mediateur/profil), the
operator sees the profiles changed since last checked and marks them checked
(/operateur/profils). Same service functions as PATCH /api/v1/sites/{id}/profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlmodel import col
from starlette.responses import Response

from api.deps import SessionDep
from api.security import Principal
from api.web import csrf
from api.web.forms import domain_error_fields, field_errors
from api.web.session import MediatorPage, OperatorPage, redirect
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import communes, sites
from pass_.enums import Service, label
from pass_.models import Organisation

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

SERVICE_OPTIONS = [(s.value, label(s)) for s in Service]


def _stops_text(stops: list[dict[str, Any]]) -> str:
    return "\n".join(f"{s['lieu']} ; {s['adresse']} ; {s['horaires']}" for s in stops)


def _parse_stops(text_: str) -> list[dict[str, str]] | str:
    """One stop a line, « lieu ; adresse ; horaires », or the French message of a bad line."""
    stops = []
    for n, line in enumerate((text_ or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(";", 2)]
        if len(parts) != 3 or not all(parts):
            return (
                f"Ligne {n} des étapes : écrivez « lieu ; adresse ; horaires », par exemple "
                "« Place du marché ; 1 place de la Mairie, Acigné ; Tu 09:00-12:00 »."
            )
        stops.append({"lieu": parts[0], "adresse": parts[1], "horaires": parts[2]})
    return stops


async def _page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    org = await session.get(Organisation, principal.organisation_id)
    assert org is not None
    commune = await communes.get_commune(session, org.commune_insee)
    if values is None:
        values = {
            "adresse": org.address or "",
            "code_postal": org.postcode or "",
            "horaires": org.opening_hours or "",
            "etapes": _stops_text(org.stops),
            "services": list(org.services),
            "accessibilite": org.accessibility or "",
            "telephone": org.phone or "",
            "courriel": org.email or "",
            "site_web": org.website or "",
        }
    return render(
        request,
        "profile/edit.html",
        {
            "title": "Profil du lieu",
            "org": org,
            "commune": commune,
            "values": values,
            "errors": errors or {},
            "service_options": SERVICE_OPTIONS,
        },
        status_code=status,
    )


@router.get("/mediateur/profil")
async def profile(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    return await _page(request, principal, session)


@router.post("/mediateur/profil")
async def profile_update(
    request: Request, principal: MediatorPage, session: SessionDep
) -> Response:
    form = await request.form()
    values: dict[str, Any] = {
        k: str(form.get(k) or "").strip()
        for k in (
            "adresse",
            "code_postal",
            "horaires",
            "etapes",
            "accessibilite",
            "telephone",
            "courriel",
            "site_web",
        )
    }
    values["services"] = [str(s) for s in form.getlist("services")]
    stops = _parse_stops(values["etapes"])
    if isinstance(stops, str):
        return await _page(
            request, principal, session, values=values, errors={"etapes": stops}, status=400
        )
    try:
        data = sites.SiteProfileUpdate.model_validate(
            {
                "adresse": values["adresse"] or None,
                "code_postal": values["code_postal"] or None,
                "horaires": values["horaires"] or None,
                "etapes": stops,
                "services": values["services"],
                "accessibilite": values["accessibilite"] or None,
                "telephone": values["telephone"] or None,
                "courriel": values["courriel"] or None,
                "site_web": values["site_web"] or None,
            }
        )
        async with session.begin_nested():
            await sites.update_profile(
                session,
                role=principal.role,
                organisation_id=principal.organisation_id,
                site_id=principal.organisation_id,
                data=data,
                now=utcnow(),
            )
    except ValidationError as exc:
        return await _page(
            request, principal, session, values=values, errors=field_errors(exc), status=400
        )
    except DomainError as exc:
        errors = domain_error_fields(exc)
        if str(exc.details.get("field", "")).startswith("etapes"):
            errors = {"etapes": exc.message}
        return await _page(request, principal, session, values=values, errors=errors, status=400)
    return redirect(
        request,
        "/mediateur/profil",
        flash=("success", "Profil enregistré : il apparaît tel quel dans l'annuaire des lieux."),
    )


@router.get("/operateur/profils")
async def profiles_to_check(
    request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    changed = (
        await session.scalars(
            select(Organisation)
            .where(
                col(Organisation.kind) == "site",
                col(Organisation.profile_updated_at).is_not(None),
                or_(
                    col(Organisation.profile_checked_at).is_(None),
                    col(Organisation.profile_checked_at) < col(Organisation.profile_updated_at),
                ),
            )
            .order_by(col(Organisation.profile_updated_at))
        )
    ).all()
    names = await communes.names(session, (o.commune_insee for o in changed))
    return render(
        request,
        "profile/check.html",
        {"title": "Profils des lieux à vérifier", "sites": changed, "commune_names": names},
    )


@router.post("/operateur/profils/{site_id}/verifie")
async def profile_checked(
    site_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    try:
        site = await sites.check_profile(session, site_id=site_id, now=utcnow())
    except DomainError as exc:
        return redirect(request, "/operateur/profils", flash=("error", exc.message))
    return redirect(
        request, "/operateur/profils", flash=("success", f"Profil de « {site.name} » vérifié.")
    )
