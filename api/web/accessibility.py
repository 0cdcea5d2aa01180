"""The accessibility statement (déclaration d'accessibilité, RGAA 4.1), public: the real state
(not audited, hence « non conforme » as the RGAA requires), what is checked, what is known not to
work, and how to reach us (issue 16 item 16)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.web.templating import render

router = APIRouter(include_in_schema=False)

# The day this statement was written; change it with the statement.
STATEMENT_DATE = date(2026, 12, 5)


@router.get("/accessibilite")
async def accessibility(request: Request) -> Response:
    return render(
        request,
        "accessibility.html",
        {
            "title": "Déclaration d'accessibilité",
            "statement_date": STATEMENT_DATE,
            "contact": request.app.state.settings.accessibility_email,
        },
    )
