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
  before any cheque row lock, in key order, so an online request and an offline batch carrying
  the same key cannot deadlock.

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
    "load_many",
    "record_many",
    "reserve_many",
    "run_many",
    "run_once",
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


_RESERVE = text("""
INSERT INTO idempotency_record (user_id, key, request_hash, status_code, response)
SELECT :user_id, x.key, x.hash, 0, CAST('{}' AS json)
FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[])) AS x(key, hash)
ORDER BY x.key
ON CONFLICT (user_id, key) DO NOTHING
RETURNING key
""")

_LOAD = text("""
SELECT key, request_hash, status_code, CAST(response AS text)
FROM idempotency_record
WHERE user_id = :user_id AND key = ANY(CAST(:keys AS text[]))
""")

# `r.key = ANY(…)` as well as the join: the planner then reaches the records through the
# (user_id, key) index whatever it guesses of unnest's size. Without it, once the table held a
# few tens of thousands of answers, it chose a hash join over the whole table (measured: 10 ms
# of PostgreSQL CPU a redemption).
_RECORD = text("""
UPDATE idempotency_record r SET status_code = x.status, response = CAST(x.body AS json)
FROM unnest(CAST(:keys AS text[]), CAST(:statuses AS smallint[]), CAST(:bodies AS text[]))
     AS x(key, status, body)
WHERE r.user_id = :user_id AND r.key = ANY(CAST(:keys AS text[])) AND r.key = x.key
  AND r.status_code = 0
""")


async def reserve_many(
    session: AsyncSession, *, user_id: int, fingerprints: Mapping[str, str]
) -> set[str]:
    """Reserve the keys not used yet (waiting for concurrent holders); returns those reserved."""
    if not fingerprints:
        return set()
    keys = sorted(fingerprints)
    rows = await session.execute(
        _RESERVE, {"user_id": user_id, "keys": keys, "hashes": [fingerprints[k] for k in keys]}
    )
    return {row[0] for row in rows}


async def load_many(
    session: AsyncSession, *, user_id: int, keys: Sequence[str]
) -> dict[str, tuple[str, Answer]]:
    """The stored (fingerprint, answer) of each key that has one."""
    if not keys:
        return {}
    rows = await session.execute(_LOAD, {"user_id": user_id, "keys": list(keys)})
    return {key: (fp, Answer(status, body)) for key, fp, status, body in rows if status != 0}


async def record_many(
    session: AsyncSession, *, user_id: int, answers: Mapping[str, Answer]
) -> None:
    """Write the answers of keys this transaction reserved."""
    if not answers:
        return
    keys = list(answers)
    await session.execute(
        _RECORD,
        {
            "user_id": user_id,
            "keys": keys,
            "statuses": [answers[k].status for k in keys],
            "bodies": [answers[k].body for k in keys],
        },
    )


async def _replay(session: AsyncSession, *, user_id: int, key: str, fp: str) -> Answer:
    stored = (await load_many(session, user_id=user_id, keys=[key])).get(key)
    if stored is None:  # cannot happen under READ COMMITTED: the holder committed its answer
        raise RuntimeError(f"idempotency key {key!r} is taken but has no answer")
    if stored[0] != fp:
        raise IdempotencyConflict()
    return stored[1]


async def run_once(
    session: AsyncSession,
    *,
    user_id: int,
    key: str,
    fingerprint: str,
    work: Callable[[], Awaitable[Any]],
    status: int = 201,
    savepoint: bool = True,
) -> tuple[Answer, bool]:
    """Do `work` once per (user, key): returns (answer, replayed).

    `work` returns the JSON body of a success (given `status`) or raises a DomainError, whose
    error answer is stored too. It runs in a savepoint, so a refusal undoes whatever it wrote
    while the key stays reserved for its answer. `savepoint=False` saves two round trips for
    work that raises its DomainErrors before writing anything (and nothing else)."""
    if not await reserve_many(session, user_id=user_id, fingerprints={key: fingerprint}):
        return await _replay(session, user_id=user_id, key=key, fp=fingerprint), True
    try:
        if savepoint:
            async with session.begin_nested():
                body = await work()
        else:
            body = await work()
        answer = Answer.of(status, body)
    except DomainError as exc:
        answer = answer_of_error(exc)
    await record_many(session, user_id=user_id, answers={key: answer})
    return answer, False


async def run_many(
    session: AsyncSession,
    *,
    user_id: int,
    requests: Sequence[tuple[str, str]],
    work: Callable[[list[int]], Awaitable[list[Answer]]],
) -> list[tuple[Answer, bool]]:
    """Many requests at once, each under its own key (an offline batch), with the rules of
    `run_once` for each: returns (answer, replayed) for each (key, fingerprint) of `requests`.

    `work(indices)` answers the requests not answered before — the first of each new key — in
    the order given; each refusal is an answer, so it raises nothing. A key repeated in
    `requests` gets the answer of its first occurrence, or `idempotency_conflict` if the
    fingerprints differ."""
    first: dict[str, int] = {}
    for n, (key, _fp) in enumerate(requests):
        first.setdefault(key, n)
    reserved = await reserve_many(
        session, user_id=user_id, fingerprints={key: requests[n][1] for key, n in first.items()}
    )
    stored = await load_many(session, user_id=user_id, keys=[k for k in first if k not in reserved])
    answers: dict[int, tuple[Answer, bool]] = {}
    for key, n in first.items():
        if key not in reserved:
            fp, answer = stored[key]
            answers[n] = (answer, True) if fp == requests[n][1] else (_conflict(), False)
    fresh = [n for key, n in first.items() if key in reserved]
    for n, answer in zip(fresh, await work(fresh), strict=True):
        answers[n] = (answer, False)
    await record_many(
        session, user_id=user_id, answers={requests[n][0]: answers[n][0] for n in fresh}
    )
    result = []
    for n, (key, fp) in enumerate(requests):
        m = first[key]
        if m == n:
            result.append(answers[n])
        else:
            result.append((answers[m][0], True) if requests[m][1] == fp else (_conflict(), False))
    return result


def _conflict() -> Answer:
    return answer_of_error(IdempotencyConflict())
