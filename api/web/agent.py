"""The issuer agent's pages (CCAS, France services…): beneficiaries, booklets issued at the desk
or handed out from stock, their PDF, cancellation, quota and history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from api.deps import SessionDep
from api.security import Principal
from api.web import csrf
from api.web.forms import ParseError, blank_to_none, domain_error_fields, field_errors, parse_int
from api.web.session import AgentPage, redirect
from api.web.templating import render
from api.web.validity import alerts_for
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import beneficiaries, booklet_print, issuance, programmes, reporting
from pass_ import communes as commune_ref
from pass_.enums import BookletStatus, NeedLevel
from pass_.programmes import Actor
from pass_.schemas import BeneficiaryCreate, BookletCancel

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

NEED_LEVELS = [
    (
        NeedLevel.urgence.value,
        "Urgence numérique",
        "La personne risque de perdre un droit faute de démarche en ligne.",
    ),
    (
        NeedLevel.inclusion.value,
        "Inclusion numérique",
        "La personne veut devenir autonome pour ses démarches.",
    ),
    (
        NeedLevel.competences.value,
        "Montée en compétences",
        "La personne veut aller plus loin avec le numérique.",
    ),
]
STATUS_OPTIONS = [(s.value, s.value) for s in BookletStatus]


async def _programmes_with_quota(session: SessionDep, principal: Principal) -> list[dict[str, Any]]:
    """The issuer's programmes, each with this issuer's quota row."""
    rows = []
    found = await programmes.list_programmes(session, Actor.of(principal))
    figures = await reporting.figures_of(session, found)  # the rollup's, not a count each
    for programme in found:
        detail = await programmes.programme_detail(
            session, programme, figures=figures[programme.id]  # type: ignore[index]
        )
        own = next(
            (i for i in detail.issuers if i.organisation_id == principal.organisation_id), None
        )
        rows.append({"p": detail, "quota": own})
    return rows


@router.get("/prescripteur")
async def home(request: Request, principal: AgentPage, session: SessionDep) -> Response:
    recent = await issuance.list_booklets(session, actor=Actor.of(principal), per_page=10)
    return render(
        request,
        "agent/home.html",
        {
            "title": "Accueil structure prescriptrice",
            "programmes": await _programmes_with_quota(session, principal),
            "recent": recent,
            "validity_alerts": await alerts_for(request, principal, session),
        },
    )


async def _beneficiaries_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    *,
    reference: str = "",
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    found = (
        await beneficiaries.find_beneficiaries(
            session, issuer_id=principal.organisation_id, reference=reference
        )
        if reference.strip()
        else None
    )
    return render(
        request,
        "agent/beneficiaries.html",
        {
            "title": "Bénéficiaires",
            "reference": reference,
            "found": found,
            "need_levels": NEED_LEVELS,
            "values": values or {"reference": reference},
            "errors": errors or {},
        },
        status_code=status,
    )


@router.get("/prescripteur/beneficiaires")
async def beneficiary_search(
    request: Request, principal: AgentPage, session: SessionDep, reference: str = ""
) -> Response:
    return await _beneficiaries_page(request, principal, session, reference=reference[:64])


@router.post("/prescripteur/beneficiaires")
async def beneficiary_create(
    request: Request, principal: AgentPage, session: SessionDep
) -> Response:
    form = await request.form()
    values = blank_to_none(form, "reference", "need_level", "birth_year", "commune_insee")
    try:
        # A commune picked by name or postcode (pass_/communes.py), stored as its INSEE code.
        code = await commune_ref.resolve(session, values["commune_insee"], field="commune_insee")
    except DomainError as exc:
        return await _beneficiaries_page(
            request,
            principal,
            session,
            values=values,
            errors={"commune_insee": exc.message},
            status=400,
        )
    try:
        data = BeneficiaryCreate(**{**values, "commune_insee": code})  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = field_errors(exc)
        if "need_level" in errors:
            errors["need_level"] = "Choisissez le niveau de besoin."
        if "birth_year" in errors:
            errors["birth_year"] = "Écrivez une année sur 4 chiffres, par exemple 1958."
        return await _beneficiaries_page(
            request, principal, session, values=values, errors=errors, status=400
        )
    try:
        async with session.begin_nested():  # a refusal undoes only this
            person = await beneficiaries.create_beneficiary(
                session, issuer_id=principal.organisation_id, data=data
            )
    except DomainError as exc:
        errors = {"reference": exc.message} if exc.code == "beneficiary_exists" else {}
        errors = errors or domain_error_fields(exc)
        return await _beneficiaries_page(
            request, principal, session, values=values, errors=errors, status=400
        )
    return redirect(
        request,
        f"/prescripteur/beneficiaires/{person.id}",
        flash=("success", f"Bénéficiaire « {person.reference} » enregistré."),
    )


async def _beneficiary_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    beneficiary_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    person = await beneficiaries.get_beneficiary(
        session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id
    )
    booklets = await issuance.list_booklets(
        session, actor=Actor.of(principal), beneficiary_id=beneficiary_id, per_page=50
    )
    rows = await _programmes_with_quota(session, principal)
    return render(
        request,
        "agent/beneficiary.html",
        {
            "title": f"Bénéficiaire {person.reference or person.id}",
            "person": person,
            "need_label": {n: t for n, t, _ in NEED_LEVELS}.get(person.need_level),
            "booklets": booklets,
            "programmes": rows,
            "programme_options": [(r["p"].id, r["p"].name) for r in rows],
            "validity_alerts": await alerts_for(request, principal, session),
            "commune_name": (await commune_ref.names(session, [person.commune_insee])).get(
                person.commune_insee or ""
            ),
            "values": values or {},
            "errors": errors or {},
        },
        status_code=status,
    )


@router.get("/prescripteur/beneficiaires/{beneficiary_id}")
async def beneficiary(
    beneficiary_id: int, request: Request, principal: AgentPage, session: SessionDep
) -> Response:
    try:
        return await _beneficiary_page(request, principal, session, beneficiary_id)
    except DomainError:
        return _not_found(request)


@router.post("/prescripteur/beneficiaires/{beneficiary_id}/carnets")
async def issue(
    beneficiary_id: int, request: Request, principal: AgentPage, session: SessionDep
) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    errors: dict[str, str] = {}
    try:
        programme_id = parse_int(values.get("programme_id"))
        size = parse_int(values.get("size"))
    except ParseError as exc:
        programme_id = size = None
        errors["_form"] = str(exc)
    if programme_id is None:
        errors.setdefault("programme_id", "Choisissez le programme.")
    if size is None:
        errors.setdefault("size", "Choisissez le nombre de chèques du carnet.")
    if not errors:
        try:
            async with session.begin_nested():  # a refusal undoes only this
                booklet = await issuance.issue_booklet(
                    session,
                    keyring=request.app.state.keyring,
                    actor=Actor.of(principal),
                    programme_id=programme_id,  # type: ignore[arg-type]
                    beneficiary_id=beneficiary_id,
                    size=size,  # type: ignore[arg-type]
                    now=utcnow(),
                )
        except DomainError as exc:
            errors = {"_form": exc.message}
        else:
            return redirect(
                request,
                f"/prescripteur/carnets/{booklet.number}",
                flash=(
                    "success",
                    f"Carnet {booklet.number} émis : {booklet.size} chèques. "
                    "Ouvrez le PDF pour l'imprimer et le remettre.",
                ),
            )
    try:
        return await _beneficiary_page(
            request, principal, session, beneficiary_id, values=values, errors=errors, status=400
        )
    except DomainError:
        return _not_found(request)


@router.get("/prescripteur/carnets")
async def booklet_history(
    request: Request,
    principal: AgentPage,
    session: SessionDep,
    numero: str = "",
    statut: str = "",
    page: int = 1,
) -> Response:
    status = BookletStatus(statut) if statut in BookletStatus.__members__ else None
    listing = await issuance.list_booklets(
        session,
        actor=Actor.of(principal),
        page=max(1, min(page, 100_000)),
        per_page=25,
        number=numero.strip()[:40] or None,
        status=status,
    )
    return render(
        request,
        "agent/booklets.html",
        {
            "title": "Carnets émis",
            "listing": listing,
            "numero": numero,
            "statut": status.value if status else "",
            "status_options": STATUS_OPTIONS,
            "pages": max(1, -(-listing.total // listing.per_page)),
        },
    )


async def _booklet_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    ref: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    booklet = await issuance.get_booklet(session, actor=Actor.of(principal), ref=ref)
    person = None
    if booklet.beneficiary_id:
        person = await beneficiaries.get_beneficiary(
            session, issuer_id=principal.organisation_id, beneficiary_id=booklet.beneficiary_id
        )
    return render(
        request,
        "agent/booklet.html",
        {
            "title": f"Carnet {booklet.number}",
            "b": booklet,
            "person": person,
            "value_cents": sum(c.value_cents for c in booklet.cheques),
            "errors": errors or {},
            "values": values or {},
        },
        status_code=status,
    )


@router.get("/prescripteur/carnets/{ref}")
async def booklet(
    ref: str, request: Request, principal: AgentPage, session: SessionDep
) -> Response:
    try:
        return await _booklet_page(request, principal, session, ref)
    except DomainError:
        return _not_found(request)


@router.get("/prescripteur/carnets/{ref}/pdf")
async def booklet_pdf(
    ref: str, request: Request, principal: AgentPage, session: SessionDep
) -> Response:
    try:
        content = await booklet_print.booklet_pdf(
            session,
            actor=Actor.of(principal),
            ref=ref,
            public_url=request.app.state.settings.public_url,
        )
    except DomainError:
        return _not_found(request)
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="carnet-{ref}.pdf"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/prescripteur/carnets/{ref}/annuler")
async def cancel(ref: str, request: Request, principal: AgentPage, session: SessionDep) -> Response:
    form = await request.form()
    values = blank_to_none(form, "reason")
    try:
        data = BookletCancel(reason=values["reason"] or "")
    except ValidationError:
        errors = {"reason": "Indiquez la raison de l'annulation (3 caractères au moins)."}
        return await _booklet_page(
            request, principal, session, ref, errors=errors, values=values, status=400
        )
    try:
        async with session.begin_nested():  # a refusal undoes only this
            booklet = await issuance.cancel_booklet(
                session, actor=Actor.of(principal), ref=ref, reason=data.reason, now=utcnow()
            )
    except DomainError as exc:
        try:
            return await _booklet_page(
                request, principal, session, ref, errors={"_form": exc.message}, status=400
            )
        except DomainError:
            return _not_found(request)
    return redirect(
        request,
        f"/prescripteur/carnets/{booklet.number}",
        flash=("success", f"Carnet {booklet.number} annulé : ses chèques ne valent plus rien."),
    )


async def _hand_out_page(
    request: Request,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "agent/hand_out.html",
        {"title": "Remettre un carnet du stock", "values": values or {}, "errors": errors or {}},
        status_code=status,
    )


@router.get("/prescripteur/remise")
async def hand_out_form(
    request: Request, principal: AgentPage, beneficiaire: int | None = None
) -> Response:
    return await _hand_out_page(request, {"beneficiary_id": beneficiaire})


@router.post("/prescripteur/remise")
async def hand_out(request: Request, principal: AgentPage, session: SessionDep) -> Response:
    form = await request.form()
    values = blank_to_none(form, "number", "reference", "beneficiary_id")
    errors: dict[str, str] = {}
    if not values["number"]:
        errors["number"] = "Saisissez ou scannez le numéro du carnet (sur sa couverture)."
    beneficiary_id: int | None = None
    if values["beneficiary_id"]:
        try:
            beneficiary_id = parse_int(values["beneficiary_id"])
        except ParseError:
            beneficiary_id = None
    elif values["reference"]:
        matches = await beneficiaries.find_beneficiaries(
            session, issuer_id=principal.organisation_id, reference=values["reference"]
        )
        exact = [b for b in matches if (b.reference or "").lower() == values["reference"].lower()]
        if exact:
            beneficiary_id = exact[0].id
        else:
            errors["reference"] = (
                "Aucun bénéficiaire n'a cette référence : créez-le d'abord dans « Bénéficiaires »."
            )
    else:
        errors["reference"] = "Indiquez la référence du bénéficiaire."
    if not errors and beneficiary_id is not None:
        try:
            async with session.begin_nested():  # a refusal undoes only this
                booklet = await issuance.hand_out(
                    session,
                    actor=Actor.of(principal),
                    ref=values["number"],
                    beneficiary_id=beneficiary_id,
                    now=utcnow(),
                    hand_out_stop_days=request.app.state.settings.hand_out_stop_days,
                )
        except DomainError as exc:
            errors = {"number": exc.message}
        else:
            return redirect(
                request,
                f"/prescripteur/carnets/{booklet.number}",
                flash=("success", f"Carnet {booklet.number} remis : ses chèques sont actifs."),
            )
    return await _hand_out_page(request, values, errors, 400)


def _not_found(request: Request) -> Response:
    return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
