"""Booklets and cheques: issuance at the desk, bulk orders printed ahead, hand-out,
cancellation and the issuer's history (DESIGN.md §5); the printable PDFs are pass_/booklet_print.py.

Money rules, each backed by the database:
- a booklet becomes `active` (issued at the desk, or handed out from stock) only if one
  conditional UPDATE on the programme row (`issued_value_cents + v <= issuing_capacity_cents`)
  and one on the issuer's row (`issued_cheques + n <= quota_cheques`) both succeed; zero rows
  means `programme_capacity_exceeded` / `quota_exceeded`, whatever the concurrency, and CHECK
  constraints back both bounds;
- `issued_value_cents` / `issued_cheques` count the cheques activated and not cancelled
  (active, redeemed or expired: expiry happens after the last day of issuance, so it never frees
  capacity that could be used);
- in-stock cheques carry no value: no ledger entry, no capacity, no quota until handed out, so
  stolen stock is worthless;
- every value change is one idempotent ledger entry: `activate:<booklet id>` moves the
  booklet's value from `programme:<id>:available` to `programme:<id>:outstanding`,
  `cancel:<booklet id>` moves the value of the cheques still active back.

Row locks are always taken in the same order — booklet, cheques, programme, issuer quota — so
concurrent hand-outs, issuances and cancellations cannot deadlock.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from kit.clock import paris_day
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from ledger import service as ledger
from ledger.audit import Difference
from pass_ import validity
from pass_.beneficiaries import get_beneficiary
from pass_.codes import ALPHABET, new_serial
from pass_.enums import BookletStatus, ChequeStatus, Role
from pass_.models import (
    Booklet,
    BookletOrder,
    Cheque,
    Programme,
    ProgrammeIssuer,
)
from pass_.programmes import Actor, get_programme, require_role
from pass_.schemas import BookletPage, BookletRead, BookletSummary, ChequeRead, OrderRead
from pass_.tokens import ChequeClaims, Keyring

__all__ = [
    "Actor",
    "BookletAlreadyCancelled",
    "BookletNotInStock",
    "InvalidBookletSize",
    "ProgrammeCapacityExceeded",
    "ProgrammeEnded",
    "QuotaExceeded",
    "audit_issuance",
    "cancel_booklet",
    "get_booklet",
    "hand_out",
    "issue_booklet",
    "list_booklets",
    "new_booklet_number",
    "normalise_booklet_number",
    "order_booklets",
]

MAX_ORDER_BOOKLETS = 2000
# Rows per INSERT statement: big enough to amortise round trips, small enough for the
# parameter arrays (a token is 140 characters) to stay well under a megabyte.
CHUNK = 4000
# Below this many cheques, signing in the event loop costs less than a thread hop.
_SIGN_IN_THREAD_FROM = 200


class ProgrammeCapacityExceeded(Conflict):
    code = "programme_capacity_exceeded"
    message = (
        "Les crédits du programme ne suffisent plus pour ce carnet : "
        "les financeurs doivent augmenter leurs engagements."
    )


class QuotaExceeded(Conflict):
    code = "quota_exceeded"
    message = "Votre structure a atteint son quota de chèques pour ce programme."


class ProgrammeEnded(InvalidInput):
    code = "programme_ended"
    message = "Ce programme est terminé : on ne peut plus y distribuer de carnets."


class InvalidBookletSize(InvalidInput):
    code = "invalid_booklet_size"
    message = "Ce programme ne prévoit pas de carnets de cette taille."


class InvalidIssuer(InvalidInput):
    code = "invalid_issuer"
    message = "Cette organisation n'est pas une structure prescriptrice du programme."


class BookletNotInStock(Conflict):
    code = "booklet_not_in_stock"
    message = "Ce carnet n'est plus en stock : il a déjà été remis ou annulé."


class BookletAlreadyCancelled(Conflict):
    code = "booklet_already_cancelled"
    message = "Ce carnet est déjà annulé."


def _booklet_not_found(ref: object) -> NotFound:
    return NotFound("Carnet introuvable.", booklet=str(ref)[:40])


# --------------------------------------------------------------------------- booklet numbers

BOOKLET_PREFIX = "CN"
_NUMBER_SYMBOLS = 8  # 40 random bits: unguessable enough, short enough to type
_NUMBER_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_NUMBER_SEPARATORS = re.compile(r"[\s\-‐‑‒–—−_.]+")


def new_booklet_number() -> str:
    """A printed booklet number, `CN-XXXX-XXXX` in Crockford base32 (never like a serial,
    which starts with `PN` and has 13 symbols)."""
    bits = secrets.randbits(5 * _NUMBER_SYMBOLS)
    symbols = "".join(
        ALPHABET[(bits >> (5 * (_NUMBER_SYMBOLS - 1 - i))) & 31] for i in range(_NUMBER_SYMBOLS)
    )
    return f"{BOOKLET_PREFIX}-{symbols[:4]}-{symbols[4:]}"


def normalise_booklet_number(text_: str) -> str | None:
    """The canonical number of what someone typed (any case, separators and prefix optional,
    O → 0, I/L → 1), or None if it cannot be a booklet number."""
    if not isinstance(text_, str) or len(text_) > 300:
        return None
    # The cover's QR code opens /mon-pass/<number>?code=…: the agent's camera reads that URL.
    if "/mon-pass/" in text_:
        text_ = text_.split("/mon-pass/", 1)[1].split("?", 1)[0].split("/", 1)[0]
    if len(text_) > 40:
        return None
    compact = _NUMBER_SEPARATORS.sub("", text_).upper()
    if len(compact) == len(BOOKLET_PREFIX) + _NUMBER_SYMBOLS and compact.startswith(BOOKLET_PREFIX):
        compact = compact[len(BOOKLET_PREFIX) :]
    compact = compact.translate(_NUMBER_ALIASES)
    if len(compact) != _NUMBER_SYMBOLS or any(c not in ALPHABET for c in compact):
        return None
    return f"{BOOKLET_PREFIX}-{compact[:4]}-{compact[4:]}"


def parse_booklet_ref(ref: str | int) -> int | str:
    """A booklet id (digits) or its printed number; NotFound when it is neither."""
    if isinstance(ref, int):
        return ref
    ref = ref.strip()
    if ref.isdigit() and len(ref) <= 18:
        return int(ref)
    number = normalise_booklet_number(ref)
    if number is None:
        raise _booklet_not_found(ref)
    return number


# --------------------------------------------------------------------------- the rules


_TAKE_CAPACITY = text("""
UPDATE programme SET issued_value_cents = issued_value_cents + :value
WHERE id = :programme_id AND issued_value_cents + :value <= issuing_capacity_cents
RETURNING issued_value_cents
""")

_TAKE_QUOTA = text("""
UPDATE programme_issuer SET issued_cheques = issued_cheques + :cheques
WHERE programme_id = :programme_id AND organisation_id = :issuer_id
  AND issued_cheques + :cheques <= quota_cheques
RETURNING issued_cheques
""")

# One round trip; PostgreSQL runs a data-modifying WITH even when the main query ignores it.
_GIVE_BACK = text("""
WITH p AS (
    UPDATE programme SET issued_value_cents = issued_value_cents - :value
    WHERE id = :programme_id RETURNING id
)
UPDATE programme_issuer SET issued_cheques = issued_cheques - :cheques
WHERE programme_id = :programme_id AND organisation_id = :issuer_id
""")

_GIVE_BACK_CAPACITY = text("""
UPDATE programme SET issued_value_cents = issued_value_cents - :value WHERE id = :programme_id
""")

_REMAINING = text("""
SELECT p.issuing_capacity_cents - p.issued_value_cents, i.quota_cheques - i.issued_cheques
FROM programme p JOIN programme_issuer i ON i.programme_id = p.id
WHERE p.id = :programme_id AND i.organisation_id = :issuer_id
""")


async def _take_capacity_and_quota(
    session: AsyncSession, *, programme_id: int, issuer_id: int, value: int, cheques: int
) -> None:
    """Count `value` against the programme's capacity and `cheques` against the issuer's quota,
    each with one conditional UPDATE: zero rows means refused, concurrency cannot overshoot."""
    params = {"programme_id": programme_id, "issuer_id": issuer_id}
    if (await session.execute(_TAKE_CAPACITY, {**params, "value": value})).first() is None:
        remaining = (await session.execute(_REMAINING, params)).first()
        raise ProgrammeCapacityExceeded(
            requested_cents=value, remaining_cents=remaining[0] if remaining else 0
        )
    if (await session.execute(_TAKE_QUOTA, {**params, "cheques": cheques})).first() is None:
        # Undo the capacity just taken, so a refusal leaves nothing changed even for a caller
        # that goes on with the transaction.
        await session.execute(_GIVE_BACK_CAPACITY, {**params, "value": value})
        remaining = (await session.execute(_REMAINING, params)).first()
        raise QuotaExceeded(
            requested_cheques=cheques, remaining_cheques=remaining[1] if remaining else 0
        )


async def _issuer_of(session: AsyncSession, programme_id: int, issuer_id: int) -> bool:
    found = await session.scalar(
        select(col(ProgrammeIssuer.id)).where(
            col(ProgrammeIssuer.programme_id) == programme_id,
            col(ProgrammeIssuer.organisation_id) == issuer_id,
        )
    )
    return found is not None


def _check_open(programme: Programme, today: date) -> None:
    """Booklets may be issued from the programme's creation until `valid_until`."""
    if programme.closed_at is not None or today > programme.valid_until:
        raise ProgrammeEnded(programme_id=programme.id, valid_until=programme.valid_until)


def _check_size(programme: Programme, size: int) -> None:
    if size not in programme.booklet_sizes:
        raise InvalidBookletSize(
            f"Ce programme prévoit des carnets de "
            f"{' ou '.join(str(n) for n in programme.booklet_sizes)} chèques.",
            size=size,
            allowed=list(programme.booklet_sizes),
        )


async def _post_activation(
    session: AsyncSession, *, programme_id: int, booklet_id: int, value: int, cheques: int
) -> None:
    await ledger.post(
        session,
        key=f"activate:{booklet_id}",
        kind="activation",
        postings=[
            (f"programme:{programme_id}:available", -value),
            (f"programme:{programme_id}:outstanding", value),
        ],
        memo={"programme_id": programme_id, "booklet_id": booklet_id, "cheques": cheques},
    )


# --------------------------------------------------------------------------- bulk inserts


_INSERT_BOOKLETS = text("""
INSERT INTO booklet (number, programme_id, issuer_id, beneficiary_id, order_id, size, status,
                     created_by, created_at, handed_out_by, handed_out_at)
SELECT x.number, CAST(:programme_id AS bigint), CAST(:issuer_id AS bigint),
       CAST(:beneficiary_id AS bigint), CAST(:order_id AS bigint), CAST(:size AS integer),
       CAST(:status AS varchar), CAST(:user_id AS bigint), CAST(:now AS timestamptz),
       CAST(:handed_out_by AS bigint), CAST(:handed_out_at AS timestamptz)
FROM unnest(CAST(:numbers AS text[])) WITH ORDINALITY AS x(number, n)
ORDER BY x.n
ON CONFLICT (number) DO NOTHING
RETURNING id, number
""")

_INSERT_CHEQUES = text("""
INSERT INTO cheque (serial, token, booklet_id, programme_id, position, value_cents, status,
                    valid_from, valid_until, redeem_until, activated_at, status_changed_at)
SELECT x.serial, x.token, x.booklet_id, CAST(:programme_id AS bigint), x.position,
       CAST(:value_cents AS bigint), CAST(:status AS varchar), CAST(:valid_from AS date),
       CAST(:valid_until AS date), CAST(:redeem_until AS date),
       CAST(:activated_at AS timestamptz), CAST(:now AS timestamptz)
FROM unnest(CAST(:serials AS text[]), CAST(:tokens AS text[]), CAST(:booklet_ids AS bigint[]),
            CAST(:positions AS integer[])) WITH ORDINALITY
     AS x(serial, token, booklet_id, position, n)
ORDER BY x.n
ON CONFLICT (serial) DO NOTHING
RETURNING id, serial
""")


@dataclass(frozen=True)
class _NewBooklets:
    """Booklets to create for one programme and issuer, all alike."""

    programme_id: int
    issuer_id: int
    size: int
    status: BookletStatus
    user_id: int | None
    now: datetime
    beneficiary_id: int | None = None
    order_id: int | None = None


async def _insert_booklets(session: AsyncSession, spec: _NewBooklets, count: int) -> list[int]:
    """Create `count` booklets with fresh numbers (a number already taken is drawn again);
    returns their ids in creation order. One multi-row INSERT per chunk."""
    active = spec.status == BookletStatus.active
    ids: list[int] = []
    missing = count
    for _attempt in range(10):
        numbers = [new_booklet_number() for _ in range(missing)]
        for start in range(0, len(numbers), CHUNK):
            rows = (
                await session.execute(
                    _INSERT_BOOKLETS,
                    {
                        "numbers": numbers[start : start + CHUNK],
                        "programme_id": spec.programme_id,
                        "issuer_id": spec.issuer_id,
                        "beneficiary_id": spec.beneficiary_id,
                        "order_id": spec.order_id,
                        "size": spec.size,
                        "status": spec.status.value,
                        "user_id": spec.user_id,
                        "now": spec.now,
                        "handed_out_by": spec.user_id if active else None,
                        "handed_out_at": spec.now if active else None,
                    },
                )
            ).all()
            ids.extend(row[0] for row in rows)
        missing = count - len(ids)
        if missing == 0:
            return sorted(ids)
    raise RuntimeError("could not draw unique booklet numbers")


async def _sign(keyring: Keyring, claims: list[ChequeClaims]) -> list[str]:
    if len(claims) < _SIGN_IN_THREAD_FROM:
        return keyring.sign_many(claims)
    # Ed25519 signing of a bulk order takes a fraction of a second: keep the event loop free.
    return await asyncio.to_thread(keyring.sign_many, claims)


async def _insert_cheques(
    session: AsyncSession,
    keyring: Keyring,
    programme: Programme,
    *,
    booklet_ids: Sequence[int],
    size: int,
    status: ChequeStatus,
    now: datetime,
) -> dict[str, int]:
    """Create the cheques of the booklets, signed; returns {serial: id}. A serial already taken
    (2⁻⁶⁰ odds each) is drawn again with its token; one multi-row INSERT per chunk."""
    slots = [(booklet_id, position) for booklet_id in booklet_ids for position in range(size)]
    created: dict[str, int] = {}
    for _attempt in range(10):
        serials = [new_serial() for _ in slots]
        tokens = await _sign(
            keyring,
            [
                ChequeClaims(
                    serial=s,
                    programme_id=programme.id,  # type: ignore[arg-type]
                    value_cents=programme.face_value_cents,
                    redeem_until=programme.redeem_until,
                )
                for s in serials
            ],
        )
        inserted: set[str] = set()
        for start in range(0, len(slots), CHUNK):
            part = slots[start : start + CHUNK]
            rows = (
                await session.execute(
                    _INSERT_CHEQUES,
                    {
                        "serials": serials[start : start + CHUNK],
                        "tokens": tokens[start : start + CHUNK],
                        "booklet_ids": [b for b, _ in part],
                        "positions": [p for _, p in part],
                        "programme_id": programme.id,
                        "value_cents": programme.face_value_cents,
                        "status": status.value,
                        "valid_from": programme.valid_from,
                        "valid_until": programme.valid_until,
                        "redeem_until": programme.redeem_until,
                        "activated_at": now if status == ChequeStatus.active else None,
                        "now": now,
                    },
                )
            ).all()
            for cheque_id, serial in rows:
                created[serial] = cheque_id
                inserted.add(serial)
        slots = [
            slot for slot, serial in zip(slots, serials, strict=True) if serial not in inserted
        ]
        if not slots:
            return created
    raise RuntimeError("could not draw unique cheque serials")


# --------------------------------------------------------------------------- reading


async def _cheques_of(session: AsyncSession, booklet_ids: Sequence[int]) -> list[Cheque]:
    return list(
        (
            await session.scalars(
                select(Cheque)
                .where(col(Cheque.booklet_id).in_(booklet_ids))
                .order_by(col(Cheque.booklet_id), col(Cheque.position))
                .execution_options(populate_existing=True)
            )
        ).all()
    )


def _read(booklet: Booklet, cheques: Sequence[Cheque]) -> BookletRead:
    return BookletRead(
        **BookletSummary.model_validate(booklet).model_dump(),
        cheques=[ChequeRead.model_validate(c) for c in cheques],
    )


async def own_booklet(
    session: AsyncSession, *, issuer_id: int, ref: str | int, for_update: bool = False
) -> Booklet:
    """The issuer's booklet by id or printed number; another issuer's answers NotFound."""
    key = parse_booklet_ref(ref)
    column = col(Booklet.id) if isinstance(key, int) else col(Booklet.number)
    stmt = (
        select(Booklet)
        .where(column == key, col(Booklet.issuer_id) == issuer_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    booklet = await session.scalar(stmt)
    if booklet is None:
        raise _booklet_not_found(ref)
    return booklet


async def get_booklet(session: AsyncSession, *, actor: Actor, ref: str | int) -> BookletRead:
    """A booklet of the agent's issuer with its cheques (tokens included, for printing)."""
    require_role(actor, Role.issuer_agent)
    booklet = await own_booklet(session, issuer_id=actor.organisation_id, ref=ref)
    return _read(booklet, await _cheques_of(session, [booklet.id]))  # type: ignore[list-item]


async def list_booklets(
    session: AsyncSession,
    *,
    actor: Actor,
    page: int = 1,
    per_page: int = 50,
    number: str | None = None,
    status: BookletStatus | None = None,
    programme_id: int | None = None,
    beneficiary_id: int | None = None,
) -> BookletPage:
    """The issuer's booklets, newest first, a page at a time."""
    require_role(actor, Role.issuer_agent)
    page, per_page = max(page, 1), min(max(per_page, 1), 200)
    conditions = [col(Booklet.issuer_id) == actor.organisation_id]
    if number is not None:
        canonical = normalise_booklet_number(number)
        if canonical is None:
            return BookletPage(items=[], total=0, page=page, per_page=per_page)
        conditions.append(col(Booklet.number) == canonical)
    if status is not None:
        conditions.append(col(Booklet.status) == status.value)
    if programme_id is not None:
        conditions.append(col(Booklet.programme_id) == programme_id)
    if beneficiary_id is not None:
        conditions.append(col(Booklet.beneficiary_id) == beneficiary_id)
    total = await session.scalar(select(func.count()).select_from(Booklet).where(*conditions))
    rows = (
        await session.scalars(
            select(Booklet)
            .where(*conditions)
            .order_by(col(Booklet.created_at).desc(), col(Booklet.id).desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
            .execution_options(populate_existing=True)
        )
    ).all()
    return BookletPage(
        items=[BookletSummary.model_validate(b) for b in rows],
        total=int(total or 0),
        page=page,
        per_page=per_page,
    )


# --------------------------------------------------------------------------- use cases


async def issue_booklet(
    session: AsyncSession,
    *,
    keyring: Keyring,
    actor: Actor,
    programme_id: int,
    beneficiary_id: int,
    size: int,
    now: datetime,
) -> BookletRead:
    """An agent issues a booklet at the desk: its cheques are `active` at once (DESIGN.md §5).

    Before `valid_from` the cheques wait (redemption refuses them until then)."""
    require_role(actor, Role.issuer_agent)
    issuer_id = actor.organisation_id
    programme = await get_programme(session, programme_id)
    if not await _issuer_of(session, programme_id, issuer_id):
        raise Forbidden(
            "Votre structure n'est pas prescriptrice de ce programme.", programme_id=programme_id
        )
    beneficiary = await get_beneficiary(session, issuer_id=issuer_id, beneficiary_id=beneficiary_id)
    _check_open(programme, paris_day(now))
    _check_size(programme, size)
    value = size * programme.face_value_cents
    await _take_capacity_and_quota(
        session, programme_id=programme_id, issuer_id=issuer_id, value=value, cheques=size
    )
    spec = _NewBooklets(
        programme_id=programme_id,
        issuer_id=issuer_id,
        size=size,
        status=BookletStatus.active,
        user_id=actor.user_id,
        now=now,
        beneficiary_id=beneficiary.id,
    )
    [booklet_id] = await _insert_booklets(session, spec, 1)
    await _insert_cheques(
        session,
        keyring,
        programme,
        booklet_ids=[booklet_id],
        size=size,
        status=ChequeStatus.active,
        now=now,
    )
    beneficiary.last_booklet_at = now
    await session.flush()
    await _post_activation(
        session, programme_id=programme_id, booklet_id=booklet_id, value=value, cheques=size
    )
    return await get_booklet(session, actor=actor, ref=booklet_id)


def _may_order_for(actor: Actor, issuer_id: int) -> None:
    if actor.role == Role.operator_admin:
        return
    if actor.role == Role.issuer_agent and actor.organisation_id == issuer_id:
        return
    raise Forbidden(
        "Seuls l'opérateur et les agents de cette structure peuvent commander ses carnets.",
        issuer_id=issuer_id,
    )


async def order_booklets(
    session: AsyncSession,
    *,
    keyring: Keyring,
    actor: Actor,
    programme_id: int,
    issuer_id: int,
    booklets: int,
    size: int,
    now: datetime,
) -> OrderRead:
    """A bulk order printed ahead: `booklets` booklets of `size` cheques, all `in_stock` at the
    issuer (no value, no capacity, no quota until handed out). Bulk inserts, no ORM objects per
    cheque. The print-ready PDF is rendered on demand (`booklet_print.order_pdf`)."""
    _may_order_for(actor, issuer_id)
    programme = await get_programme(session, programme_id)
    if not await _issuer_of(session, programme_id, issuer_id):
        if actor.role == Role.issuer_agent:
            raise Forbidden(
                "Votre structure n'est pas prescriptrice de ce programme.",
                programme_id=programme_id,
            )
        raise InvalidIssuer(issuer_id=issuer_id, programme_id=programme_id)
    _check_open(programme, paris_day(now))
    _check_size(programme, size)
    if not 1 <= booklets <= MAX_ORDER_BOOKLETS:
        raise InvalidInput(
            f"Une commande compte de 1 à {MAX_ORDER_BOOKLETS} carnets.",
            code="invalid_order",
            booklets=booklets,
        )
    order = BookletOrder(
        programme_id=programme_id,
        issuer_id=issuer_id,
        booklets=booklets,
        size=size,
        created_by=actor.user_id,
        created_at=now,
    )
    session.add(order)
    await session.flush()
    spec = _NewBooklets(
        programme_id=programme_id,
        issuer_id=issuer_id,
        size=size,
        status=BookletStatus.in_stock,
        user_id=actor.user_id,
        now=now,
        order_id=order.id,
    )
    booklet_ids = await _insert_booklets(session, spec, booklets)
    await _insert_cheques(
        session,
        keyring,
        programme,
        booklet_ids=booklet_ids,
        size=size,
        status=ChequeStatus.in_stock,
        now=now,
    )
    return await get_order(session, actor=actor, order_id=order.id)  # type: ignore[arg-type]


async def visible_order(session: AsyncSession, *, actor: Actor, order_id: int) -> BookletOrder:
    order = await session.get(BookletOrder, order_id)
    if order is None or not (
        actor.role == Role.operator_admin
        or (actor.role == Role.issuer_agent and actor.organisation_id == order.issuer_id)
    ):
        raise NotFound("Commande introuvable.", order_id=order_id)
    return order


async def get_order(session: AsyncSession, *, actor: Actor, order_id: int) -> OrderRead:
    """An order with its booklets' numbers (for the operator and the ordering issuer)."""
    order = await visible_order(session, actor=actor, order_id=order_id)
    rows = (
        await session.execute(
            select(col(Booklet.id), col(Booklet.number))
            .where(col(Booklet.order_id) == order_id)
            .order_by(col(Booklet.id))
        )
    ).all()
    return OrderRead(
        id=order.id,  # type: ignore[arg-type]
        programme_id=order.programme_id,
        issuer_id=order.issuer_id,
        size=order.size,
        booklet_count=len(rows),
        cheque_count=len(rows) * order.size,
        created_at=order.created_at,
        booklets=[{"id": i, "number": n} for i, n in rows],  # type: ignore[misc]
        pdf_url=f"/api/v1/orders/{order.id}/pdf",
    )


_IN_STOCK = text("""
SELECT count(*), CAST(coalesce(sum(value_cents), 0) AS bigint) FROM cheque
WHERE booklet_id = :booklet_id AND status = 'in_stock'
""")

_ACTIVATE_CHEQUES = text("""
UPDATE cheque SET status = 'active', activated_at = :now, status_changed_at = :now
WHERE booklet_id = :booklet_id AND status = 'in_stock'
""")


async def hand_out(
    session: AsyncSession,
    *,
    actor: Actor,
    ref: str | int,
    beneficiary_id: int,
    now: datetime,
    hand_out_stop_days: int = 0,
) -> BookletRead:
    """An agent hands an in-stock booklet (found by id or printed number) to a beneficiary:
    it becomes `active`, counted against capacity and quota, its value moved to outstanding.
    Not in the programme's last `hand_out_stop_days` days (pass_/validity.py)."""
    require_role(actor, Role.issuer_agent)
    issuer_id = actor.organisation_id
    booklet = await own_booklet(session, issuer_id=issuer_id, ref=ref, for_update=True)
    if booklet.status != BookletStatus.in_stock.value:
        raise BookletNotInStock(booklet_id=booklet.id, status=booklet.status)
    beneficiary = await get_beneficiary(session, issuer_id=issuer_id, beneficiary_id=beneficiary_id)
    programme = await get_programme(session, booklet.programme_id)
    _check_open(programme, paris_day(now))
    validity.check_hand_out(
        programme_name=programme.name,
        valid_until=programme.valid_until,
        today=paris_day(now),
        stop_days=hand_out_stop_days,
    )
    # The booklet row is locked: its in-stock cheques cannot change under us.
    count, value = (await session.execute(_IN_STOCK, {"booklet_id": booklet.id})).one()
    if count == 0:
        raise BookletNotInStock(booklet_id=booklet.id, status=booklet.status)
    await _take_capacity_and_quota(
        session,
        programme_id=programme.id,  # type: ignore[arg-type]
        issuer_id=issuer_id,
        value=value,
        cheques=count,
    )
    await session.execute(_ACTIVATE_CHEQUES, {"booklet_id": booklet.id, "now": now})
    booklet.status = BookletStatus.active.value
    booklet.beneficiary_id = beneficiary.id
    booklet.handed_out_at = now
    booklet.handed_out_by = actor.user_id
    beneficiary.last_booklet_at = now
    await session.flush()
    await _post_activation(
        session,
        programme_id=programme.id,  # type: ignore[arg-type]
        booklet_id=booklet.id,  # type: ignore[arg-type]
        value=value,
        cheques=count,
    )
    return await get_booklet(session, actor=actor, ref=booklet.id)  # type: ignore[arg-type]


# The cheques still usable become `cancelled`; the subquery locks them first, so a redemption
# committed meanwhile is seen (its cheque is then `redeemed` and left alone).
_CANCEL_CHEQUES = text("""
UPDATE cheque c SET status = 'cancelled', status_changed_at = :now
FROM (
    SELECT id, status FROM cheque
    WHERE booklet_id = :booklet_id AND status IN ('active', 'in_stock')
    ORDER BY id FOR UPDATE
) old
WHERE c.id = old.id
RETURNING old.status, c.value_cents
""")


async def cancel_booklet(
    session: AsyncSession, *, actor: Actor, ref: str | int, reason: str, now: datetime
) -> BookletRead:
    """A lost or stolen booklet, cancelled by an agent of its issuer: its active and in-stock
    cheques become `cancelled` (redeemed ones stay), the active ones' value goes back to the
    programme's available credit, capacity and quota are freed."""
    require_role(actor, Role.issuer_agent)
    booklet = await own_booklet(session, issuer_id=actor.organisation_id, ref=ref, for_update=True)
    if booklet.status == BookletStatus.cancelled.value:
        raise BookletAlreadyCancelled(booklet_id=booklet.id, cancelled_at=booklet.cancelled_at)
    rows = (await session.execute(_CANCEL_CHEQUES, {"booklet_id": booklet.id, "now": now})).all()
    active_values = [value for status, value in rows if status == ChequeStatus.active.value]
    value = sum(active_values)
    booklet.status = BookletStatus.cancelled.value
    booklet.cancelled_at = now
    booklet.cancel_reason = " ".join(reason.split())[:300]
    await session.flush()
    if active_values:
        await session.execute(
            _GIVE_BACK,
            {
                "programme_id": booklet.programme_id,
                "issuer_id": booklet.issuer_id,
                "value": value,
                "cheques": len(active_values),
            },
        )
        await ledger.post(
            session,
            key=f"cancel:{booklet.id}",
            kind="cancellation",
            postings=[
                (f"programme:{booklet.programme_id}:outstanding", -value),
                (f"programme:{booklet.programme_id}:available", value),
            ],
            memo={
                "programme_id": booklet.programme_id,
                "booklet_id": booklet.id,
                "cheques": len(active_values),
            },
        )
    return await get_booklet(session, actor=actor, ref=booklet.id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- audit

_AUDIT_CAPACITY = text("""
SELECT p.id, p.issued_value_cents,
       CAST(coalesce(sum(c.value_cents) FILTER (
           WHERE c.activated_at IS NOT NULL AND c.status <> 'cancelled'), 0) AS bigint),
       CAST(coalesce(sum(c.value_cents) FILTER (WHERE c.status = 'active'), 0) AS bigint)
FROM programme p LEFT JOIN cheque c ON c.programme_id = p.id
GROUP BY p.id ORDER BY p.id
""")

# Every issuer's cheques counted in one pass over the cheques (a count per issuer, each
# reading its booklets' cheques by index, took 34 s at 10 M cheques; this, a few).
_AUDIT_QUOTA = text("""
SELECT i.programme_id, i.organisation_id, i.issued_cheques, coalesce(n.cheques, 0)
FROM programme_issuer i
LEFT JOIN (
    SELECT b.programme_id, b.issuer_id, count(*) AS cheques
    FROM cheque c JOIN booklet b ON b.id = c.booklet_id
    WHERE c.activated_at IS NOT NULL AND c.status <> 'cancelled'
    GROUP BY b.programme_id, b.issuer_id
) n ON n.programme_id = i.programme_id AND n.issuer_id = i.organisation_id
ORDER BY i.programme_id, i.organisation_id
""")


async def audit_issuance(session: AsyncSession) -> list[Difference]:
    """Recompute from the cheques what issuance keeps as counters and ledger balances:
    each programme's issued value (cheques activated and not cancelled), each issuer's quota
    used, and each programme's outstanding balance (value of its active cheques). Returns
    differences, empty when everything agrees."""
    differences: list[Difference] = []
    rows = (await session.execute(_AUDIT_CAPACITY)).all()
    outstanding = await ledger.balances(
        session, [f"programme:{programme_id}:outstanding" for programme_id, *_ in rows]
    )
    for programme_id, counter, issued, active in rows:
        if counter != issued:
            differences.append(
                Difference(
                    kind="programme_issued_value",
                    message=f"Programme {programme_id} : valeur émise enregistrée {counter} "
                    f"centimes, valeur des chèques émis {issued} centimes.",
                    details={"programme_id": programme_id, "recorded": counter, "cheques": issued},
                )
            )
        account = f"programme:{programme_id}:outstanding"
        if outstanding[account] != active:
            differences.append(
                Difference(
                    kind="programme_outstanding",
                    message=f"Programme {programme_id} : encours au journal "
                    f"{outstanding[account]} centimes, chèques actifs {active} centimes.",
                    account=account,
                    details={"ledger": outstanding[account], "cheques": active},
                )
            )
    for programme_id, issuer_id, counter, issued in (await session.execute(_AUDIT_QUOTA)).all():
        if counter != issued:
            differences.append(
                Difference(
                    kind="issuer_quota_used",
                    message=f"Programme {programme_id}, structure {issuer_id} : quota utilisé "
                    f"enregistré {counter} chèques, chèques émis {issued}.",
                    details={"programme_id": programme_id, "issuer_id": issuer_id},
                )
            )
    return differences
