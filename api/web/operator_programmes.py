"""The operator's programme pages: list, creation form, detail with live figures, stock orders."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from api.deps import SessionDep
from api.web import csrf
from api.web.forms import (
    ParseError,
    domain_error_fields,
    dotted_field_errors,
    parse_euros,
    parse_int,
    parse_percent_bp,
)
from api.web.session import OperatorPage, redirect
from api.web.templating import render
from kit.clock import paris_today, utcnow
from kit.errors import DomainError
from pass_ import accounts, issuance, programmes, reporting
from pass_.enums import DemarcheFamily, FinancerRole, OrganisationKind, label
from pass_.programmes import Actor
from pass_.schemas import ProgrammeCreate

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

FINANCER_ROWS = 4
ISSUER_ROWS = 3
ROLE_OPTIONS = [
    (FinancerRole.state.value, "État (part plafonnée)"),
    (FinancerRole.local.value, "Collectivité ou organisme (part partagée)"),
    (FinancerRole.operator.value, "Organisme « pollueur-payeur » (démarches choisies)"),
]
DEMARCHE_OPTIONS = [(d.value, label(d)) for d in DemarcheFamily]


async def _programme_rows(session: SessionDep, principal: Any) -> list[dict[str, Any]]:
    # Every programme's figures in one read of the rollup (not one count of cheques each).
    found = await programmes.list_programmes(session, Actor.of(principal))
    figures = await reporting.list_figures_of(session, found)
    return [{"programme": p, "figures": figures[p.id]} for p in found]  # type: ignore[index]


async def _lag(session: SessionDep) -> dict[str, Any]:
    as_of, pending = await reporting.rollup_lag(session)
    return {"figures_as_of": as_of, "figures_pending": pending}


async def home_figures(session: SessionDep, principal: Any) -> dict[str, Any]:
    return {"programmes": await _programme_rows(session, principal), **await _lag(session)}


@router.get("/operateur/programmes")
async def programme_list(
    request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    return render(
        request,
        "operator/programmes.html",
        {
            "title": "Programmes",
            "programmes": await _programme_rows(session, principal),
            **await _lag(session),
        },
    )


async def _form(
    request: Request,
    session: SessionDep,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    financers = await accounts.list_organisations(session, kind=OrganisationKind.financer)
    issuers = await accounts.list_organisations(session, kind=OrganisationKind.issuer)
    return render(
        request,
        "operator/programme_new.html",
        {
            "title": "Créer un programme",
            "values": values,
            "errors": errors,
            "financer_options": [(o.id, o.name) for o in financers],
            "issuer_options": [(o.id, o.name) for o in issuers],
            "role_options": ROLE_OPTIONS,
            "demarche_options": DEMARCHE_OPTIONS,
            "financer_rows": range(FINANCER_ROWS),
            "issuer_rows": range(ISSUER_ROWS),
        },
        status_code=status,
    )


@router.get("/operateur/programmes/nouveau")
async def programme_new(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    today = paris_today()
    values = {
        "face_value": "10",
        "booklet_sizes": "5, 10",
        "state_share": "50",
        "valid_from": today.isoformat(),
    }
    return await _form(request, session, values, {})


def _read_form(form: FormData) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The raw values (to show back), the data for ProgrammeCreate, and parsing errors."""
    values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    errors: dict[str, str] = {}
    data: dict[str, Any] = {
        "name": values.get("name", "").strip(),
        "territory": [
            c.strip() for c in values.get("territory", "").replace(";", ",").split(",") if c.strip()
        ],
    }
    for key in ("valid_from", "valid_until", "redeem_until"):
        if values.get(key):
            data[key] = values[key]

    def number(field: str, parse: Any, target: str, into: dict[str, Any]) -> None:
        try:
            parsed = parse(values.get(field))
        except ParseError as exc:
            errors[field] = str(exc)
            return
        if parsed is not None:
            into[target] = parsed

    number("face_value", parse_euros, "face_value_cents", data)
    number("state_share", parse_percent_bp, "state_share_bp", data)
    number("financer_fee", parse_percent_bp, "financer_fee_bp", data)
    number("site_commission", parse_percent_bp, "site_commission_bp", data)
    sizes = values.get("booklet_sizes", "").replace(";", ",").split(",")
    try:
        data["booklet_sizes"] = [int(s) for s in (x.strip() for x in sizes) if s]
    except ValueError:
        errors["booklet_sizes"] = "Écrivez les tailles séparées par des virgules : 5, 10."
    financers = []
    for i in range(FINANCER_ROWS):
        if not values.get(f"financers.{i}.organisation_id"):
            continue
        row: dict[str, Any] = {
            "organisation_id": values[f"financers.{i}.organisation_id"],
            "role": values.get(f"financers.{i}.role") or None,
            "demarche_families": form.getlist(f"financers.{i}.demarche_families"),
        }
        number(f"financers.{i}.commitment", parse_euros, "commitment_cents", row)
        number(f"financers.{i}.weight", parse_int, "weight", row)
        financers.append(row)
    data["financers"] = financers
    issuers = []
    for i in range(ISSUER_ROWS):
        if not values.get(f"issuers.{i}.organisation_id"):
            continue
        row = {"organisation_id": values[f"issuers.{i}.organisation_id"]}
        number(f"issuers.{i}.quota", parse_int, "quota_cheques", row)
        issuers.append(row)
    data["issuers"] = issuers
    for i in range(FINANCER_ROWS):
        values[f"financers.{i}.demarche_families"] = form.getlist(
            f"financers.{i}.demarche_families"
        )
    return values, data, errors


# Schema paths → the form's field names (only those that differ).
_FIELD_OF = {
    "face_value_cents": "face_value",
    "state_share_bp": "state_share",
    "financer_fee_bp": "financer_fee",
    "site_commission_bp": "site_commission",
    "commitment_cents": "commitment",
    "quota_cheques": "quota",
}


def _form_field(path: str) -> str:
    head, _, last = path.rpartition(".")
    last = _FIELD_OF.get(last, last)
    return f"{head}.{last}" if head else last


@router.post("/operateur/programmes/nouveau")
async def programme_create(
    request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    values, data, errors = _read_form(await request.form())
    if not data["financers"]:
        errors["financers.0.organisation_id"] = "Indiquez au moins un financeur."
    if errors:
        return await _form(request, session, values, errors, 400)
    try:
        create = ProgrammeCreate(**data)
    except ValidationError as exc:
        errors = {_form_field(k): v for k, v in dotted_field_errors(exc).items()}
        return await _form(request, session, values, errors, 400)
    try:
        async with session.begin_nested():  # a refusal undoes only this
            programme = await programmes.create_programme(session, create, today=paris_today())
    except DomainError as exc:
        errors = domain_error_fields(exc)
        errors = {_form_field(k): v for k, v in errors.items()}
        if "_form" not in errors:
            errors["_form"] = exc.message
        return await _form(request, session, values, errors, 400)
    return redirect(
        request,
        f"/operateur/programmes/{programme.id}",
        flash=("success", f"Programme « {programme.name} » créé."),
    )


async def _detail_page(
    request: Request,
    session: SessionDep,
    principal: Any,
    programme_id: int,
    *,
    order_values: dict[str, Any] | None = None,
    order_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    programme = await programmes.visible_programme(session, programme_id, Actor.of(principal))
    totals = (await reporting.stage_totals(session, programme.id)).get(programme.id)  # type: ignore[arg-type]
    detail = await programmes.programme_detail(
        session, programme, figures=reporting.programme_figures(programme, totals)
    )
    return render(
        request,
        "operator/programme.html",
        {
            "title": detail.name,
            "p": detail,
            "issuer_options": [(i.organisation_id, i.name) for i in detail.issuers],
            "size_options": [(n, f"{n} chèques") for n in detail.booklet_sizes],
            "values": order_values or {},
            "errors": order_errors or {},
            **await _lag(session),
        },
        status_code=status,
    )


@router.get("/operateur/programmes/{programme_id}")
async def programme_page(
    programme_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    try:
        return await _detail_page(request, session, principal, programme_id)
    except DomainError:
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)


@router.post("/operateur/programmes/{programme_id}/commandes")
async def order_stock(
    programme_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    """Booklets printed ahead for an issuer (in stock, worthless until handed out)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    errors: dict[str, str] = {}
    try:
        issuer_id = parse_int(values.get("issuer_id"))
        count = parse_int(values.get("booklets"))
        size = parse_int(values.get("size"))
    except ParseError as exc:
        errors["booklets"] = str(exc)
    else:
        if issuer_id is None:
            errors["issuer_id"] = "Choisissez la structure prescriptrice."
        if count is None:
            errors["booklets"] = "Indiquez le nombre de carnets."
        if size is None:
            errors["size"] = "Choisissez la taille des carnets."
    if not errors:
        try:
            async with session.begin_nested():  # a refusal undoes only this
                order = await issuance.order_booklets(
                    session,
                    keyring=request.app.state.keyring,
                    actor=Actor.of(principal),
                    programme_id=programme_id,
                    issuer_id=issuer_id,  # type: ignore[arg-type]
                    booklets=count,  # type: ignore[arg-type]
                    size=size,  # type: ignore[arg-type]
                    now=utcnow(),
                )
        except DomainError as exc:
            errors = {"_form": exc.message}
        else:
            return redirect(
                request,
                f"/operateur/programmes/{programme_id}",
                flash=(
                    "success",
                    f"Commande n° {order.id} : {order.booklet_count} carnets en stock. "
                    f"PDF à imprimer : {order.pdf_url}",
                ),
            )
    return await _detail_page(
        request,
        session,
        principal,
        programme_id,
        order_values=values,
        order_errors=errors,
        status=400,
    )
