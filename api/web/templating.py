"""Rendering pages: the Jinja2 environment, French formatting filters and the shared context."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from api.security import Principal
from api.web import csrf
from api.web.session import FLASH_COOKIE, read_flash
from kit.clock import PARIS
from kit.money import format_eur
from pass_.enums import NO_DEMARCHE, Role, demarche_label, label

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]


def eur_short(cents: int | None) -> str:
    """« 10 € » for whole euros, « 12,50 € » otherwise (what a mediator reads at a glance)."""
    if cents is None:
        return "—"
    if cents % 100 == 0:
        return format_eur(cents).replace(",00", "")
    return format_eur(cents)


def date_fr(day: date | datetime | None) -> str:
    if day is None:
        return "—"
    if isinstance(day, datetime):
        day = day.astimezone(PARIS).date()
    return day.strftime("%d/%m/%Y")


def date_long(day: date | None) -> str:
    if day is None:
        return "—"
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def datetime_fr(instant: datetime | None) -> str:
    if instant is None:
        return "—"
    return instant.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


def time_fr(instant: datetime | None) -> str:
    if instant is None:
        return "—"
    return instant.astimezone(PARIS).strftime("%H:%M")


def number_fr(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}".replace(",", "\u202f")


def percent_bp(value_bp: int | None) -> str:
    if value_bp is None:
        return "—"
    whole, rest = divmod(value_bp, 100)
    return f"{whole}\u00a0%" if rest == 0 else f"{whole},{rest:02d}\u00a0%".rstrip("0")


env = templates.env
env.filters.update(
    eur=lambda c: "—" if c is None else format_eur(c),
    eur_short=eur_short,
    label=label,
    date_fr=date_fr,
    date_long=date_long,
    datetime_fr=datetime_fr,
    time_fr=time_fr,
    number_fr=number_fr,
    percent_bp=percent_bp,
)
env.globals["label"] = label
env.globals["no_demarche"] = NO_DEMARCHE
env.filters["demarche"] = demarche_label
# A programme financer's role, as the people who sign conventions call it.
env.globals["financer_role_labels"] = {
    "state": "État",
    "local": "Collectivité ou organisme",
    "operator": "Organisme « pollueur-payeur »",
}

# The menu of each role: (path, text). The first entry is the role's home.
NAV: dict[Role, list[tuple[str, str]]] = {
    Role.operator_admin: [
        ("/operateur", "Accueil"),
        ("/operateur/organisations", "Organisations"),
        ("/operateur/qualification", "Qualification des lieux"),
        ("/operateur/programmes", "Programmes"),
        ("/operateur/compensation", "Compensation"),
        ("/operateur/factures", "Factures"),
        ("/operateur/expiration", "Expiration"),
        ("/operateur/audit", "Audit"),
        ("/operateur/demandes-acces", "Demandes d'accès"),
        ("/operateur/profils", "Profils des lieux"),
        ("/operateur/stock", "Fin de validité"),
        ("/operateur/alertes", "Alertes"),
    ],
    Role.issuer_agent: [
        ("/prescripteur", "Accueil"),
        ("/prescripteur/beneficiaires", "Bénéficiaires"),
        ("/prescripteur/remise", "Remettre un carnet"),
        ("/prescripteur/carnets", "Carnets émis"),
    ],
    Role.site_mediator: [
        ("/mediateur", "Scanner un chèque"),
        ("/mediateur/encaissements", "Encaissements du jour"),
        ("/mediateur/releves", "Relevés et paiements"),
        ("/mediateur/banque", "Coordonnées bancaires"),
        ("/mediateur/profil", "Profil du lieu"),
    ],
    Role.financer: [
        ("/financeur", "Tableau de bord"),
        ("/financeur/releves", "Relevés"),
        ("/financeur/factures", "Factures"),
        ("/financeur/alertes", "Alertes"),
    ],
}

ROLE_TAGLINE: dict[Role, str] = {
    Role.operator_admin: "Espace opérateur",
    Role.issuer_agent: "Espace structure prescriptrice",
    Role.site_mediator: "Espace lieu de médiation",
    Role.financer: "Espace financeur",
}


# Pages that belong to a menu entry whose path is not their prefix (issue 16 item 10: an
# operator's statement is part of clearing, not of the home page).
NAV_SECTIONS: dict[str, str] = {"/operateur/releves": "/operateur/compensation"}


def _current_nav(path: str, items: list[tuple[str, str]]) -> str | None:
    """The menu entry that the current page belongs to (longest matching prefix)."""
    for prefix, href in NAV_SECTIONS.items():
        if path == prefix or path.startswith(prefix + "/"):
            path = href
    best = None
    for href, _ in items:
        if path == href or path.startswith(href.rstrip("/") + "/"):
            if best is None or len(href) > len(best):
                best = href
    return best


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    principal: Principal | None = None,
) -> HTMLResponse:
    """Render a page with the shared context (user, menu, CSRF token, flash message)."""
    principal = principal or getattr(request.state, "principal", None)
    nav = NAV.get(principal.role, []) if principal else []
    flash = read_flash(request)
    ctx: dict[str, Any] = {
        "principal": principal,
        "nav": nav,
        "nav_current": _current_nav(request.url.path, nav),
        "tagline": ROLE_TAGLINE.get(principal.role) if principal else None,
        "csrf_token": csrf.token_for(request),
        "flash": flash,
        "errors": {},
        "values": {},
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    # Pages show personal and financial data: never kept by shared caches or the browser's.
    response.headers["Cache-Control"] = "no-store"
    csrf.set_cookie_if_needed(request, response)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response
