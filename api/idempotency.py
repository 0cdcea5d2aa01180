"""Idempotent POSTs: the first answer given to an `Idempotency-Key` is stored and replayed.

The rules (TigerBeetle's and Stripe's):
- the answer — status and body, byte for byte, errors included — is stored in
  `idempotency_record` (scoped per user) in the same transaction as the work it reports, so
  either both are committed or neither; a retry of a failed request stays failed;
- the same key with another request (fingerprint = method + path + canonical JSON body) is
  refused with 409 `idempotency_conflict`, and nothing is done;
- what never reached the work is not stored: authentication, validation of the body, rate
  limits, and unexpected errors (500, nothing committed), so a retry may still succeed;
- concurrent requests with one key: the key is reserved first (`INSERT … ON CONFLICT DO
  NOTHING`), so the unique (user_id, key) constraint decides. The second request waits on the
  first's uncommitted row, then finds the stored answer and replays it. Keys are always taken
  before any cheque row lock, in (user, key) order, so online scans and an offline batch
  carrying the same keys cannot deadlock.

Every road goes through `run_many`: an offline batch (one user's items), a group of online
scans (api/redeem_online.py, one or several users).

A reserved row has `status_code` 0 until the answer is written, within the same transaction:
no other transaction ever sees it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Response
from fastapi.encoders import jsonable_encoder
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import error_body, status_for
from kit.errors import Conflict, DomainError
from pass_.redemption_schemas import IdempotencyKeyText

__all__ = [
    "Answer",
    "IdempotencyConflict",
    "IdempotencyKey",
    "InvalidIdempotencyKey",
    "answer_of_error",
    "fingerprint",
    "Request",
    "load_many",
    "record_many",
    "reserve_many",
    "run_many",
]

HEADER = "Idempotency-Key"
_KEY = TypeAdapter(IdempotencyKeyText)


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    message = (
        "L'en-tête Idempotency-Key est obligatoire : 1 à 200 caractères ASCII visibles, "
        "une valeur nouvelle pour chaque opération (un UUID par exemple)."
    )


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    message = (
        "Cette clé d'idempotence a déjà servi pour une autre demande : "
        "utilisez une clé nouvelle pour chaque opération."
    )


async def _idempotency_key(
    key: Annotated[str | None, Header(alias=HEADER, include_in_schema=True)] = None,
) -> str:
    try:
        return _KEY.validate_python(key)
    except ValidationError:
        raise InvalidIdempotencyKey() from None


# async: FastAPI would run a plain function in its thread pool, a thread hop per request.
IdempotencyKey = Annotated[str, Depends(_idempotency_key)]


# `json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)`, without
# building the encoder again at each call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def fingerprint(method: str, path: str, body: Mapping[str, Any]) -> str:
    """sha256 of the method, the path and the body as canonical JSON (sorted keys, no spaces),
    so the same request written differently has the same fingerprint."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as stored: status and the exact JSON text of the body (and the body as
    data when this process built it, so it need not be parsed back)."""

    status: int
    body: str
    data: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, status: int, body: Any) -> Answer:
        return cls(status, _dumps(body), body)

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        return Response(
            self.body, status_code=self.status, media_type="application/json", headers=headers
        )

    def json(self) -> Any:
        return self.data if self.data is not None else json.loads(self.body)


def answer_of_error(exc: DomainError) -> Answer:
    """The error answer api.errors would give (dates as ISO 8601 text), ready to store."""
    details = jsonable_encoder(exc.details)
    return Answer.of(status_for(exc.code), error_body(exc.code, exc.message, details))


# The keys of several users at once (`Request.user_id`): an offline batch has one user, a
# group of online scans (api/redeem_online.py) several.
_RESERVE = text("""
INSERT INTO idempotency_record (user_id, key, request_hash, status_code, response)
SELECT x.user_id, x.key, x.hash, 0, CAST('{}' AS json)
FROM unnest(CAST(:users AS bigint[]), CAST(:keys AS text[]), CAST(:hashes AS text[]))
     AS x(user_id, key, hash)
ORDER BY x.user_id, x.key
ON CONFLICT (user_id, key) DO NOTHING
RETURNING user_id, key, id, CAST(ctid AS text)
""")

# One lookup of the (user_id, key) index per key: the LIMIT keeps the lateral subquery a
# nested loop (a join the planner may turn into a scan of the whole table: seen with a hash
# join once it held a few tens of thousands of answers, and with `= ANY(…)` filters, which for
# a batch of 500 keys of one user it priced as 500 × 500 probes).
_LOAD = text("""
SELECT x.user_id, x.key, r.request_hash, r.status_code, r.response
FROM unnest(CAST(:users AS bigint[]), CAST(:keys AS text[])) AS x(user_id, key)
CROSS JOIN LATERAL (
    SELECT i.request_hash, i.status_code, CAST(i.response AS text) AS response
    FROM idempotency_record i WHERE i.user_id = x.user_id AND i.key = x.key LIMIT 1
) AS r
""")

# By the row addresses (ctid) the reservation returned: rows this transaction inserted, that
# nobody else can change and that do not move before it updates them. A TID scan is the only
# plan for `ctid = …`, whatever the statistics say; the id is checked too. Joined by id or by
# (user_id, key), the plan depended on them: a prepared statement's generic plan, made while
# the table was nearly empty (statistics not yet refreshed), kept scanning the whole table as it
# grew — measured: 80–170 ms a batch of 500 at 10,000–60,000 answers; this way 8–20 ms.
_RECORD = text("""
UPDATE idempotency_record r SET status_code = x.status, response = CAST(x.body AS json)
FROM unnest(CAST(CAST(:tids AS text[]) AS tid[]), CAST(:ids AS bigint[]),
            CAST(:statuses AS smallint[]), CAST(:bodies AS text[])) AS x(tid, id, status, body)
WHERE r.ctid = x.tid AND r.id = x.id
""")

# (user id, key): what an answer is stored under.
Scope = tuple[int, str]
# (id, ctid as text) of a reserved record.
Row = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Request:
    """One idempotent request: its user, its Idempotency-Key and its `fingerprint`."""

    user_id: int
    key: str
    fingerprint: str

    @property
    def scope(self) -> Scope:
        return (self.user_id, self.key)


async def reserve_many(
    session: AsyncSession, fingerprints: Mapping[Scope, str]
) -> dict[Scope, Row]:
    """Reserve the keys not used yet (waiting for concurrent holders); returns those reserved,
    with their record's (id, ctid)."""
    if not fingerprints:
        return {}
    scopes = sorted(fingerprints)
    rows = await session.execute(_RESERVE, {
        "users": [u for u, _ in scopes], "keys": [k for _, k in scopes],
        "hashes": [fingerprints[s] for s in scopes]})
    return {(row[0], row[1]): (row[2], row[3]) for row in rows}


async def load_many(
    session: AsyncSession, scopes: Sequence[Scope]
) -> dict[Scope, tuple[str, Answer]]:
    """The stored (fingerprint, answer) of each (user, key) that has one."""
    if not scopes:
        return {}
    rows = await session.execute(_LOAD, {"users": [u for u, _ in scopes],
                                         "keys": [k for _, k in scopes]})
    return {(user, key): (fp, Answer(status, body))
            for user, key, fp, status, body in rows if status != 0}


async def record_many(session: AsyncSession, answers: Mapping[Row, Answer]) -> None:
    """Write the answers of records this transaction reserved (`reserve_many`'s rows)."""
    if not answers:
        return
    rows = list(answers)
    written = await session.execute(_RECORD, {
        "ids": [i for i, _ in rows],
        "tids": [t for _, t in rows],
        "statuses": [answers[r].status for r in rows],
        "bodies": [answers[r].body for r in rows],
    })
    found = int(written.rowcount or 0)  # type: ignore[attr-defined]
    if found != len(rows):
        # a reserved row moved (something else updated it): fail whole, nothing committed
        raise RuntimeError(f"{len(rows)} answers to record, {found} rows found")


async def run_many(
    session: AsyncSession,
    requests: Sequence[Request],
    work: Callable[[list[int]], Awaitable[list[Answer]]],
) -> list[tuple[Answer, bool]]:
    """Each request done once per (user, key): returns (answer, replayed) for each, in order.

    `work(indices)` answers the requests not answered before — the first of each new (user,
    key) — in the order given; each refusal is an answer (its DomainError's, `answer_of_error`)
    and writes nothing, so `work` raises nothing but the unexpected. A (user, key) answered
    before is replayed if the fingerprints agree, `idempotency_conflict` otherwise; one
    repeated among `requests` gets the answer of its first occurrence (or the conflict)."""
    first: dict[Scope, int] = {}
    for n, request in enumerate(requests):
        first.setdefault(request.scope, n)
    reserved = await reserve_many(
        session, {scope: requests[n].fingerprint for scope, n in first.items()})
    stored = await load_many(session, [s for s in first if s not in reserved])
    answers: dict[int, tuple[Answer, bool]] = {}
    for scope, n in first.items():
        if scope not in reserved:
            if scope not in stored:  # cannot happen under READ COMMITTED: the holder committed
                raise RuntimeError(f"idempotency key {scope!r} is taken but has no answer")
            fp, answer = stored[scope]
            answers[n] = (answer, True) if fp == requests[n].fingerprint else (_conflict(), False)
    fresh = [n for scope, n in first.items() if scope in reserved]
    for n, answer in zip(fresh, await work(fresh), strict=True):
        answers[n] = (answer, False)
    await record_many(session, {reserved[requests[n].scope]: answers[n][0] for n in fresh})
    result = []
    for n, request in enumerate(requests):
        m = first[request.scope]
        if m == n:
            result.append(answers[n])
        elif requests[m].fingerprint == request.fingerprint:
            result.append((answers[m][0], True))
        else:
            result.append((_conflict(), False))
    return result


def _conflict() -> Answer:
    return answer_of_error(IdempotencyConflict())
