"""Redemption: a qualified site cashes a cheque exactly once, online or from an offline batch.

Every rule of DESIGN.md §5 and the writes are one database function, `pass_redeem`
(pass_/redeem.sql; the table "rule → where" is in pass_/README.md), which every road calls
once for all the scans at hand (`_REDEEM_MANY`): `redeem_online` (the API and the scan page:
one scan, or several that arrived together), `redeem_offline` (a batch), `check_cheque` (its
dry run; `redeem_cheque` is `redeem_online` of one scan, raising its refusal). This module
reads what a mediator typed or scanned (`parse_code`) and maps the function's refusal codes to
the domain's errors. A token that is not the very copy stored at issuance has its Ed25519
signature verified here (`_verified`) and the function is asked again with the claims it
carries, which must match the cheque.

Functions take `now` (UTC); the Paris day is derived from it (offline: from `scanned_at`), so
tests need no clock patching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_day
from kit.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from ledger import service as ledger
from ledger.audit import Difference
from pass_ import tokens
from pass_.codes import InvalidSerial, is_serial_like, normalise_serial
from pass_.enums import ChequeStatus, DemarcheFamily, Service
from pass_.redemption_schemas import (
    ChequeCheck,
    RedemptionRead,
    ReversalRead,
)
from pass_.tokens import InvalidToken, Keyring

__all__ = [
    "CLOCK_SKEW",
    "OFFLINE_MAX_AGE",
    "REVERSAL_WINDOW",
    "ChequeAlreadyRedeemed",
    "ChequeCancelled",
    "ChequeExpired",
    "ChequeNotActive",
    "ChequeNotFound",
    "ChequeNotYetValid",
    "OfflineOutcome",
    "OfflineScanIn",
    "ParsedCode",
    "RedemptionAlreadyReversed",
    "RedemptionInBatch",
    "RedemptionNotFound",
    "ReversalWindowClosed",
    "ScanOutOfRange",
    "SiteNotEligible",
    "SiteNotQualified",
    "audit_double_redemptions",
    "audit_redemptions",
    "check_cheque",
    "parse_code",
    "OnlineScanIn",
    "redeem_cheque",
    "redeem_offline",
    "redeem_online",
    "reverse_redemption",
]

REVERSAL_WINDOW = timedelta(hours=24)
# How old an offline scan may be, and how far ahead of the server a device's clock: the bounds
# `pass_redeem` applies (clearing.expiry and pass_.retention depend on them too).
OFFLINE_MAX_AGE = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)
REVERSAL_KIND = "redemption_reversal"


# --------------------------------------------------------------------------------- errors


class ChequeNotFound(NotFound):
    code = "cheque_not_found"
    message = "Aucun chèque ne correspond à ce code : vérifiez-le."


class ChequeAlreadyRedeemed(Conflict):
    code = "cheque_already_redeemed"
    message = "Ce chèque a déjà été encaissé."


class ChequeExpired(DomainError):
    code = "cheque_expired"
    message = "Ce chèque a expiré : sa date limite d'encaissement est passée."


class ChequeCancelled(DomainError):
    code = "cheque_cancelled"
    message = "Ce chèque a été annulé (carnet perdu ou volé) : il ne peut pas être encaissé."


class ChequeNotActive(DomainError):
    code = "cheque_not_active"
    message = "Ce chèque n'a pas été remis à un bénéficiaire : il ne peut pas être encaissé."


class ChequeNotYetValid(InvalidInput):
    code = "cheque_not_yet_valid"
    message = "Ce chèque n'est pas encore valable : il ne peut pas encore être encaissé."


class SiteNotQualified(Forbidden):
    code = "site_not_qualified"
    message = "Votre lieu n'est pas qualifié : il ne peut pas encaisser de chèques."


class SiteNotEligible(Forbidden):
    code = "site_not_eligible"
    message = "Ce chèque n'est pas valable sur le territoire de votre lieu."


class ScanOutOfRange(InvalidInput):
    code = "invalid_scanned_at"
    message = (
        "La date du scan n'est pas acceptable : elle est dans le futur ou date de plus de "
        "7 jours. Vérifiez l'heure de l'appareil."
    )


class RedemptionNotFound(NotFound):
    message = "Encaissement introuvable."


class ReversalWindowClosed(Conflict):
    code = "reversal_window_closed"
    message = "Un encaissement ne peut être annulé que dans les 24 heures."


class RedemptionInBatch(Conflict):
    code = "redemption_in_batch"
    message = "Cet encaissement est déjà dans un lot de compensation : il ne peut plus être annulé."


class RedemptionAlreadyReversed(Conflict):
    code = "redemption_already_reversed"
    message = "Cet encaissement a déjà été annulé."


# --------------------------------------------------------------------------------- codes


@dataclass(frozen=True, slots=True)
class ParsedCode:
    """What a mediator typed or scanned: a cheque's serial, and the QR token in its canonical
    form (upper case, no spaces: as stored at issuance) or None for a typed serial. Nothing
    here is trusted: `pass_redeem` authenticates the token against its cheque."""

    serial: str
    token: str | None = None


def parse_code(code: str, keyring: Keyring) -> ParsedCode:
    """Read a serial in any case, with or without dashes or spaces (`invalid_serial`,
    `serial_check_failed` on a typo), or a token (`invalid_token` if it is not even well
    formed, or was signed by a key now retired). Never touches the database."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidSerial()
    if is_serial_like(code):
        return ParsedCode(normalise_serial(code))
    stated = tokens.read_unverified(code)
    if not keyring.knows(stated.kid):  # a retired key's tokens no longer verify
        raise InvalidToken()
    return ParsedCode(stated.serial, code.strip().upper())


# --------------------------------------------------------------------------------- the rules

# The one definition of the redemption is pass_/redeem.sql. Every road calls it here, for one
# scan or many (an offline batch, online scans that arrived together, each with its site and
# user), in one call for all of them; `dry_run` decides without writing (the check). The
# function answers one row a scan, `n` its position in the arrays.
_REDEEM_MANY = text("""
SELECT r.n, r.refusal, r.redemption_id, r.cheque_id, r.serial, r.status, r.value_cents,
       r.valid_from, r.redeem_until, r.redeemed_at, r.redeemed_here
FROM pass_redeem(CAST(:serials AS text[]), CAST(:tokens AS text[]),
                 CAST(:programme_ids AS bigint[]), CAST(:values AS bigint[]),
                 CAST(:sites AS bigint[]), CAST(:users AS bigint[]), CAST(:days AS date[]),
                 CAST(:services AS text[]), CAST(:demarches AS text[]),
                 CAST(:scanned AS timestamptz[]), :at, CAST(:max_age AS interval),
                 CAST(:skew AS interval), CAST(:dry_run AS boolean)) AS r
""")


@dataclass(frozen=True, slots=True)
class _Call:
    """One call of `pass_redeem`: what was read from the code, and when and how."""

    parsed: ParsedCode
    day: date
    service: str | None
    demarche_family: str | None
    scanned_at: datetime | None = None
    claims: tokens.ChequeClaims | None = None  # of a token whose signature was verified


def _params(call: _Call) -> dict[str, Any]:
    return {
        "serial": call.parsed.serial,
        "token": call.parsed.token if call.claims is None else None,
        "claimed_programme_id": call.claims.programme_id if call.claims else None,
        "claimed_value_cents": call.claims.value_cents if call.claims else None,
        "day": call.day,
        "service": call.service,
        "demarche_family": call.demarche_family,
        "scanned_at": call.scanned_at,
        "max_age": OFFLINE_MAX_AGE,
        "skew": CLOCK_SKEW,
    }


def _verified(call: _Call, row: Any, keyring: Keyring) -> _Call | None:
    """For a token the function did not find stored as such: verify its signature (raises
    InvalidToken if forged) and return the call to make again with its claims; None when
    the answer stands (a genuine token of no cheque of ours: cheque_not_found)."""
    if call.parsed.token is None or call.claims is not None:
        return None
    if row.refusal not in ("invalid_token", "cheque_not_found"):
        return None
    claims = keyring.verify(call.parsed.token)
    return replace(call, claims=claims) if row.refusal == "invalid_token" else None


def _refusal(row: Any, *, offline: bool = False) -> DomainError:
    """The domain error for a refusal code of `pass_redeem`, with its details (offline, a
    cheque this site already redeemed is a double scan: `duplicate_of`)."""
    code = row.refusal
    if code == "cheque_already_redeemed":
        if offline and row.redeemed_here:
            return _duplicate(row.redemption_id, row.redeemed_at)
        return ChequeAlreadyRedeemed(redeemed_at=row.redeemed_at)
    if code == "cheque_not_yet_valid":
        return ChequeNotYetValid(
            f"Ce chèque n'est pas encore valable : il pourra être encaissé à partir du "
            f"{row.valid_from:%d/%m/%Y}.",
            valid_from=row.valid_from,
        )
    if code == "cheque_expired":
        return ChequeExpired(redeem_until=row.redeem_until)
    if code == "cheque_not_found":
        return ChequeNotFound(serial=row.serial)
    return _SIMPLE[code]()


_SIMPLE: dict[str, type[DomainError]] = {
    "site_not_qualified": SiteNotQualified,
    "site_not_eligible": SiteNotEligible,
    "invalid_token": InvalidToken,
    "cheque_cancelled": ChequeCancelled,
    "cheque_not_active": ChequeNotActive,
    "invalid_scanned_at": ScanOutOfRange,
}


def _duplicate(redemption_id: int | None, redeemed_at: datetime | None) -> DomainError:
    return ChequeAlreadyRedeemed(
        "Ce chèque a déjà été encaissé par votre lieu (scan en double) : il n'est compté "
        "qu'une fois.",
        redeemed_at=redeemed_at,
        duplicate_of=redemption_id,
    )


def _demarche(value: DemarcheFamily | str | None) -> str | None:
    return DemarcheFamily(value).value if value else None


# --------------------------------------------------------------------------------- online


@dataclass(frozen=True, slots=True)
class OnlineScanIn:
    """One online scan: who (site, user) scanned what code, for which service."""

    site_id: int
    user_id: int | None
    code: str
    service: Service
    demarche_family: DemarcheFamily | None


async def redeem_online(
    session: AsyncSession, *, keyring: Keyring, scans: Sequence[OnlineScanIn], now: datetime
) -> list[RedemptionRead | DomainError]:
    """Redeem online scans now — one, or several that arrived together at any sites (the API
    groups them: api/redeem_online.py) — in one call of `pass_redeem` for all of them (and
    one more for any re-signed token). One result per scan, in order: the redemption, or the
    refusal, with nothing written for it. A second scan of a cheque its site redeemed is a
    plain `cheque_already_redeemed` online (the mediator sees it at once)."""
    day = paris_day(now)
    calls: dict[int, _Call | DomainError] = {}
    for i, scan in enumerate(scans):
        try:
            calls[i] = _Call(parse_code(scan.code, keyring), day, Service(scan.service).value,
                             _demarche(scan.demarche_family))
        except DomainError as exc:
            calls[i] = exc
    rows = await _decide_many(session, calls, keyring=keyring, now=now,
                              sites=[s.site_id for s in scans], users=[s.user_id for s in scans],
                              dry_run=False)
    return [row if isinstance(row := rows[i], DomainError) else
            _refusal(row) if row.refusal is not None else _read(row, scan.site_id)
            for i, scan in enumerate(scans)]


def _read(row: Any, site_id: int) -> RedemptionRead:
    return RedemptionRead.model_construct(id=row.redemption_id, cheque_serial=row.serial,
                                          value_cents=row.value_cents,
                                          redeemed_at=row.redeemed_at, site_id=site_id)


async def redeem_cheque(
    session: AsyncSession,
    *,
    keyring: Keyring,
    site_id: int,
    user_id: int | None,
    code: str,
    service: Service,
    demarche_family: DemarcheFamily | None,
    now: datetime,
) -> RedemptionRead:
    """Redeem the cheque `code` at `site_id`, now; raise why not (`redeem_online` of one
    scan). Every refusal is raised with nothing written."""
    [result] = await redeem_online(session, keyring=keyring, now=now, scans=[
        OnlineScanIn(site_id, user_id, code, service, demarche_family)])
    if isinstance(result, DomainError):
        raise result
    return result


# Refusals that concern the code or the site: the check raises them instead of answering.
_CHECK_RAISES = frozenset({"site_not_qualified", "cheque_not_found", "invalid_token"})


async def check_cheque(
    session: AsyncSession, *, keyring: Keyring, site_id: int, code: str, now: datetime
) -> ChequeCheck:
    """What a site learns by checking a code without redeeming it (DESIGN.md §7): the
    redemption's own function in its dry-run mode.

    Refusals tied to the code or the site raise (`invalid_*`, `cheque_not_found`,
    `site_not_qualified`); the others answer `redeemable: false` with the reason."""
    call = _Call(parse_code(code, keyring), paris_day(now), None, None)
    [row] = (await _decide_many(session, {0: call}, keyring=keyring, now=now, sites=[site_id],
                                users=[None], dry_run=True)).values()
    if isinstance(row, DomainError):  # a forged token
        raise row
    refusal = None if row.refusal is None else _refusal(row)
    if refusal is not None and row.refusal in _CHECK_RAISES:
        raise refusal
    return ChequeCheck(
        serial=row.serial,
        status=ChequeStatus(row.status),
        value_cents=row.value_cents,
        redeemable=refusal is None,
        reason=refusal.code if refusal else None,
        message=refusal.message if refusal else None,
        valid_from=row.valid_from,
        redeem_until=row.redeem_until,
        redeemed_at=row.redeemed_at if row.status == ChequeStatus.redeemed else None,
    )


# --------------------------------------------------------------------------------- offline


@dataclass(frozen=True, slots=True)
class OfflineScanIn:
    code: str
    service: Service
    demarche_family: DemarcheFamily | None
    scanned_at: datetime


@dataclass(slots=True)
class OfflineOutcome:
    status: Literal["accepted", "refused", "conflict"]
    redemption: RedemptionRead | None = None
    error: DomainError | None = None


async def redeem_offline(
    session: AsyncSession,
    *,
    keyring: Keyring,
    site_id: int,
    user_id: int | None,
    scans: Sequence[OfflineScanIn],
    now: datetime,
) -> list[OfflineOutcome]:
    """Redeem the scans a scanner stored while offline; one outcome per scan, in order.

    Each scan is accepted or refused on its own with the codes of the online road; a second
    scan of a cheque (in this batch, or already redeemed by this site) is a `conflict`. One
    call of `pass_redeem` decides and writes them all (and one more for any re-signed
    token)."""
    calls: dict[int, _Call | DomainError] = {}
    for i, scan in enumerate(scans):
        try:
            calls[i] = _Call(parse_code(scan.code, keyring), paris_day(scan.scanned_at),
                             Service(scan.service).value, _demarche(scan.demarche_family),
                             scan.scanned_at)
        except DomainError as exc:
            calls[i] = exc
    rows = await _decide_many(session, calls, keyring=keyring, now=now,
                              sites=[site_id] * len(scans), users=[user_id] * len(scans),
                              dry_run=False)
    return [OfflineOutcome("refused", error=rows[i]) if isinstance(rows[i], DomainError)
            else _outcome(rows[i], site_id) for i in range(len(scans))]


async def _decide_many(
    session: AsyncSession, calls: dict[int, _Call | DomainError], *, keyring: Keyring,
    now: datetime, sites: Sequence[int], users: Sequence[int | None], dry_run: bool,
) -> dict[int, Any]:
    """The function's row for each call (asked again for the re-signed tokens), or the
    DomainError of a code that could not be read or a forged token."""
    decided: dict[int, Any] = {i: c for i, c in calls.items() if isinstance(c, DomainError)}
    todo = {i: c for i, c in calls.items() if isinstance(c, _Call)}
    for _round in range(2):
        again: dict[int, _Call] = {}
        for i, row in await _redeem_many(session, todo, sites=sites, users=users, now=now,
                                         dry_run=dry_run):
            try:
                retry = _verified(todo[i], row, keyring)
            except DomainError as exc:
                decided[i] = exc
                continue
            if retry is not None:
                again[i] = retry
            else:
                decided[i] = row
        todo = again
    if todo or len(decided) != len(calls):
        raise RuntimeError(f"scans left undecided: {sorted(set(calls) - set(decided))}")
    return decided


async def _redeem_many(
    session: AsyncSession, calls: dict[int, _Call], *, sites: Sequence[int],
    users: Sequence[int | None], now: datetime, dry_run: bool,
) -> list[tuple[int, Any]]:
    if not calls:
        return []
    ns = list(calls)
    params = [_params(calls[n]) for n in ns]
    rows = await session.execute(_REDEEM_MANY, {
        "serials": [p["serial"] for p in params],
        "tokens": [p["token"] for p in params],
        "programme_ids": [p["claimed_programme_id"] for p in params],
        "values": [p["claimed_value_cents"] for p in params],
        "days": [p["day"] for p in params],
        "services": [p["service"] for p in params],
        "demarches": [p["demarche_family"] for p in params],
        "scanned": [p["scanned_at"] for p in params],
        "sites": [sites[n] for n in ns],
        "users": [users[n] for n in ns],
        "max_age": OFFLINE_MAX_AGE,
        "skew": CLOCK_SKEW,
        "at": now,
        "dry_run": dry_run,
    })
    return [(ns[row[0] - 1], row) for row in rows.all()]


def _outcome(row: Any, site_id: int) -> OfflineOutcome:
    if row.refusal is None:
        return OfflineOutcome("accepted", redemption=_read(row, site_id))
    status: Literal["refused", "conflict"] = "conflict" if row.redeemed_here else "refused"
    return OfflineOutcome(status, error=_refusal(row, offline=True))


# --------------------------------------------------------------------------------- reversal

_REVERSE = text("""
UPDATE redemption SET reversed_at = :now
WHERE id = :id AND site_id = :site_id AND reversed_at IS NULL AND batch_id IS NULL
  AND redeemed_at > CAST(:now AS timestamptz) - CAST(:window AS interval)
RETURNING cheque_id, value_cents, redeemed_at
""")

_REDEMPTION_STATE = text("""
SELECT site_id, reversed_at, batch_id FROM redemption WHERE id = :id
""")

_REACTIVATE = text("""
UPDATE cheque SET status = 'active', status_changed_at = :now
WHERE id = :cheque_id AND status = 'redeemed'
RETURNING serial
""")


async def reverse_redemption(
    session: AsyncSession, *, site_id: int, redemption_id: int, now: datetime
) -> ReversalRead:
    """Cancel a redemption of `site_id` within 24 h and before clearing: the cheque is active
    again and a reversing ledger entry (`reverse:<redemption_id>`) is posted.

    One conditional UPDATE decides, as for redeeming: clearing sets `batch_id` on the same row,
    so whichever commits first wins and the other sees it."""
    row = (
        await session.execute(
            _REVERSE,
            {"now": now, "id": redemption_id, "site_id": site_id, "window": REVERSAL_WINDOW},
        )
    ).first()
    if row is None:
        state = (await session.execute(_REDEMPTION_STATE, {"id": redemption_id})).first()
        if state is None or state[0] != site_id:
            raise RedemptionNotFound(redemption_id=redemption_id)
        if state[1] is not None:
            raise RedemptionAlreadyReversed(reversed_at=state[1])
        if state[2] is not None:
            raise RedemptionInBatch()
        raise ReversalWindowClosed()
    cheque_id, value_cents, redeemed_at = row
    serial = (await session.execute(_REACTIVATE, {"now": now, "cheque_id": cheque_id})).scalar()
    if serial is None:  # a live redemption always has a redeemed cheque
        raise RuntimeError(f"cheque {cheque_id} of redemption {redemption_id} is not redeemed")
    await ledger.reverse(
        session,
        key=f"reverse:{redemption_id}",
        original_key=f"redeem:{redemption_id}",
        kind=REVERSAL_KIND,
        memo={"serial": serial},
        at=now,
    )
    return ReversalRead(
        id=redemption_id,
        cheque_serial=serial,
        value_cents=value_cents,
        redeemed_at=redeemed_at,
        reversed_at=now,
        site_id=site_id,
    )


# --------------------------------------------------------------------------------- audit

MAX_AUDIT_ROWS = 20  # rows quoted in one difference

# Each cheque's status against its redemptions: `redeemed` exactly when it has one live
# redemption, of the cheque's programme and value.
_AUDIT_CHEQUES = text("""
SELECT 'cheque_redeemed_without_redemption', c.id, CAST(NULL AS bigint)
FROM cheque c
WHERE c.status = 'redeemed'
  AND (CAST(:programme_id AS bigint) IS NULL OR c.programme_id = :programme_id)
  AND NOT EXISTS (SELECT 1 FROM redemption r WHERE r.cheque_id = c.id AND r.reversed_at IS NULL)
UNION ALL
SELECT 'redemption_of_unredeemed_cheque', r.cheque_id, r.id
FROM redemption r JOIN cheque c ON c.id = r.cheque_id
WHERE r.reversed_at IS NULL AND c.status <> 'redeemed'
  AND (CAST(:programme_id AS bigint) IS NULL OR r.programme_id = :programme_id)
UNION ALL
SELECT 'redemption_differs_from_cheque', r.cheque_id, r.id
FROM redemption r JOIN cheque c ON c.id = r.cheque_id
WHERE (r.value_cents <> c.value_cents OR r.programme_id <> c.programme_id)
  AND (CAST(:programme_id AS bigint) IS NULL OR :programme_id IN (r.programme_id, c.programme_id))
ORDER BY 1, 2
LIMIT :limit
""")

# (A backslash before a colon keeps SQLAlchemy from reading `:payable` as a parameter.)
# Each redemption's entries as they must be, against the journal: `redeem:<id>` moves its
# value from the programme's outstanding to the site's payable, `reverse:<id>` (reversed
# ones only) moves it back; nothing else under these keys (for one programme: under the keys
# of its redemptions).
_AUDIT_ENTRIES = text("""
WITH mine AS (
    SELECT * FROM redemption r
    WHERE CAST(:programme_id AS bigint) IS NULL OR r.programme_id = :programme_id
), expected AS (
    SELECT 'redeem:' || r.id AS key, x.code, x.amount
    FROM mine r, LATERAL (VALUES
        ('programme:' || r.programme_id || '\\:outstanding', -r.value_cents),
        ('site:' || r.site_id || '\\:payable', r.value_cents)) AS x(code, amount)
    UNION ALL
    SELECT 'reverse:' || r.id, x.code, x.amount
    FROM mine r, LATERAL (VALUES
        ('programme:' || r.programme_id || '\\:outstanding', r.value_cents),
        ('site:' || r.site_id || '\\:payable', -r.value_cents)) AS x(code, amount)
    WHERE r.reversed_at IS NOT NULL
), journal AS (
    SELECT e.idempotency_key AS key, a.code, p.amount_cents AS amount
    FROM ledger_entry e
    JOIN ledger_posting p ON p.entry_id = e.id
    JOIN ledger_account a ON a.id = p.account_id
    WHERE CASE WHEN CAST(:programme_id AS bigint) IS NULL
               THEN starts_with(e.idempotency_key, 'redeem:')
                    OR starts_with(e.idempotency_key, 'reverse:')
               ELSE e.idempotency_key IN (SELECT 'redeem:' || id FROM mine
                                          UNION ALL SELECT 'reverse:' || id FROM mine) END
), missing AS (
    SELECT * FROM expected EXCEPT ALL SELECT * FROM journal
), unexpected AS (
    SELECT * FROM journal EXCEPT ALL SELECT * FROM expected
)
SELECT 'missing', key, code, amount FROM missing
UNION ALL
SELECT 'unexpected', key, code, amount FROM unexpected
ORDER BY 2, 1, 3
LIMIT :limit
""")

_CHEQUE_MESSAGES = {
    "cheque_redeemed_without_redemption": "Chèque encaissé sans encaissement en cours",
    "redemption_of_unredeemed_cheque": "Encaissement en cours d'un chèque non encaissé",
    "redemption_differs_from_cheque": "Encaissement dont le programme ou la valeur diffère "
    "du chèque",
}


async def audit_redemptions(
    session: AsyncSession, *, programme_id: int | None = None
) -> list[Difference]:
    """Recompute from the cheques and redemptions what the journal must hold: every cheque's
    status agrees with its redemptions, and every redemption (and reversal) has exactly its
    ledger entry. Returns the differences (at most 20 rows quoted per check), empty when all
    agree; all programmes, or one. For `clearing.audit.run_audit`."""
    params = {"programme_id": programme_id, "limit": MAX_AUDIT_ROWS}
    differences: list[Difference] = []
    for kind, cheque_id, redemption_id in (await session.execute(_AUDIT_CHEQUES, params)).all():
        differences.append(
            Difference(
                kind=kind,
                message=f"{_CHEQUE_MESSAGES[kind]} : chèque {cheque_id}"
                + (f", encaissement {redemption_id}." if redemption_id else "."),
                details={"cheque_id": cheque_id, "redemption_id": redemption_id},
            )
        )
    for what, key, code, amount in (await session.execute(_AUDIT_ENTRIES, params)).all():
        differences.append(
            Difference(
                kind=f"redemption_entry_{what}",
                message=(
                    f"Écriture {key} : ligne {code} de {amount} centimes "
                    + ("absente du journal." if what == "missing" else "inattendue au journal.")
                ),
                account=code,
                details={"key": key, "amount_cents": amount},
            )
        )
    return differences


# A cheque redeemed twice over: more than one live (unreversed) redemption. The partial
# unique index uq_redemption_live_cheque forbids it; this finds it should the index ever be
# dropped or bypassed, naming the cheque and its redemptions.
_AUDIT_DOUBLE = text("""
SELECT r.cheque_id, c.serial, array_agg(r.id ORDER BY r.id), sum(r.value_cents)
FROM redemption r JOIN cheque c ON c.id = r.cheque_id
WHERE r.reversed_at IS NULL
  AND (CAST(:programme_id AS bigint) IS NULL OR r.programme_id = :programme_id)
GROUP BY r.cheque_id, c.serial
HAVING count(*) > 1
ORDER BY r.cheque_id
LIMIT :limit
""")


async def audit_double_redemptions(
    session: AsyncSession, *, programme_id: int | None = None
) -> list[Difference]:
    """Every cheque with two live redemptions or more, by its serial (at most 20 quoted);
    all programmes, or one. For `clearing.audit.run_audit`."""
    rows = await session.execute(
        _AUDIT_DOUBLE, {"programme_id": programme_id, "limit": MAX_AUDIT_ROWS}
    )
    return [
        Difference(
            kind="cheque_redeemed_twice",
            message=f"Chèque {serial} encaissé {len(ids)} fois : encaissements "
            + ", ".join(str(i) for i in ids) + f" ({total} centimes au lieu d'une fois).",
            details={"cheque_id": cheque_id, "serial": serial, "redemption_ids": list(ids)},
        )
        for cheque_id, serial, ids, total in rows.all()
    ]
