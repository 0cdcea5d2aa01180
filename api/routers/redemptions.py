"""Redemption over HTTP: redeem (idempotent), offline batches, reversal, listing (DESIGN.md §7)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from api import anomaly_watch, idempotency
from api.deps import (
    SessionDep,
    SiteMediator,
    SiteMediatorToken,
    ensure_active,
    open_session,
    require,
)
from api.idempotency import Answer, IdempotencyKey
from api.metrics import REDEMPTIONS
from api.ratelimit import enforce
from api.security import Principal, decode_access_token
from kit.clock import utcnow
from kit.errors import DomainError, Forbidden
from pass_ import redemption as service
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
from pass_.tokens import ChequeClaims, read_unverified

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
) -> Response:
    """Encaisse un chèque (code saisi ou QR). Rejouer la même clé rend la première réponse."""
    enforce(request, principal)
    now = utcnow()
    fingerprint = _fingerprint(data.code, data.service.value, _value(data.demarche_family))
    tried = request.scope.get(_TRIED_AT_ONCE, False)  # by the scanners' lane, for this request
    body = None if tried else await _redeem_at_once(request, principal, data, key, fingerprint,
                                                    now)
    if body is not None:
        REDEMPTIONS.labels("redeemed").inc()
        return Response(body, status_code=201, media_type="application/json")
    # The general path: says why a cheque is refused, replays a key, redeems a typed serial.
    async with open_session(request) as session:
        return await _redeem_in_session(session, request, principal, data, key, fingerprint, now)


async def _redeem_in_session(
    session: AsyncSession,
    request: Request,
    principal: Principal,
    data: RedemptionCreate,
    key: str,
    fingerprint: str,
    now: datetime,
) -> Response:
    await ensure_active(session, principal)

    async def work() -> dict[str, Any]:
        redemption = await service.redeem_cheque(
            session,
            keyring=request.app.state.keyring,
            site_id=principal.organisation_id,
            user_id=principal.user_id,
            code=data.code,
            service=data.service,
            demarche_family=data.demarche_family,
            now=now,
        )
        return redemption.model_dump(mode="json")

    answer, replayed = await idempotency.run_once(
        session,
        user_id=principal.user_id,
        key=key,
        fingerprint=fingerprint,
        work=work,
        savepoint=False,  # redeem_cheque refuses before writing anything
    )
    REDEMPTIONS.labels("replayed" if replayed else _outcome(answer)).inc()
    anomaly_watch.note_refusal(request, principal, answer, replayed)  # issue 16: anomaly watch
    return answer.response({"Idempotent-Replayed": "true"} if replayed else None)


# Stands for the redemption id in the answer built before the statement that assigns it.
_ID_MARK = 918_273_645_546_372_819
# Stand for the other fields while the answer's format is built (`_body_format`).
_VALUE_MARK = 918_273_645_546_372_817
_SITE_MARK = 918_273_645_546_372_813
_SERIAL_MARK = "cheque-serial-mark-41f7"
_AT_MARK = "redeemed-at-mark-41f7"
_INSTANT = TypeAdapter(datetime)


def _body_format() -> str:
    """The 201 answer's body as `Answer.of(201, RedemptionRead(…).model_dump(mode="json"))`
    writes it, as a %-format with a slot for each field: built once from pydantic's own
    output, so that filling it is byte for byte that output, at a tenth of the cost."""
    data = RedemptionRead.model_construct(
        id=_ID_MARK, cheque_serial=_SERIAL_MARK, value_cents=_VALUE_MARK,
        redeemed_at=datetime(2000, 1, 1, tzinfo=UTC), site_id=_SITE_MARK,
    ).model_dump(mode="json")
    data["redeemed_at"] = _AT_MARK
    body = Answer.of(201, data).body.replace("%", "%%")
    slots = {str(_ID_MARK): "%(id)d", idempotency.json_text(_SERIAL_MARK): "%(serial)s",
             str(_VALUE_MARK): "%(value)d", idempotency.json_text(_AT_MARK): "%(at)s",
             str(_SITE_MARK): "%(site)d"}
    for mark, slot in slots.items():
        if body.count(mark) != 1:
            raise RuntimeError(f"the redemption answer's format lost its mark {mark}")
        body = body.replace(mark, slot)
    return body


_BODY_FORMAT = _body_format()


def _redeemed_body(
    redemption_id: int, stated: ChequeClaims, site_id: int, now: datetime
) -> str:
    """The 201 answer's body as `run_once` stores it, for a cheque redeemed at once (the
    short roads build it themselves, before or while the statement assigns the id)."""
    return _BODY_FORMAT % {
        "id": redemption_id,
        "serial": idempotency.json_text(stated.serial),
        "value": stated.value_cents,
        "at": idempotency.json_text(_INSTANT.dump_python(now, mode="json")),
        "site": site_id,
    }


def _answer_format(stated: ChequeClaims, site_id: int, now: datetime) -> str | None:
    """The 201 answer as `run_once` would store it, as a format for the statement that
    assigns the id: `%s` where the id goes, `%%` for any other percent sign; None if the
    answer could not be told apart from its id."""
    body = _redeemed_body(_ID_MARK, stated, site_id, now)
    mark = str(_ID_MARK)
    if body.count(mark) != 1:
        return None
    return body.replace("%", "%%").replace(mark, "%s")


async def _redeem_at_once(
    request: Request,
    principal: Principal,
    data: RedemptionCreate,
    key: str,
    fingerprint: str,
    now: datetime,
) -> str | None:
    """The common case in one statement (`pass_.redemption.redeem_at_once`, or with other
    scans in one under load: `AtOnceQueue`): a genuine QR code, redeemable here, under a new
    key. Returns the answer's body, or None for the general
    path (anything else: a typed serial, a refusal to explain, a replay), nothing written."""
    queue = getattr(request.app.state, "redeem_queue", None)
    if queue is None or is_serial_like(data.code):
        return None
    try:  # what the token states; the statement checks it is the cheque's own token
        claims = read_unverified(data.code)
    except DomainError:
        return None
    answer_format = _answer_format(claims, principal.organisation_id, now)
    if answer_format is None:
        return None
    done = await queue.redeem(service.OnlineAtOnce(
        token=data.code,
        stated=claims,
        site_id=principal.organisation_id,
        user_id=principal.user_id,
        service=data.service,
        demarche_family=data.demarche_family,
        now=now,
        idempotency_key=key,
        request_hash=fingerprint,
        answer_format=answer_format,
    ))
    return None if done is None else done[1]


# ------------------------------------------------------------------ the scanners' fast lane


class RedeemLane:
    """`POST /api/v1/redemptions` for its common case, ahead of the application's whole stack
    (a `api.app.FastLane`): a mediator's bearer token, a JSON body with a QR code, a
    well-formed Idempotency-Key, and the cheque redeemable in one statement
    (`_redeem_at_once`). It answers only when the route would answer exactly that — 201 and
    the same body, byte for byte — and otherwise hands the untouched request to the route
    (which says why, replays, applies the rate limits…), so every other behaviour is the
    route's own. Saves the middleware, routing and dependency injection, which were most of a
    redemption's CPU after the database.

    Not charged to the rate limits, as scanned codes in offline batches are not: a genuine QR
    code redeemed at once is not a guess; every request the lane declines is charged by the
    route. Installed by api.app."""

    method = "POST"
    path = REDEEM_PATH
    max_body = 4096  # a redemption is ~250 bytes; anything larger is the route's to refuse

    async def answer(self, app: Any, scope: Scope, body: bytes) -> bytes | None:
        request = Request(scope)
        headers = request.headers
        authorization = headers.get("authorization", "")
        key = headers.get("idempotency-key")
        if (
            authorization[:7].lower() != "bearer "
            or headers.get("content-type", "").split(";")[0].strip() != "application/json"
            or key is None
            or not idempotency.is_valid_key(key)
        ):
            return None
        try:
            principal = decode_access_token(authorization[7:].strip(), secret=app.state.jwt_secret)
            # Parsed then validated as FastAPI does, so the lane accepts exactly what it would.
            data = RedemptionCreate.model_validate(json.loads(body))
        except (DomainError, ValidationError, ValueError):
            return None
        if principal.role != Role.site_mediator:
            return None
        now = utcnow()
        fingerprint = _fingerprint(data.code, data.service.value, _value(data.demarche_family))
        answer = await _redeem_at_once(request, principal, data, key, fingerprint, now)
        if answer is None:
            # The statement found something in the way: the route need not try it again.
            scope[_TRIED_AT_ONCE] = True
            return None
        REDEMPTIONS.labels("redeemed").inc()
        return answer.encode()


_TRIED_AT_ONCE = "passnum.redeemed_at_once_tried"


@router.post("/redemptions/batch", response_model=OfflineBatchResult)
async def redeem_batch(
    data: OfflineBatch, request: Request, principal: SiteMediator, session: SessionDep
) -> Response:
    """Synchronise les scans faits hors connexion : chaque élément est accepté ou refusé seul."""
    # Only typed serials can be guessed; a signed QR code needs no rate limit.
    enforce(request, principal, cost=max(1, sum(is_serial_like(i.code) for i in data.items)))
    items = data.items
    at_once = await _redeem_batch_at_once(request, principal, items)
    if at_once is not None:
        REDEMPTIONS.labels("redeemed").inc(len(items))
        anomaly_watch.watch_after_batch(request, principal)  # issue 16: anomaly watch
        return Response(at_once, media_type="application/json")
    # The general path: each scan decided on its own (refusals, replays, duplicates, serials).
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
        session, user_id=principal.user_id, requests=requests, work=work
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


async def _redeem_batch_at_once(
    request: Request, principal: Principal, items: list[OfflineScan]
) -> bytes | None:
    """A batch of genuine QR codes, all redeemable, under new keys, in one transaction
    (`pass_.redemption.redeem_batch_at_once`): returns the response's body, or None for the
    general path (nothing written). The answers stored are those the general path stores."""
    pool = getattr(request.app.state, "hot_pool", None)
    if pool is None:
        return None
    scans = []
    for item in items:
        if is_serial_like(item.code):
            return None
        try:
            stated = read_unverified(item.code)
        except DomainError:
            return None
        scans.append(
            service.ScanAtOnce(
                token=item.code,
                stated=stated,
                service=item.service,
                demarche_family=item.demarche_family,
                scanned_at=item.scanned_at,
                idempotency_key=item.idempotency_key,
                request_hash=_fingerprint(
                    item.code, item.service.value, _value(item.demarche_family)
                ),
            )
        )
    now = utcnow()
    site_id = principal.organisation_id

    def answer_of(redemption_id: int, scan: service.ScanAtOnce) -> str:
        return _redeemed_body(redemption_id, scan.stated, site_id, now)

    async with pool.connection() as conn:
        answers = await service.redeem_batch_at_once(
            conn,
            keyring=request.app.state.keyring,
            site_id=site_id,
            user_id=principal.user_id,
            scans=scans,
            now=now,
            answer_of=answer_of,
        )
    if answers is None:
        return None
    # The response as `_item_result` shapes it, written around the stored answers' text.
    results = ",".join(
        f'{{"idempotency_key":{json.dumps(scan.idempotency_key)},"status":"accepted",'
        f'"redemption":{answer}}}'
        for scan, answer in zip(scans, answers, strict=True)
    )
    body = f'{{"results":[{results}],"accepted":{len(scans)},"refused":0,"conflicts":0}}'
    return body.encode()


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
    from_day: Annotated[date | None, Query(alias="from")] = None,
    to_day: Annotated[date | None, Query(alias="to")] = None,
    site_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> RedemptionPage:
    """Les encaissements d'un lieu (le sien), ou de tous pour l'opérateur (filtre `site_id`)."""
    viewer_site = None
    if principal.role == Role.site_mediator:
        if site_id is not None and site_id != principal.organisation_id:
            raise Forbidden("Vous ne voyez que les encaissements de votre lieu.")
        site_id = viewer_site = principal.organisation_id
    return await service.list_redemptions(
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
