"""The operator's pages: organisations, site qualification, users (programmes and clearing
pages live in their own modules)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from api.deps import SessionDep
from api.web import csrf
from api.web.forms import blank_to_none, domain_error_fields, field_errors
from api.web.operator_programmes import home_figures
from api.web.session import OperatorPage, redirect
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import accounts, reporting
from pass_ import communes as commune_ref
from pass_.enums import (
    ROLE_KIND,
    FinancerCategory,
    OrganisationKind,
    Qualification,
    Service,
    label,
)
from pass_.schemas import OrganisationCreate, UserCreate

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

KIND_OPTIONS = [(k.value, label(k)) for k in OrganisationKind if k != OrganisationKind.operator]
CATEGORY_LABELS = {
    "state": "État",
    "region": "Région",
    "departement": "Département",
    "epci": "Intercommunalité (EPCI)",
    "commune": "Commune",
    "organisme": "Organisme (CAF, CPAM, CNAV, MSA, France Travail…)",
    "autre": "Autre",
}
CATEGORY_OPTIONS = [(c.value, CATEGORY_LABELS.get(c.value, c.value)) for c in FinancerCategory]
SERVICE_OPTIONS = [(s.value, label(s)) for s in Service]
QUALIFY_ACTIONS = {
    "qualifier": (Qualification.qualified, "« {name} » est qualifié : il peut encaisser."),
    "suspendre": (Qualification.suspended, "« {name} » est suspendu : il ne peut plus encaisser."),
    "retirer": (Qualification.withdrawn, "« {name} » est retiré du dispositif."),
}


def _role_of_kind(kind: str) -> str:
    return next(role.value for role, k in ROLE_KIND.items() if k.value == kind)


@router.get("/operateur")
async def home(request: Request, principal: OperatorPage, session: SessionDep) -> Response:
    # Counted by the database, and only the pending sites loaded (not every organisation).
    counts = await reporting.organisation_counts(session)
    pending = await accounts.list_organisations(
        session, kind=OrganisationKind.site, qualification=Qualification.pending
    )
    return render(
        request,
        "operator/home.html",
        {
            "title": "Accueil opérateur",
            "counts": counts,
            "pending": pending,
            "commune_names": await commune_ref.names(session, (o.commune_insee for o in pending)),
            **await home_figures(session, principal),
        },
    )


@router.get("/operateur/organisations")
async def organisations(
    request: Request, principal: OperatorPage, session: SessionDep, type: str | None = None
) -> Response:
    kind = OrganisationKind(type) if type and type in OrganisationKind.__members__ else None
    orgs = await accounts.list_organisations(session, kind=kind)
    return render(
        request,
        "operator/organisations.html",
        {
            "title": "Organisations",
            "organisations": orgs,
            "commune_names": await commune_ref.names(session, (o.commune_insee for o in orgs)),
            "kind_filter": kind.value if kind else "",
            "kind_options": [(k.value, label(k)) for k in OrganisationKind],
        },
    )


def _organisation_form(
    request: Request, values: dict[str, object], errors: dict[str, str], status: int = 200
) -> Response:
    return render(
        request,
        "operator/organisation_new.html",
        {
            "title": "Ajouter une organisation",
            "values": values,
            "errors": errors,
            "kind_options": KIND_OPTIONS,
            "category_options": CATEGORY_OPTIONS,
            "service_options": SERVICE_OPTIONS,
        },
        status_code=status,
    )


@router.get("/operateur/organisations/nouvelle")
async def organisation_new(request: Request, principal: OperatorPage) -> Response:
    return _organisation_form(request, {"services": []}, {})


@router.post("/operateur/organisations/nouvelle")
async def organisation_create(
    request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    form = await request.form()
    values = blank_to_none(
        form, "kind", "name", "siret", "commune_insee", "address", "email", "iban", "bic",
        "financer_category",
    )  # fmt: skip
    values["services"] = [s for s in form.getlist("services") if isinstance(s, str)]
    if values["kind"] != OrganisationKind.financer.value:
        values["financer_category"] = None
    try:  # a commune picked by name or postcode (pass_/communes.py), kept as its INSEE code
        code = await commune_ref.resolve(session, values["commune_insee"], field="commune_insee")
    except DomainError as exc:
        return _organisation_form(request, values, domain_error_fields(exc), 400)
    try:
        data = OrganisationCreate(**{**values, "commune_insee": code})  # type: ignore[arg-type]
    except ValidationError as exc:
        return _organisation_form(request, values, field_errors(exc), 400)
    try:
        async with session.begin_nested():  # a refusal undoes only this
            org = await accounts.create_organisation(session, data)
    except DomainError as exc:
        return _organisation_form(request, values, domain_error_fields(exc), 400)
    return redirect(
        request,
        f"/operateur/organisations/{org.id}",
        flash=("success", f"Organisation « {org.name} » créée."),
    )


async def _organisation_page(
    request: Request,
    session: SessionDep,
    organisation_id: int,
    *,
    user_values: dict[str, object] | None = None,
    user_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    org = await accounts.get_organisation(session, organisation_id)
    users = await accounts.list_users(session, organisation_id=organisation_id)
    return render(
        request,
        "operator/organisation.html",
        {
            "title": org.name,
            "org": org,
            "commune_name": (await commune_ref.names(session, [org.commune_insee])).get(
                org.commune_insee
            ),
            "users": users,
            "role": _role_of_kind(org.kind),
            "values": user_values or {},
            "errors": user_errors or {},
            "category_labels": CATEGORY_LABELS,
        },
        status_code=status,
    )


@router.get("/operateur/organisations/{organisation_id}")
async def organisation(
    organisation_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    try:
        return await _organisation_page(request, session, organisation_id)
    except DomainError:
        return _not_found(request)


@router.post("/operateur/organisations/{organisation_id}/utilisateurs")
async def user_create(
    organisation_id: int, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    form = await request.form()
    values = blank_to_none(form, "email", "password")
    try:
        org = await accounts.get_organisation(session, organisation_id)
    except DomainError:
        return _not_found(request)
    try:
        async with session.begin_nested():  # a refusal undoes only this
            data = UserCreate(
                email=values["email"] or "",
                password=values["password"] or "",
                organisation_id=organisation_id,
                role=_role_of_kind(org.kind),  # type: ignore[arg-type]
            )
            user = await accounts.create_user(session, data)
    except ValidationError as exc:
        errors = field_errors(exc)
        if "password" in errors:
            errors["password"] = "Le mot de passe doit comporter au moins 10 caractères."
        return await _organisation_page(
            request, session, organisation_id, user_values=values, user_errors=errors, status=400
        )
    except DomainError as exc:
        errors = {"email": exc.message} if exc.code == "email_taken" else {"_form": exc.message}
        return await _organisation_page(
            request, session, organisation_id, user_values=values, user_errors=errors, status=400
        )
    return redirect(
        request,
        f"/operateur/organisations/{organisation_id}",
        flash=("success", f"Compte {user.email} créé ({label(user.role)})."),
    )


@router.get("/operateur/qualification")
async def qualification_queue(
    request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    sites = await accounts.list_organisations(session, kind=OrganisationKind.site)
    groups = {q.value: [s for s in sites if s.qualification == q.value] for q in Qualification}
    return render(
        request,
        "operator/qualification.html",
        {
            "title": "Qualification des lieux",
            "groups": groups,
            "commune_names": await commune_ref.names(session, (s.commune_insee for s in sites)),
        },
    )


@router.post("/operateur/lieux/{site_id}/{action}")
async def qualify(
    site_id: int, action: str, request: Request, principal: OperatorPage, session: SessionDep
) -> Response:
    if action not in QUALIFY_ACTIONS:
        return _not_found(request)
    to, message = QUALIFY_ACTIONS[action]
    try:
        async with session.begin_nested():  # a refusal undoes only this
            site = await accounts.set_qualification(session, site_id=site_id, to=to, now=utcnow())
    except DomainError as exc:
        return redirect(request, "/operateur/qualification", flash=("error", exc.message))
    return redirect(
        request, "/operateur/qualification", flash=("success", message.format(name=site.name))
    )


def _not_found(request: Request) -> Response:
    return render(
        request,
        "not_found.html",
        {"title": "Page introuvable"},
        status_code=404,
    )
