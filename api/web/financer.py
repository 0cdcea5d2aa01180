"""The financer's pages: per programme, a dashboard of cheques by stage and by démarche family,
need level and commune (SVG charts with their data tables). Statements: `web/statements.py`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.security import Principal
from api.web import csrf
from api.web.charts import Row, bar_chart
from api.web.session import FinancerPage, redirect
from api.web.templating import eur_short, render
from api.web.validity import alerts_for
from kit.errors import DomainError
from pass_ import communes as commune_names
from pass_ import programmes, reporting
from pass_.enums import demarche_label
from pass_.programmes import Actor

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

NEED_LABELS = {
    "1": "1 — Urgence numérique",
    "2": "2 — Inclusion numérique",
    "3": "3 — Montée en compétences",
}


def _charts(
    d: reporting.ProgrammeDashboard, commune_names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each chart with the rows of its data table (same figures, text values)."""
    stages = [
        ("Imprimés", d.printed),
        ("Remis aux bénéficiaires", d.handed_out),
        ("Encaissés", d.redeemed),
        ("Expirés", d.expired),
        ("Annulés (carnets perdus)", d.cancelled),
    ]
    demarches = [(demarche_label(b.key), b.redeemed) for b in d.by_demarche]
    names = commune_names or {}
    communes = [(names.get(b.key, b.key) if b.key else "—", b.redeemed) for b in d.by_commune]
    if d.other_communes is not None:  # the page stays small: the first communes, then the rest
        communes.append((f"Autres communes ({d.other_communes.key})", d.other_communes.redeemed))
    needs = [(NEED_LABELS.get(b.key or "", b.key or "—"), b) for b in d.by_need_level]
    return [
        {
            "title": "Chèques par étape (valeur)",
            "svg": bar_chart(
                "Chèques par étape, en valeur",
                [Row(name, [f.value_cents]) for name, f in stages],
                ["Valeur"],
                eur_short,
            ),
            "columns": ["Étape", "Chèques", "Valeur"],
            "rows": [(name, f.count, eur_short(f.value_cents)) for name, f in stages],
        },
        {
            "title": "Encaissements par famille de démarches",
            "svg": bar_chart(
                "Valeur encaissée par famille de démarches",
                [Row(name, [f.value_cents]) for name, f in demarches],
                ["Encaissé"],
                eur_short,
            ),
            "columns": ["Famille de démarches", "Chèques encaissés", "Valeur"],
            "rows": [(name, f.count, eur_short(f.value_cents)) for name, f in demarches],
        },
        {
            "title": "Par niveau de besoin des bénéficiaires",
            "legend": ["Remis", "Encaissés"],
            "svg": bar_chart(
                "Valeur remise et encaissée par niveau de besoin",
                [
                    Row(name, [b.handed_out.value_cents, b.redeemed.value_cents])
                    for name, b in needs
                ],
                ["remis", "encaissés"],
                eur_short,
            ),
            "columns": [
                "Niveau de besoin",
                "Remis (chèques)",
                "Remis (valeur)",
                "Encaissés (chèques)",
                "Encaissés (valeur)",
            ],  # fmt: skip
            "rows": [
                (
                    name,
                    b.handed_out.count,
                    eur_short(b.handed_out.value_cents),
                    b.redeemed.count,
                    eur_short(b.redeemed.value_cents),
                )
                for name, b in needs
            ],
        },
        {
            "title": "Encaissements par commune du lieu de médiation",
            "svg": bar_chart(
                "Valeur encaissée par commune",
                [Row(name, [f.value_cents]) for name, f in communes],
                ["Encaissé"],
                eur_short,
            ),
            "columns": ["Commune", "Chèques encaissés", "Valeur"],
            "rows": [(name, f.count, eur_short(f.value_cents)) for name, f in communes],
        },
    ]


async def _dashboard(
    request: Request, principal: Principal, session: SessionDep, programme_id: int
) -> Response:
    actor = Actor.of(principal)
    programme = await programmes.visible_programme(session, programme_id, actor)
    dashboard = await reporting.programme_dashboard(session, programme_id=programme_id)
    detail = await programmes.programme_detail(
        session, programme, figures=reporting.programme_figures(programme, dashboard.totals)
    )
    own = next(
        (f for f in detail.financers if f.organisation_id == principal.organisation_id), None
    )
    others = await programmes.list_programmes(session, actor)
    return render(
        request,
        "financer/dashboard.html",
        {
            "title": f"Tableau de bord — {detail.name}",
            "p": detail,
            "d": dashboard,
            "own": own,
            "charts": _charts(
                dashboard, await commune_names.names(session, (b.key for b in dashboard.by_commune))
            ),
            "validity_alerts": await alerts_for(request, principal, session),
            "others": [o for o in others if o.id != programme_id],
            "figures_as_of": dashboard.as_of,
            "figures_pending": dashboard.pending,
        },
    )


@router.get("/financeur")
async def home(request: Request, principal: FinancerPage, session: SessionDep) -> Response:
    found = await programmes.list_programmes(session, Actor.of(principal))
    if len(found) == 1:
        return await _dashboard(request, principal, session, found[0].id)  # type: ignore[arg-type]
    return render(request, "financer/home.html", {"title": "Tableau de bord", "programmes": found})


@router.get("/financeur/programmes/{programme_id}")
async def dashboard(
    programme_id: int, request: Request, principal: FinancerPage, session: SessionDep
) -> Response:
    try:
        return await _dashboard(request, principal, session, programme_id)
    except DomainError:
        return redirect(
            request,
            "/financeur",
            flash=("error", "Ce programme n'existe pas ou ne vous concerne pas."),
        )
