"""The public pages (no login): the directory of qualified sites (/lieux, a page per site),
« mon pass » (/mon-pass, what is left on a booklet) and the open data page (/donnees)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.routers.public import check_public_rate
from api.web.templating import render
from kit.clock import paris_today, utcnow
from kit.errors import DomainError
from pass_ import mon_pass, sites

router = APIRouter(include_in_schema=False)
PUBLIC_TAGLINE = "Où utiliser son Pass numérique"


@router.get("/lieux")
async def directory(
    request: Request,
    session: SessionDep,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    query = q.strip()
    found = await sites.search_directory(session, query=query, now=utcnow()) if query else None
    return render(
        request,
        "public/lieux.html",
        {"title": "Trouver un lieu", "tagline": PUBLIC_TAGLINE, "q": query, "found": found},
    )


@router.get("/lieux/{site_id}")
async def site_page(site_id: int, request: Request, session: SessionDep) -> Response:
    try:
        site = await sites.public_site(session, site_id=site_id, now=utcnow())
    except DomainError as error:
        return render(
            request,
            "not_found.html",
            {"title": "Lieu introuvable", "message": error.message},
            status_code=404,
        )
    return render(
        request,
        "public/lieu.html",
        {"title": site.nom, "tagline": PUBLIC_TAGLINE, "site": site},
    )


@router.get("/mon-pass")
async def my_pass_form(
    request: Request,
    numero: Annotated[str, Query(max_length=40)] = "",
    code: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    if numero.strip():  # the form without JavaScript
        return RedirectResponse(
            f"/mon-pass/{quote(numero.strip(), safe='')}?code={quote(code.strip(), safe='')}",
            status_code=303,
        )
    return render(
        request,
        "public/mon_pass.html",
        {"title": "Mon pass", "tagline": PUBLIC_TAGLINE, "number": "", "balance": None},
    )


@router.get("/mon-pass/{number}")
async def my_pass(
    number: str,
    request: Request,
    session: SessionDep,
    code: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    context: dict[str, Any] = {
        "title": "Mon pass",
        "tagline": PUBLIC_TAGLINE,
        "number": number,
        "balance": None,
    }
    if code:
        check_public_rate(request, number)
        try:
            context["balance"] = await mon_pass.booklet_balance(
                session, number=number, code=code, now=utcnow(), today=paris_today()
            )
        except DomainError as error:
            context["error"] = error.message
    return render(request, "public/mon_pass.html", context)


@router.get("/donnees")
async def open_data_page(request: Request) -> Response:
    from pass_ import open_data

    return render(
        request,
        "public/donnees.html",
        {
            "title": "Données ouvertes",
            "tagline": PUBLIC_TAGLINE,
            "threshold": open_data.SECRECY_THRESHOLD,
            "columns": open_data.COLUMNS,
        },
    )
