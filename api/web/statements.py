"""Statements (relevés) as sites and financers read them: list, detail with lines, payment
status, and the CSV/PDF downloads of the JSON API (same scoping: one's own statements only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from api.deps import SessionDep
from api.security import Principal
from api.web import csrf
from api.web.session import FinancerPage, MediatorPage
from api.web.templating import render
from clearing import invoices, statements
from kit.errors import DomainError

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

# A statement's status, in the words of the one who reads it.
STATUS_TEXT: dict[str, dict[str, str]] = {
    "site": {
        "open": "Virement à venir",
        "held": "Virement suspendu",
        "processing": "Virement en cours",
        "paid": "Payé",
        "failed": "Virement échoué",
    },
    "financer": {
        "open": "À régler",
        "processing": "Prélèvement en cours",
        "paid": "Réglé",
        "failed": "Prélèvement échoué",
        "held": "Suspendu",
    },
    "credit_note": {
        "issued": "Avoir émis",
        "paid": "Avoir remboursé",
        "open": "Avoir à rembourser",
    },
}
STATUS_BADGE = {
    "open": "new", "held": "warning", "processing": "info", "paid": "success",
    "failed": "error", "issued": "success",
}  # fmt: skip


def status_text(kind: str, status: str) -> str:
    return STATUS_TEXT.get(kind, {}).get(status, status)


def _context() -> dict[str, object]:
    return {"status_text": status_text, "status_badge": STATUS_BADGE}


async def _list(request: Request, principal: Principal, session: SessionDep, base: str) -> Response:
    found = await statements.list_statements(session, organisation_id=principal.organisation_id)
    return render(
        request,
        "statements/list.html",
        {"title": "Relevés", "statements": found, "base": base, **_context()},
    )


async def _detail(
    request: Request, principal: Principal, session: SessionDep, statement_id: int, base: str
) -> Response:
    try:
        statement = await statements.get_statement(
            session, statement_id, organisation_id=principal.organisation_id
        )
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    billed = (await invoices.statement_invoices(session, statement.id)
              if statement.kind == "financer" else [])
    return render(
        request,
        "statements/detail.html",
        {"title": f"Relevé n° {statement.id}", "s": statement, "base": base,
         "invoices": billed, **_context()},
    )


@router.get("/mediateur/releves")
async def site_statements(
    request: Request, principal: MediatorPage, session: SessionDep
) -> Response:
    return await _list(request, principal, session, "/mediateur/releves")


@router.get("/mediateur/releves/{statement_id}")
async def site_statement(
    statement_id: int, request: Request, principal: MediatorPage, session: SessionDep
) -> Response:
    return await _detail(request, principal, session, statement_id, "/mediateur/releves")


@router.get("/financeur/releves")
async def financer_statements(
    request: Request, principal: FinancerPage, session: SessionDep
) -> Response:
    return await _list(request, principal, session, "/financeur/releves")


@router.get("/financeur/releves/{statement_id}")
async def financer_statement(
    statement_id: int, request: Request, principal: FinancerPage, session: SessionDep
) -> Response:
    return await _detail(request, principal, session, statement_id, "/financeur/releves")
