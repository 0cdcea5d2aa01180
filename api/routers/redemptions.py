"""Redemption over HTTP: redeem (idempotent), offline batches, reversal, listing (DESIGN.md §7)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from api import anomaly_watch, idempotency, redeem_online
from api.deps import SessionDep, SiteMediator, SiteMediatorToken, require
from api.idempotency import Answer, IdempotencyKey
from api.metrics import REDEMPTIONS
from api.ratelimit import enforce
from api.security import Principal
from kit.clock import Day, utcnow
from kit.errors import Forbidden
from pass_ import redemption as service
from pass_ import redemption_listing
from pass_.codes import is_serial_like
from pass_.enums import Role
from pass_.redemption_schemas import (
    OfflineBatch,
    OfflineBatchResult,
    OfflineScan,
    RedemptionCreate,
    RedemptionPage,
    RedemptionRead,
    ReversalRead,
)

router = APIRouter(prefix="/api/v1", tags=["encaissements"])

REDEEM_PATH = "/api/v1/redemptions"
MAX_ID = 2**63 - 1
RedemptionReader = Annotated[Principal, Depends(require(Role.site_mediator, Role.operator_admin))]


def _fingerprint(code: str, service_: str, demarche_family: str | None) -> str:
    # An offline item is the same request as the online POST of its code, service and
    # démarche: a scan tried online, then queued offline under the same key, replays the
    # online answer instead of being redeemed twice or refused as a conflict.
    body = {"code": code, "service": service_, "demarche_family": demarche_family}
    return idempotency.fingerprint("POST", REDEEM_PATH, body)


@router.post(
    "/redemptions",
    status_code=201,
    response_model=RedemptionRead,
    responses={
        403: {"description": "site_not_qualified, site_not_eligible"},
        404: {"description": "cheque_not_found"},
        409: {"description": "cheque_already_redeemed (details.redeemed_at), idempotency_conflict"},
        410: {"description": "cheque_expired, cheque_cancelled, cheque_not_active"},
        422: {
            "description": "cheque_not_yet_valid, invalid_token, invalid_serial, "
            "serial_check_failed, invalid_idempotency_key"
        },
        429: {"description": "rate_limited (Retry-After)"},
    },
)
async def redeem(
    data: RedemptionCreate,
    request: Request,
    principal: SiteMediatorToken,
    key: IdempotencyKey,
    session: SessionDep,
) -> Response:
    """Encaisse un chèque (code saisi ou QR). Rejouer la même clé rend la première réponse."""
    enforce(request, principal)
    answer, replayed = await redeem_online.redeem(
        request, session, principal, key=key,
        fingerprint=_fingerprint(data.code, data.service.value, _value(data.demarche_family)),
        scan=service.OnlineScanIn(principal.organisation_id, principal.user_id, data.code,
                                  data.service, data.demarche_family),
    )
    REDEMPTIONS.labels("replayed" if replayed else _outcome(answer)).inc()
    anomaly_watch.note_refusal(request, principal, answer, replayed)  # issue 16: anomaly watch
    return answer.response({"Idempotent-Replayed": "true"} if replayed else None)


@router.post("/redemptions/batch", response_model=OfflineBatchResult)
async def redeem_batch(
    data: OfflineBatch, request: Request, principal: SiteMediator, session: SessionDep
) -> Response:
    """Synchronise les scans faits hors connexion : chaque élément est accepté ou refusé seul."""
    # Only typed serials can be guessed; a signed QR code needs no rate limit.
    enforce(request, principal, cost=max(1, sum(is_serial_like(i.code) for i in data.items)))
    items = data.items
    requests = [
        (i.idempotency_key, _fingerprint(i.code, i.service.value, _value(i.demarche_family)))
        for i in items
    ]

    async def work(fresh: list[int]) -> list[Answer]:
        outcomes = await service.redeem_offline(
            session,
            keyring=request.app.state.keyring,
            site_id=principal.organisation_id,
            user_id=principal.user_id,
            scans=[_scan(items[n]) for n in fresh],
            now=utcnow(),
        )
        return [_answer_of(outcome) for outcome in outcomes]

    answered = await idempotency.run_many(
        session, [idempotency.Request(principal.user_id, k, fp) for k, fp in requests], work
    )
    results = [
        _item_result(key, answer)
        for (key, _fp), (answer, _) in zip(requests, answered, strict=True)
    ]
    seen = Counter("replayed" if replayed else _outcome(answer) for answer, replayed in answered)
    for outcome, count in seen.items():
        REDEMPTIONS.labels(outcome).inc(count)
    anomaly_watch.note_refusals(request, principal, answered)  # issue 16: anomaly watch
    anomaly_watch.watch_after_batch(request, principal)  # issue 16: anomaly watch
    statuses = Counter(r["status"] for r in results)
    # Built as plain data and encoded once: 500 nested models would cost more than the work.
    return JSONResponse(
        {
            "results": results,
            "accepted": statuses["accepted"],
            "refused": statuses["refused"],
            "conflicts": statuses["conflict"],
        }
    )


@router.post("/redemptions/{redemption_id}/reverse", response_model=ReversalRead)
async def reverse(
    redemption_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: SiteMediator,
    session: SessionDep,
) -> ReversalRead:
    """Annule un encaissement de son lieu, dans les 24 h et avant la compensation."""
    return await service.reverse_redemption(
        session, site_id=principal.organisation_id, redemption_id=redemption_id, now=utcnow()
    )


@router.get("/redemptions", response_model=RedemptionPage)
async def list_redemptions(
    principal: RedemptionReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    from_day: Annotated[Day | None, Query(alias="from")] = None,
    to_day: Annotated[Day | None, Query(alias="to")] = None,
    site_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> RedemptionPage:
    """Les encaissements d'un lieu (le sien), ou de tous pour l'opérateur (filtre `site_id`)."""
    viewer_site = None
    if principal.role == Role.site_mediator:
        if site_id is not None and site_id != principal.organisation_id:
            raise Forbidden("Vous ne voyez que les encaissements de votre lieu.")
        site_id = viewer_site = principal.organisation_id
    return await redemption_listing.list_redemptions(
        session,
        site_id=site_id,
        now=utcnow(),
        from_day=from_day,
        to_day=to_day,
        limit=limit,
        cursor=cursor,
        page=page,
        viewer_site_id=viewer_site,
    )


def _value(demarche: Any) -> str | None:
    return demarche.value if demarche is not None else None


def _scan(item: OfflineScan) -> service.OfflineScanIn:
    return service.OfflineScanIn(
        code=item.code,
        service=item.service,
        demarche_family=item.demarche_family,
        scanned_at=item.scanned_at,
    )


def _answer_of(outcome: service.OfflineOutcome) -> Answer:
    """An offline scan's outcome as the answer the online POST would have given."""
    if outcome.redemption is not None:
        return Answer.of(201, outcome.redemption.model_dump(mode="json"))
    assert outcome.error is not None  # an outcome is a redemption or an error
    return idempotency.answer_of_error(outcome.error)


def _item_result(key: str, answer: Answer) -> dict[str, Any]:
    body = answer.json()
    if answer.status < 300:
        return {"idempotency_key": key, "status": "accepted", "redemption": body}
    error = body["error"]
    # A second scan of a cheque this site redeemed carries `duplicate_of` (pass_.redemption).
    status = "conflict" if "duplicate_of" in error.get("details", {}) else "refused"
    return {"idempotency_key": key, "status": status, "error": error}


def _outcome(answer: Answer) -> str:
    if answer.status < 300:
        return "redeemed"
    return str(answer.json()["error"]["code"])
