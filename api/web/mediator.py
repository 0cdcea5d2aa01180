"""The mediator's pages (digital-mediation site): scan and redeem, today's redemptions with
undo, bank details. Statements live in `web/statements.py`.

Redeeming from the page goes through the same service and the same idempotency record as
`POST /api/v1/redemptions` (same fingerprint), so a scan whose answer was lost and that the
page then queued offline is replayed by the batch endpoint, never redeemed twice.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError
from starlette.responses import Response

from api import anomaly_watch, idempotency, redeem_online
from api.deps import SessionDep
from api.ratelimit import enforce
from api.routers.redemptions import REDEEM_PATH
from api.security import Principal
from api.web import csrf
from api.web.forms import blank_to_none, field_errors
from api.web.session import MediatorPage, redirect
from api.web.templating import date_fr, datetime_fr, eur_short, render
from kit.clock import paris_today, utcnow
from kit.errors import DomainError
from pass_ import accounts, redemption_listing
from pass_ import redemption as service
from pass_.enums import DemarcheFamily, Service, label
from pass_.redemption_schemas import RedemptionCreate
from pass_.schemas import BankDetailsUpdate

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])

SERVICE_OPTIONS = [(s.value, label(s)) for s in Service]
DEMARCHE_OPTIONS = [(d.value, label(d)) for d in DemarcheFamily]
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

# What a mediator reads when a cheque is refused: a plain title and what to do next.
REFUSALS: dict[str, tuple[str, str]] = {
    "cheque_already_redeemed": (
        "Chèque déjà encaissé",
        "Ne le reprenez pas : demandez à la personne un autre chèque de son carnet.",
    ),
    "cheque_not_found": (
        "Chèque inconnu",
        "Vérifiez le numéro (il est écrit sous le QR code) ou scannez à nouveau.",
    ),
    "invalid_serial": (
        "Numéro incomplet ou mal écrit",
        "Le numéro ressemble à PN-XXXX-XXXX-XXXX-X : vérifiez chaque caractère.",
    ),
    "serial_check_failed": (
        "Numéro mal recopié",
        "Un caractère est faux : relisez le numéro inscrit sous le QR code.",
    ),
    "invalid_token": (
        "QR code illisible ou falsifié",
        "Scannez à nouveau ou saisissez le numéro inscrit sous le QR code.",
    ),
    "cheque_expired": (
        "Chèque expiré",
        "Il n'est plus encaissable. La personne peut demander un nouveau carnet à la "
        "structure qui le lui a remis.",
    ),
    "cheque_cancelled": (
        "Chèque annulé",
        "Son carnet a été déclaré perdu ou volé. Orientez la personne vers la structure qui "
        "le lui a remis.",
    ),
    "cheque_not_active": (
        "Chèque pas encore activé",
        "Ce carnet n'a pas été remis officiellement : la structure prescriptrice doit le "
        "remettre à la personne pour l'activer.",
    ),
    "cheque_not_yet_valid": (
        "Chèque pas encore valable",
        "Il ne peut pas être encaissé avant le premier jour de validité du programme.",
    ),
    "site_not_qualified": (
        "Votre lieu ne peut pas encaisser",
        "Il n'est pas (ou plus) qualifié : contactez l'opérateur du Pass numérique.",
    ),
    "site_not_eligible": (
        "Chèque d'un autre territoire",
        "Ce chèque appartient à un programme qui ne couvre pas votre commune : la personne "
        "doit l'utiliser dans un lieu de son territoire.",
    ),
    "rate_limited": (
        "Trop de tentatives",
        "Attendez quelques secondes avant de recommencer.",
    ),
    "idempotency_conflict": (
        "Demande en double",
        "Rechargez la page et scannez à nouveau.",
    ),
    "validation_error": (
        "Informations manquantes",
        "Choisissez le service rendu et indiquez le numéro du chèque.",
    ),
}


def _outcome(status: int, body: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """What the result panel shows, from the API-shaped answer (success body or error body)."""
    if status < 300:
        return {
            "ok": True,
            "title": f"Chèque encaissé — {eur_short(body['value_cents'])}",
            "serial": body["cheque_serial"],
            "detail": f"Encaissé le {datetime_fr(datetime.fromisoformat(body['redeemed_at']))}",
            "service": label(chosen.get("service")) if chosen.get("service") else None,
            "demarche": label(chosen["demarche_family"]) if chosen.get("demarche_family") else None,
        }
    error = body.get("error", {})
    code = error.get("code", "")
    title, advice = REFUSALS.get(code, ("Chèque refusé", "Vérifiez le chèque et recommencez."))
    details = error.get("details") or {}
    when = details.get("redeemed_at")
    message = error.get("message")
    if code == "cheque_already_redeemed" and when:
        message = f"Il a été encaissé le {datetime_fr(datetime.fromisoformat(when))}."
    valid_from = details.get("valid_from")
    if code == "cheque_not_yet_valid" and valid_from:
        advice = f"Il sera encaissable à partir du {date_fr(_day(valid_from))}."
    return {"ok": False, "title": title, "message": message, "advice": advice}


def _day(text: str) -> date:
    return date.fromisoformat(text[:10])


async def _scan_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    *,
    outcome: dict[str, Any] | None = None,
    chosen: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    site = await accounts.get_organisation(session, principal.organisation_id)
    chosen = chosen or {}
    return render(
        request,
        "mediator/scan.html",
        {
            "title": "Scanner un chèque",
            "site": site,
            "service_options": SERVICE_OPTIONS,
            "demarche_options": DEMARCHE_OPTIONS,
            "chosen_service": chosen.get("service"),
            "chosen_demarche": chosen.get("demarche_family"),
            "idempotency_key": uuid.uuid4().hex,
            "outcome": outcome,
        },
        status_code=status,
    )


@router.get("/mediateur")
async def scan(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    return await _scan_page(request, principal, session)


@router.post("/mediateur/encaisser")
async def redeem(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    form = await request.form()
    chosen = blank_to_none(form, "code", "service", "demarche_family", "idempotency_key")
    key = chosen["idempotency_key"] if _KEY.match(chosen["idempotency_key"] or "") else None
    try:
        enforce(request, principal)
        data = RedemptionCreate.model_validate(
            {
                "code": chosen["code"] or "",
                "service": chosen["service"] or "",
                "demarche_family": chosen["demarche_family"],
            }
        )
    except HTTPException as exc:  # rate limited
        detail: dict[str, Any] = exc.detail if isinstance(exc.detail, dict) else {}
        answer = idempotency.answer_of_error(
            DomainError(detail.get("message"), code=detail.get("code", "rate_limited"))
        )
    except ValidationError as exc:
        errors = field_errors(exc)
        message = (
            "Choisissez le service rendu (étape 1)."
            if "service" in errors
            else "Scannez le QR code ou saisissez le numéro du chèque."
        )
        answer = idempotency.answer_of_error(DomainError(message, code="validation_error"))
    else:
        fingerprint = idempotency.fingerprint("POST", REDEEM_PATH, data.model_dump(mode="json"))
        answer, _ = await redeem_online.redeem(
            request, session, principal, key=key or uuid.uuid4().hex, fingerprint=fingerprint,
            scan=service.OnlineScanIn(principal.organisation_id, principal.user_id, data.code,
                                      data.service, data.demarche_family),
        )
    anomaly_watch.note_refusal(request, principal, answer)  # issue 16: anomaly watch
    outcome = _outcome(answer.status, answer.json(), chosen)
    if request.headers.get("x-fragment"):
        return render(request, "mediator/_result.html", {"outcome": outcome})
    return await _scan_page(request, principal, session, outcome=outcome, chosen=chosen)


@router.get("/mediateur/encaissements")
async def today(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    day = paris_today()
    listing = await redemption_listing.list_redemptions(
        session,
        site_id=principal.organisation_id,
        now=utcnow(),
        from_day=day,
        to_day=day,
        limit=200,
        viewer_site_id=principal.organisation_id,
    )
    live = [r for r in listing.items if r.reversed_at is None]
    return render(
        request,
        "mediator/today.html",
        {
            "title": "Encaissements du jour",
            "day": day,
            "items": listing.items,
            "total_cents": sum(r.value_cents for r in live),
            "count": len(live),
        },
    )


@router.post("/mediateur/encaissements/{redemption_id}/annuler")
async def reverse(
    redemption_id: int, request: Request, principal: MediatorPage, session: SessionDep
) -> Response:
    try:
        async with session.begin_nested():  # a refusal undoes only this
            reversal = await service.reverse_redemption(
                session,
                site_id=principal.organisation_id,
                redemption_id=redemption_id,
                now=utcnow(),
            )
    except DomainError as exc:
        return redirect(request, "/mediateur/encaissements", flash=("error", exc.message))
    return redirect(
        request,
        "/mediateur/encaissements",
        flash=(
            "success",
            f"Encaissement du chèque {reversal.cheque_serial} annulé : le chèque est de nouveau "
            "utilisable.",
        ),
    )


async def _bank_page(
    request: Request,
    principal: Principal,
    session: SessionDep,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    org = await accounts.get_organisation(session, principal.organisation_id)
    return render(
        request,
        "mediator/bank.html",
        {
            "title": "Coordonnées bancaires",
            "org": org,
            "values": values or {"iban": org.iban or "", "bic": org.bic or ""},
            "errors": errors or {},
        },
        status_code=status,
    )


@router.get("/mediateur/banque")
async def bank(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    return await _bank_page(request, principal, session)


@router.post("/mediateur/banque")
async def bank_update(request: Request, principal: MediatorPage, session: SessionDep) -> Response:
    values = blank_to_none(await request.form(), "iban", "bic")
    try:
        async with session.begin_nested():  # a refusal undoes only this
            data = BankDetailsUpdate(iban=values["iban"] or "", bic=values["bic"])
            await accounts.update_bank_details(
                session, organisation_id=principal.organisation_id, data=data
            )
    except ValidationError as exc:
        return await _bank_page(
            request, principal, session, values=values, errors=field_errors(exc), status=400
        )
    except DomainError as exc:
        return await _bank_page(
            request, principal, session, values=values, errors={"_form": exc.message}, status=400
        )
    return redirect(
        request,
        "/mediateur/banque",
        flash=(
            "success",
            "Coordonnées bancaires enregistrées : les prochains virements iront sur ce compte.",
        ),
    )
