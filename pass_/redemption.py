"""Redemption: a qualified site cashes a cheque exactly once, online or from an offline batch.

Exactly once, whatever the concurrency (GNU Taler's pattern): one conditional statement claims
the cheque — `UPDATE cheque SET status = 'redeemed' … WHERE serial = … AND status = 'active'
AND <every rule of DESIGN.md §5>` — and inserts the redemption in the same statement. PostgreSQL
locks the row, and a concurrent claim waiting on that lock re-evaluates the condition once the
first commits, finds `status = 'redeemed'` and claims nothing. The partial unique index
`uq_redemption_live_cheque` (one unreversed redemption per cheque) backs it. Zero rows claimed
→ read the cheque to say why: already redeemed is answered with *when*, never *where*.

The ledger entry (`programme:<pid>:outstanding` → `site:<sid>:payable`, key
`redeem:<redemption_id>`) is written in the same transaction; "A → B" posts −v on A and +v on
B, so both accounts hold positive value. Nothing here updates a row shared by all redemptions
of a programme: only the cheque row and appended rows.

Offline batches (`redeem_offline`) judge each scan on the Paris day of its `scanned_at`, which
must lie within [now − OFFLINE_MAX_AGE, now + CLOCK_SKEW]: a scanner may stay offline a week
(a bus touring villages) and its clock may be a few minutes off; anything else is refused with
`invalid_scanned_at`. The redemption's `redeemed_at` is when the server recorded it (so the
24 h reversal window and clearing cutoffs follow the server's clock); `scanned_at` keeps the
device's time. Scans are processed in `scanned_at` order: of two scans of one cheque, the
earlier one is redeemed and the later one reported as a conflict (as is a scan of a cheque the
same site already redeemed). The batch is set-based and still exactly once: one statement locks
the candidate cheques in id order (no deadlock between batches), re-checks `status = 'active'`
under the lock and inserts the redemptions. A batch's QR tokens are authenticated by
comparing them with the token stored for their cheque (the one we signed at issuance), an
Ed25519 verification only for any other token: verifying 500 signatures was most of a batch.

The common cases take a shorter road, with the same rules and the same rows written:
`redeem_at_once` (a scanned QR code online: one statement) and `redeem_batch_at_once` (an
offline batch of genuine QR codes, all redeemable, under new keys: one transaction of three
statements). Either gives way, having written nothing, to the general path above for
anything else, which then says why, replays, or decides scan by scan.

Functions take `now` (UTC) as an argument; the Paris day is derived from it, so tests need no
clock patching.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

import asyncpg
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
from pass_.tokens import ChequeClaims, InvalidToken, Keyring
from pass_.validation import in_territory

__all__ = [
    "CLOCK_SKEW",
    "OFFLINE_MAX_AGE",
    "REVERSAL_WINDOW",
    "AtOnceQueue",
    "ChequeAlreadyRedeemed",
    "ChequeCancelled",
    "ChequeExpired",
    "ChequeNotActive",
    "ChequeNotFound",
    "ChequeNotYetValid",
    "OfflineOutcome",
    "OfflineScanIn",
    "OnlineAtOnce",
    "ParsedCode",
    "RedemptionAlreadyReversed",
    "RedemptionInBatch",
    "RedemptionNotFound",
    "ReversalWindowClosed",
    "ScanAtOnce",
    "ScanOutOfRange",
    "SiteNotEligible",
    "SiteNotQualified",
    "audit_redemptions",
    "check_cheque",
    "ledger_postings",
    "parse_code",
    "redeem_at_once",
    "redeem_batch_at_once",
    "redeem_cheque",
    "redeem_many_at_once",
    "redeem_offline",
    "reverse_redemption",
]

REVERSAL_WINDOW = timedelta(hours=24)
OFFLINE_MAX_AGE = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=5)
ENTRY_KIND = "redemption"
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
    """A typed serial (claims None) or a verified QR token (its claims); in an offline batch,
    a token still to authenticate against its cheque's row (`unchecked`, with the claims it
    states, not to be trusted before `_authenticate`)."""

    serial: str
    claims: ChequeClaims | None = None
    unchecked: str | None = None


def parse_code(code: str, keyring: Keyring) -> ParsedCode:
    """Read what a mediator typed or scanned: a serial in any case, with or without dashes or
    spaces (`invalid_serial`, `serial_check_failed` on a typo), or a signed token
    (`invalid_token` if forged, truncated or junk). Never touches the database."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidSerial()
    if is_serial_like(code):
        return ParsedCode(normalise_serial(code))
    claims = keyring.verify(code)
    return ParsedCode(claims.serial, claims)


def _read_code(code: str) -> ParsedCode:
    """`parse_code` without the signature check, for batches: a token's serial is read from
    its payload, and `_authenticate` checks the token once its cheque's row is at hand."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidSerial()
    if is_serial_like(code):
        return ParsedCode(normalise_serial(code))
    stated = tokens.read_unverified(code)
    return ParsedCode(stated.serial, stated, unchecked=code)


def _authenticate(parsed: ParsedCode, cheque: _ChequeState | None, keyring: Keyring) -> ParsedCode:
    """A token equal to the one stored for its cheque is the one we issued and signed: it
    needs no Ed25519 check (the costliest step of a batch). Any other token is verified."""
    token = parsed.unchecked
    if token is None:
        return parsed
    if (
        cheque is not None
        and hmac.compare_digest(cheque.token, token.strip())
        and parsed.claims is not None
        and keyring.knows(parsed.claims.kid)  # a retired key's tokens no longer verify
    ):
        return ParsedCode(parsed.serial, parsed.claims)
    return ParsedCode(parsed.serial, keyring.verify(token))


# --------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class _Site:
    qualified: bool
    commune_insee: str


@dataclass(frozen=True, slots=True)
class _ChequeState:
    id: int
    serial: str
    token: str
    programme_id: int
    value_cents: int
    status: str
    valid_from: date
    redeem_until: date
    status_changed_at: datetime | None
    territory: list[str]
    redemption_id: int | None  # the live (unreversed) redemption, if any
    redeemed_at: datetime | None
    redeemed_by: int | None  # its site: never shown to another site


def _refusal(
    site: _Site, cheque: _ChequeState, claims: ChequeClaims | None, day: date
) -> DomainError | None:
    """Why `site` may not redeem `cheque` on the Paris day `day`, or None if it may.

    The rules in the order a mediator needs them: the code itself, the territory, the
    cheque's state, then its dates. The claim statement `_CLAIM` checks the same rules."""
    if not site.qualified:
        return SiteNotQualified()
    if claims is not None and (
        claims.programme_id != cheque.programme_id or claims.value_cents != cheque.value_cents
    ):
        # Signed by us but not matching the cheque: never redeem on the token's word.
        return InvalidToken()
    if not in_territory(site.commune_insee, cheque.territory):
        return SiteNotEligible()
    if cheque.status == ChequeStatus.redeemed:
        return ChequeAlreadyRedeemed(redeemed_at=cheque.redeemed_at or cheque.status_changed_at)
    if cheque.status == ChequeStatus.cancelled:
        return ChequeCancelled()
    if cheque.status == ChequeStatus.expired:
        return ChequeExpired(redeem_until=cheque.redeem_until)
    if cheque.status != ChequeStatus.active:
        return ChequeNotActive()
    if day < cheque.valid_from:
        return ChequeNotYetValid(
            f"Ce chèque n'est pas encore valable : il pourra être encaissé à partir du "
            f"{cheque.valid_from:%d/%m/%Y}.",
            valid_from=cheque.valid_from,
        )
    if day > cheque.redeem_until:
        return ChequeExpired(redeem_until=cheque.redeem_until)
    return None


_SITE = text("""
SELECT kind = 'site' AND qualification = 'qualified', commune_insee
FROM organisation WHERE id = :site_id
""")

_CHEQUES = text("""
SELECT c.id, c.serial, c.token, c.programme_id, c.value_cents, c.status, c.valid_from,
       c.redeem_until, c.status_changed_at, p.territory, r.id, r.redeemed_at, r.site_id
FROM cheque c
JOIN programme p ON p.id = c.programme_id
LEFT JOIN redemption r ON r.cheque_id = c.id AND r.reversed_at IS NULL
WHERE c.serial = ANY(CAST(:serials AS text[]))
""")


async def _site(session: AsyncSession, site_id: int) -> _Site:
    row = (await session.execute(_SITE, {"site_id": site_id})).first()
    return _Site(bool(row[0]), row[1]) if row else _Site(False, "")


async def _cheques(session: AsyncSession, serials: Sequence[str]) -> dict[str, _ChequeState]:
    if not serials:
        return {}
    rows = (await session.execute(_CHEQUES, {"serials": list(set(serials))})).all()
    return {row[1]: _ChequeState(*row) for row in rows}


def _not_found(parsed: ParsedCode) -> DomainError:
    # A serial, or a token that verifies, naming no cheque of ours.
    return ChequeNotFound(serial=parsed.serial)


async def check_cheque(
    session: AsyncSession, *, keyring: Keyring, site_id: int, code: str, now: datetime
) -> ChequeCheck:
    """What a site learns by checking a code without redeeming it (DESIGN.md §7).

    Refusals tied to the code or the site raise (`invalid_*`, `cheque_not_found`,
    `site_not_qualified`); the others answer `redeemable: false` with the reason."""
    parsed = parse_code(code, keyring)
    site = await _site(session, site_id)
    if not site.qualified:
        raise SiteNotQualified()
    cheque = (await _cheques(session, [parsed.serial])).get(parsed.serial)
    if cheque is None:
        raise _not_found(parsed)
    refusal = _refusal(site, cheque, parsed.claims, paris_day(now))
    if isinstance(refusal, InvalidToken):
        raise refusal
    return ChequeCheck(
        serial=cheque.serial,
        status=ChequeStatus(cheque.status),
        value_cents=cheque.value_cents,
        redeemable=refusal is None,
        reason=refusal.code if refusal else None,
        message=refusal.message if refusal else None,
        valid_from=cheque.valid_from,
        redeem_until=cheque.redeem_until,
        redeemed_at=cheque.redeemed_at if cheque.status == ChequeStatus.redeemed else None,
    )


# --------------------------------------------------------------------------------- online


def ledger_postings(programme_id: int, site_id: int, value_cents: int) -> list[tuple[str, int]]:
    """The redemption entry: the cheque's value moves from the programme's outstanding
    account to the site's payable account."""
    return [
        (f"programme:{programme_id}:outstanding", -value_cents),
        (f"site:{site_id}:payable", value_cents),
    ]


def _prepared_entry(stated: ChequeClaims, site_id: int) -> ledger.NewContent:
    """The redemption's ledger entry as the short roads write it inside their own statements:
    the postings of `ledger_postings` and the memo every path gives it, `{"serial": …}`
    (`ledger.prepare`'s content, through a family kept per programme, site and value)."""
    return _entry_family(stated.programme_id, site_id, stated.value_cents)(stated.serial)


@functools.lru_cache(maxsize=4096)
def _entry_family(
    programme_id: int, site_id: int, value_cents: int
) -> Callable[[str], ledger.NewContent]:
    return ledger.prepare_family(
        kind=ENTRY_KIND,
        postings=ledger_postings(programme_id, site_id, value_cents),
        memo_field="serial",
    )


def _scanned_in_range(scanned_at: datetime, now: datetime) -> bool:
    """Whether an offline scan's time is acceptable: at most OFFLINE_MAX_AGE ago, at most
    CLOCK_SKEW ahead."""
    return now - OFFLINE_MAX_AGE <= scanned_at <= now + CLOCK_SKEW


# The rules of `_refusal`, in SQL, in the claim itself: the territory test is
# `pass_.validation.in_territory` (a 5-character code is a commune, shorter ones a prefix).
# The site's side of the rules, shared by both claims (`{site}`: the site id's parameter):
# qualified, and its commune in the programme's territory as `pass_.validation.in_territory`
# reads it (a 5-character code is a commune, a shorter one a prefix).
_SITE_MAY_REDEEM = """
      AND EXISTS (
          SELECT 1 FROM organisation s JOIN programme p ON p.id = c.programme_id
          WHERE s.id = {site} AND s.kind = 'site' AND s.qualification = 'qualified'
            AND EXISTS (SELECT 1 FROM unnest(p.territory) AS t(code)
                        WHERE t.code = s.commune_insee
                           OR (length(t.code) < 5 AND starts_with(s.commune_insee, t.code))))
"""

# "Still active", as the claims test it: `c.status = (SELECT 'active')` rather than
# `c.status = 'active'`. Same meaning, but the planner cannot match it to the partial index
# `ix_cheque_active_redeem_until` (WHERE status = 'active', for expiry), so every claim finds
# its cheques by their serial or id. With statistics lagging behind a run of new cheques (a
# campaign, an import: "hardly any active cheque"), that index looked free and the planner
# started from it, scanning every active cheque — 74,000 for one batch, seconds at full CPU.
_STILL_ACTIVE = "c.status = (SELECT CAST('active' AS text))"

_CLAIM = text("""
WITH claimed AS (
    UPDATE cheque c SET status = 'redeemed', status_changed_at = :now
    WHERE c.serial = :serial
      AND """ + _STILL_ACTIVE + """
      AND CAST(:today AS date) BETWEEN c.valid_from AND c.redeem_until
      AND (CAST(:programme_id AS bigint) IS NULL
           OR (c.programme_id = :programme_id AND c.value_cents = :value_cents))
""" + _SITE_MAY_REDEEM.format(site=":site_id") + """\
    RETURNING c.id, c.programme_id, c.value_cents, c.serial
), inserted AS (
    INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                            demarche_family, redeemed_at)
    SELECT id, programme_id, :site_id, :user_id, value_cents, :service, :demarche_family, :now
    FROM claimed
    RETURNING id, cheque_id
)
SELECT inserted.id, claimed.id, claimed.programme_id, claimed.value_cents, claimed.serial
FROM inserted JOIN claimed ON claimed.id = inserted.cheque_id
""")


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
    """Redeem the cheque `code` (serial or token) at `site_id`, now; raise why not.

    Two statements on success: the claim (with the redemption) and the ledger entry.
    Every refusal (a DomainError) is raised before anything is written, so a caller may store
    it and commit without a savepoint (api/idempotency.py relies on this)."""
    parsed = parse_code(code, keyring)
    today = paris_day(now)
    params = {
        "now": now,
        "today": today,
        "serial": parsed.serial,
        "programme_id": parsed.claims.programme_id if parsed.claims else None,
        "value_cents": parsed.claims.value_cents if parsed.claims else None,
        "site_id": site_id,
        "user_id": user_id,
        "service": Service(service).value,
        "demarche_family": _demarche(demarche_family),
    }
    # A claim fails only for a reason `_refusal` reads back; if the cheque turns out claimable
    # (a reversal made it active between the two statements), claim again.
    for _attempt in range(3):
        row = (await session.execute(_CLAIM, params)).first()
        if row is not None:
            break
        await _raise_refusal(session, site_id, parsed, today)
    else:  # reversed and redeemed again three times over while we looked: say so
        raise ChequeAlreadyRedeemed(redeemed_at=None)
    redemption_id, cheque_id, programme_id, value_cents, serial = row
    try:
        await ledger.post(
            session,
            key=f"redeem:{redemption_id}",
            kind=ENTRY_KIND,
            postings=ledger_postings(programme_id, site_id, value_cents),
            memo={"serial": serial},
            at=now,
        )
    except DomainError as exc:
        # The key is new (a fresh redemption id): a refusal here is a bug, not an answer to
        # store, and the claim just written must be rolled back with the whole transaction.
        raise RuntimeError(f"ledger refused redemption {redemption_id}: {exc.code}") from exc
    return RedemptionRead(
        id=redemption_id,
        cheque_serial=serial,
        value_cents=value_cents,
        redeemed_at=now,
        site_id=site_id,
    )


# The whole redemption in one statement, run outside any explicit transaction (the statement
# is its own transaction: one round trip, where `redeem_cheque` under `run_once` takes six).
# It writes everything or nothing: the claim with every rule of `_CLAIM`, the account's own
# check (active, of this site, a mediator: `api.deps` checks the token only), the redemption,
# the ledger entry prepared by `ledger.prepare` with its postings, and the idempotency record
# holding the answer. The record is a plain INSERT: a key already used (or being used by a
# concurrent request) raises a unique violation, which undoes the claim with the rest.
# A ledger account not created yet (a site's first redemption) claims nothing either.
_REDEEM_AT_ONCE = """
WITH account AS (
    SELECT x.n, a.id, x.amount
    FROM unnest(CAST($10 AS text[]), CAST($11 AS bigint[])) WITH ORDINALITY AS x(code, amount, n)
    JOIN ledger_account a ON a.code = x.code
), claimed AS (
    UPDATE cheque c SET status = 'redeemed', status_changed_at = $1
    WHERE c.serial = $3
      AND c.token = $18
      AND """ + _STILL_ACTIVE + """
      AND CAST($2 AS date) BETWEEN c.valid_from AND c.redeem_until
      AND c.programme_id = $4 AND c.value_cents = $5
      AND (SELECT count(*) FROM account) = cardinality(CAST($10 AS text[]))
      AND EXISTS (SELECT 1 FROM app_user u
                  WHERE u.id = $7 AND u.is_active AND u.organisation_id = $6
                    AND u.role = 'site_mediator')
""" + _SITE_MAY_REDEEM.format(site="$6") + """\
    RETURNING c.id, c.programme_id, c.value_cents
), inserted AS (
    INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                            demarche_family, redeemed_at)
    SELECT id, programme_id, $6, $7, value_cents, $8, $9, $1 FROM claimed
    RETURNING id
), entry AS (
    INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
    SELECT 'redeem:' || id, $12, CAST($13 AS jsonb), $1, $14 FROM inserted
    RETURNING id
), posting AS (
    INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
    SELECT entry.id, account.id, account.amount FROM entry CROSS JOIN account ORDER BY account.n
), answer AS (
    INSERT INTO idempotency_record (user_id, key, request_hash, status_code, response)
    SELECT $7, $15, $16, 201, CAST(format($17, id) AS json) FROM inserted
    RETURNING CAST(response AS text) AS body
)
SELECT inserted.id, answer.body FROM inserted CROSS JOIN answer
"""


class Connection(Protocol):
    """What `redeem_at_once` needs of an asyncpg connection or pool."""

    async def fetchrow(self, query: str, *args: object) -> Any: ...

    async def fetch(self, query: str, *args: object) -> Any: ...


async def redeem_at_once(
    conn: Connection,
    *,
    keyring: Keyring,
    token: str,
    stated: ChequeClaims,
    site_id: int,
    user_id: int,
    service: Service,
    demarche_family: DemarcheFamily | None,
    now: datetime,
    idempotency_key: str,
    request_hash: str,
    answer_format: str,
) -> tuple[int, str] | None:
    """Redeem the cheque of a QR token in one statement and store the answer under the
    client's idempotency key; returns (redemption id, answer body), or None when anything
    stands in the way — a refusal, a key already used, an inactive account, a ledger account
    still to create, a token that is not the very one stored for its cheque. The caller then
    takes the general path (`redeem_cheque` under `api.idempotency.run_once`), which says why
    or replays, and nothing was written.

    `stated` is what the token says (`pass_.tokens.read_unverified`), trusted only because the
    token is authenticated as in offline batches: byte for byte the token stored at issuance
    is one we signed (and its key must not be retired); any other text (forged, re-cased,
    with spaces) goes to the general path, which verifies the signature.
    `conn` is an asyncpg connection (or pool) *outside* any transaction. `answer_format` is
    the answer's JSON text with `%s` where the redemption id goes (and `%%` for any other
    percent sign), so the stored answer is the one the caller returns, byte for byte."""
    if not keyring.knows(stated.kid):
        return None
    content = _prepared_entry(stated, site_id)
    try:
        row = await conn.fetchrow(
            _REDEEM_AT_ONCE,
            now,
            paris_day(now),
            stated.serial,
            stated.programme_id,
            stated.value_cents,
            site_id,
            user_id,
            Service(service).value,
            _demarche(demarche_family),
            [posting.account for posting in content.postings],
            [posting.amount_cents for posting in content.postings],
            content.kind,
            content.memo_text,
            content.content_hash,
            idempotency_key,
            request_hash,
            answer_format,
            token,
        )
    except asyncpg.UniqueViolationError:
        return None  # the idempotency key is taken: the general path replays or refuses
    except asyncpg.LockNotAvailableError:
        return None  # a row locked past the connection's lock_timeout: the general path waits
    return None if row is None else (int(row[0]), str(row[1]))


# The claim of scans by serial, shared by the grouped online statement and the offline batch:
# each scan's cheque found by its serial, one index probe per scan (LIMIT 1 keeps it so), then
# claimed by its address (see _STILL_ACTIVE for why no plan may start from the active
# cheques), in serial order, so two statements lock shared cheques in one order. `input` holds
# the scans (serial, token, programme_id, value_cents, day); `account` the ledger accounts.
_TARGET_BY_SERIAL = """SELECT x.*, t.row_address
    FROM input x
    CROSS JOIN LATERAL (SELECT c.ctid AS row_address FROM cheque c
                        WHERE c.serial = x.serial LIMIT 1) AS t
    ORDER BY x.serial"""


def _claim_by_address(*, at: str, site: str, user: str) -> str:
    """The claim of the `target` rows with every rule of `_refusal` (`at`, `site`, `user`: SQL
    expressions of the instant, the site id and the user id)."""
    return """UPDATE cheque c SET status = 'redeemed', status_changed_at = """ + at + """
    FROM target x
    WHERE c.ctid = x.row_address
      AND c.serial = x.serial
      AND c.token = x.token
      AND """ + _STILL_ACTIVE + """
      AND x.day BETWEEN c.valid_from AND c.redeem_until
      AND c.programme_id = x.programme_id AND c.value_cents = x.value_cents
      AND EXISTS (SELECT 1 FROM account
                  WHERE code = 'programme:' || c.programme_id || ':outstanding')
      AND EXISTS (SELECT 1 FROM account WHERE code = 'site:' || """ + site + """ || ':payable')
      AND EXISTS (SELECT 1 FROM app_user u
                  WHERE u.id = """ + user + """ AND u.is_active
                    AND u.organisation_id = """ + site + """
                    AND u.role = 'site_mediator')
""" + _SITE_MAY_REDEEM.format(site=site)


# Online redemptions at once, several in one statement (`redeem_many_at_once`): each scan's
# claim, redemption, ledger entry and stored answer, exactly as `_REDEEM_AT_ONCE` writes them
# for one, every row of a scan joined to its claim, so a scan has all its rows or none. A scan
# whose claim finds nothing is left out (the caller decides it alone); a key already used
# raises, undoing the whole statement. Cheques are claimed in serial order and answers stored
# in key order, so two such statements sharing a cheque or a key wait, never deadlock.
_REDEEM_MANY_AT_ONCE = """
WITH input AS (
    SELECT * FROM unnest(CAST($1 AS int[]), CAST($2 AS timestamptz[]), CAST($3 AS date[]),
                         CAST($4 AS text[]), CAST($5 AS text[]), CAST($6 AS bigint[]),
                         CAST($7 AS bigint[]), CAST($8 AS bigint[]), CAST($9 AS bigint[]),
                         CAST($10 AS text[]), CAST($11 AS text[]), CAST($12 AS text[]),
                         CAST($13 AS text[]), CAST($14 AS text[]), CAST($15 AS text[]),
                         CAST($16 AS text[]))
         AS x(n, at, day, serial, token, programme_id, value_cents, site_id, user_id, service,
              demarche_family, memo, content_hash, key, request_hash, answer_format)
), account AS (
    SELECT a.id, a.code FROM ledger_account a WHERE a.code = ANY(CAST($17 AS text[]))
), target AS MATERIALIZED (
    """ + _TARGET_BY_SERIAL + """
), claimed AS (
    """ + _claim_by_address(at="x.at", site="x.site_id", user="x.user_id") + """
    RETURNING x.n, c.id
), inserted AS (
    INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                            demarche_family, redeemed_at)
    SELECT c.id, x.programme_id, x.site_id, x.user_id, x.value_cents, x.service,
           x.demarche_family, x.at
    FROM claimed c JOIN input x ON x.n = c.n
    ORDER BY x.n
    RETURNING id, cheque_id
), done AS (
    SELECT x.*, i.id AS rid FROM inserted i JOIN claimed c ON c.id = i.cheque_id
    JOIN input x ON x.n = c.n
), entry AS (
    INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
    SELECT 'redeem:' || d.rid, $18, CAST(d.memo AS jsonb), d.at, d.content_hash
    FROM done d
    ORDER BY d.rid
    RETURNING id, idempotency_key
), posting AS (
    INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
    SELECT e.id, a.id, p.amount
    FROM entry e
    JOIN done d ON e.idempotency_key = 'redeem:' || d.rid
    CROSS JOIN LATERAL (VALUES (1, 'programme:' || d.programme_id || ':outstanding',
                                -d.value_cents),
                               (2, 'site:' || d.site_id || ':payable', d.value_cents))
         AS p(n, code, amount)
    JOIN account a ON a.code = p.code
    ORDER BY e.id, p.n
), answer AS (
    INSERT INTO idempotency_record (user_id, key, request_hash, status_code, response)
    SELECT d.user_id, d.key, d.request_hash, 201, CAST(format(d.answer_format, d.rid) AS json)
    FROM done d
    ORDER BY d.user_id, d.key
    RETURNING user_id, key, CAST(response AS text) AS body
)
SELECT d.n, d.rid, a.body FROM done d JOIN answer a ON a.user_id = d.user_id AND a.key = d.key
"""


@dataclass(frozen=True, slots=True)
class OnlineAtOnce:
    """One online redemption for `redeem_many_at_once`: the arguments of `redeem_at_once`
    (same meaning, same trust in `stated`)."""

    token: str
    stated: ChequeClaims
    site_id: int
    user_id: int
    service: Service
    demarche_family: DemarcheFamily | None
    now: datetime
    idempotency_key: str
    request_hash: str
    answer_format: str


async def redeem_many_at_once(
    conn: Connection, *, keyring: Keyring, items: Sequence[OnlineAtOnce]
) -> list[tuple[int, str] | None]:
    """`redeem_at_once` for several scans in one statement (one round trip, one commit);
    returns, in order, each scan's (redemption id, answer body), or None for a scan it did not
    redeem — a refusal, a retired key, a cheque or a key met twice in `items` —, which the
    caller then decides alone. Raises `asyncpg.UniqueViolationError` (nothing written) when a
    key was already used: the caller then decides each scan alone."""
    results: list[tuple[int, str] | None] = [None] * len(items)
    known = {kid for kid in {i.stated.kid for i in items} if keyring.knows(kid)}
    serials: set[str] = set()
    keys: set[tuple[int, str]] = set()
    chosen: list[int] = []
    for n, item in enumerate(items):
        key = (item.user_id, item.idempotency_key)
        if item.stated.serial in serials or key in keys or item.stated.kid not in known:
            continue
        serials.add(item.stated.serial)
        keys.add(key)
        chosen.append(n)
    if not chosen:
        return results
    picked = [items[n] for n in chosen]
    contents = [_prepared_entry(i.stated, i.site_id) for i in picked]
    codes = sorted({p.account for content in contents for p in content.postings})
    rows = await conn.fetch(
        _REDEEM_MANY_AT_ONCE,
        chosen,
        [i.now for i in picked],
        [paris_day(i.now) for i in picked],
        [i.stated.serial for i in picked],
        [i.token for i in picked],
        [i.stated.programme_id for i in picked],
        [i.stated.value_cents for i in picked],
        [i.site_id for i in picked],
        [i.user_id for i in picked],
        [Service(i.service).value for i in picked],
        [_demarche(i.demarche_family) for i in picked],
        [c.memo_text for c in contents],
        [c.content_hash for c in contents],
        [i.idempotency_key for i in picked],
        [i.request_hash for i in picked],
        [i.answer_format for i in picked],
        codes,
        ENTRY_KIND,
    )
    for n, redemption_id, body in rows:
        results[n] = (int(redemption_id), str(body))
    return results


class AtOnceQueue:
    """Online redemptions at once, grouped when they come faster than statements end.

    At most `statements` of the queue's statements run at a time (per worker). A scan that
    finds one free is redeemed alone at once (`redeem_at_once`), without waiting. Otherwise it
    waits for the next statement to end; the next statement then takes every scan waiting
    (`redeem_many_at_once`, at most `max_items`). Under load, a worker thus sends one
    statement — one round trip, one commit — for several scans instead of one each, and both
    PostgreSQL's and the worker's CPU per redemption fall; when quiet, nothing changes. A
    scan the grouped statement leaves out, or all of them if it fails (a key already used, a
    lost connection…), is tried alone, as if it had come alone, then falls to the general path
    as before."""

    def __init__(self, conn: Connection, keyring: Keyring, *, statements: int = 1,
                 max_items: int = 64) -> None:
        if statements < 1 or max_items < 1:
            raise ValueError("statements and max_items must be at least 1")
        self._conn = conn
        self._keyring = keyring
        self._statements = statements
        self._max_items = max_items
        self._running = 0
        self._waiting: deque[tuple[OnlineAtOnce, asyncio.Future[Any]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def redeem(self, item: OnlineAtOnce) -> tuple[int, str] | None:
        """As `redeem_at_once` for `item`."""
        if self._running < self._statements and not self._waiting:
            self._running += 1
            try:
                return await self._alone(item)
            finally:
                self._running -= 1
                self._start_next()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        result = await future
        return await self._alone(item) if result is _ALONE else result  # type: ignore[no-any-return]

    async def _alone(self, item: OnlineAtOnce) -> tuple[int, str] | None:
        return await redeem_at_once(
            self._conn, keyring=self._keyring, token=item.token, stated=item.stated,
            site_id=item.site_id, user_id=item.user_id, service=item.service,
            demarche_family=item.demarche_family, now=item.now,
            idempotency_key=item.idempotency_key, request_hash=item.request_hash,
            answer_format=item.answer_format,
        )

    def _start_next(self) -> None:
        while self._waiting and self._running < self._statements:
            group = []
            while self._waiting and len(group) < self._max_items:
                item, future = self._waiting.popleft()
                if not future.done():  # its request was cancelled meanwhile
                    group.append((item, future))
            if group:
                self._running += 1
                task = asyncio.get_running_loop().create_task(self._run(group))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, group: list[tuple[OnlineAtOnce, asyncio.Future[Any]]]) -> None:
        futures = [future for _, future in group]
        try:
            if len(group) == 1:
                results: list[Any] = [await self._alone(group[0][0])]
            else:
                results = await redeem_many_at_once(
                    self._conn, keyring=self._keyring, items=[item for item, _ in group]
                )
                results = [_ALONE if r is None else r for r in results]
        except Exception as exc:  # noqa: BLE001 — each request decides on its own
            results = [exc] if len(group) == 1 else [_ALONE] * len(group)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            self._running -= 1
        # The next group's statement is sent first, then this group's answers go out while
        # PostgreSQL works on it (both are scheduled: the statement's task comes first).
        self._start_next()
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


_ALONE = object()  # a scan left out of a grouped statement: try it alone


# An offline batch in one transaction when every scan is a genuine QR code of a distinct
# cheque, redeemable here on its scan's day, under a new key: three statements whatever the
# number of scans (redemption ids, the idempotency records holding the answers, then the
# claims with their redemptions, ledger entries and postings). Anything else — one scan
# refused, a key already used, a cheque claimed meanwhile — and the transaction is rolled
# back: the general path (`redeem_offline` under `api.idempotency.run_many`) decides each scan.
_NEW_REDEMPTION_IDS = """
SELECT nextval(pg_get_serial_sequence('redemption', 'id')) FROM generate_series(1, $1)
"""

# Keys first, in key order, as `api.idempotency.run_many` takes them: a batch and an online
# request sharing a key never lock in opposite orders. A key already used inserts nothing.
_RECORD_ANSWERS = """
INSERT INTO idempotency_record (user_id, key, request_hash, status_code, response)
SELECT $1, x.key, x.hash, 201, CAST(x.body AS json)
FROM unnest(CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS text[])) AS x(key, hash, body)
ORDER BY x.key
ON CONFLICT (user_id, key) DO NOTHING
"""

_CLAIM_BATCH = """
WITH input AS (
    SELECT * FROM unnest(CAST($1 AS bigint[]), CAST($2 AS text[]), CAST($3 AS text[]),
                         CAST($4 AS bigint[]), CAST($5 AS bigint[]), CAST($6 AS text[]),
                         CAST($7 AS text[]), CAST($8 AS timestamptz[]), CAST($9 AS date[]),
                         CAST($10 AS text[]), CAST($11 AS text[]))
         AS x(rid, serial, token, programme_id, value_cents, service, demarche_family,
              scanned_at, day, memo, content_hash)
), account AS (
    SELECT a.id, a.code FROM ledger_account a WHERE a.code = ANY(CAST($12 AS text[]))
), target AS MATERIALIZED (
    """ + _TARGET_BY_SERIAL + """
), claimed AS (
    """ + _claim_by_address(at="$13", site="CAST($14 AS bigint)", user="$15") + """
    RETURNING c.id, c.serial
), inserted AS (
    INSERT INTO redemption (id, cheque_id, programme_id, site_id, user_id, value_cents, service,
                            demarche_family, redeemed_at, scanned_at)
    SELECT x.rid, c.id, x.programme_id, $14, $15, x.value_cents, x.service,
           x.demarche_family, $13, x.scanned_at
    FROM claimed c JOIN input x ON x.serial = c.serial
    ORDER BY x.rid
    RETURNING id
), entry AS (
    INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
    SELECT 'redeem:' || x.rid, $16, CAST(x.memo AS jsonb), $13, x.content_hash
    FROM claimed c JOIN input x ON x.serial = c.serial
    ORDER BY x.rid
    RETURNING id, idempotency_key
), posting AS (
    INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
    SELECT e.id, a.id, p.amount
    FROM entry e
    JOIN input x ON e.idempotency_key = 'redeem:' || x.rid
    CROSS JOIN LATERAL (VALUES (1, 'programme:' || x.programme_id || ':outstanding',
                                -x.value_cents),
                               (2, 'site:' || CAST($14 AS bigint) || ':payable',
                                x.value_cents))
         AS p(n, code, amount)
    JOIN account a ON a.code = p.code
    ORDER BY e.id, p.n
)
SELECT count(*) FROM inserted
"""


@dataclass(frozen=True, slots=True)
class ScanAtOnce:
    """A scan of an offline batch for `redeem_batch_at_once`: its QR token and what the token
    states (`pass_.tokens.read_unverified`, trusted only once the token is found stored for
    its cheque), and the client's key and request fingerprint."""

    token: str
    stated: ChequeClaims
    service: Service
    demarche_family: DemarcheFamily | None
    scanned_at: datetime
    idempotency_key: str
    request_hash: str


class Transactional(Protocol):
    """What `redeem_batch_at_once` needs: an asyncpg connection outside any transaction."""

    def transaction(self) -> Any: ...

    async def fetch(self, query: str, *args: object) -> Any: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...

    async def execute(self, query: str, *args: object) -> str: ...


class _NotAtOnce(Exception):
    """Rolls back the batch's transaction: the general path will decide."""


async def redeem_batch_at_once(
    conn: Transactional,
    *,
    keyring: Keyring,
    site_id: int,
    user_id: int,
    scans: Sequence[ScanAtOnce],
    now: datetime,
    answer_of: Callable[[int, ScanAtOnce], str],
) -> list[str] | None:
    """Redeem a whole offline batch at once and store each scan's answer under its key;
    returns the answers' bodies in scan order, or None (nothing written) when the batch is not
    that simple: a scan out of the accepted time range or not redeemable here on its day, a
    serial or a key twice, a key already used, a token not the very one stored for its
    cheque, a ledger account still to create… The caller then takes the general path.

    `answer_of(redemption_id, scan)` is the scan's answer as the general path would store it
    (the JSON text of the online POST's 201 answer)."""
    if not scans:
        return None
    if len({s.stated.serial for s in scans}) != len(scans):
        return None
    if len({s.idempotency_key for s in scans}) != len(scans):
        return None
    if not all(_scanned_in_range(s.scanned_at, now) for s in scans):
        return None
    if not all(keyring.knows(kid) for kid in {s.stated.kid for s in scans}):
        return None
    contents = [_prepared_entry(s.stated, site_id) for s in scans]
    codes = sorted({p.account for content in contents for p in content.postings})
    try:
        async with conn.transaction():
            # A key held by a concurrent request is waited for (then found used), but not for
            # long: past a second the general path, which waits as long as it takes, decides.
            await conn.execute("SET LOCAL lock_timeout = '1s'")
            ids = [row[0] for row in await conn.fetch(_NEW_REDEMPTION_IDS, len(scans))]
            answers = [answer_of(rid, scan) for rid, scan in zip(ids, scans, strict=True)]
            status = await conn.execute(
                _RECORD_ANSWERS,
                user_id,
                [s.idempotency_key for s in scans],
                [s.request_hash for s in scans],
                answers,
            )
            if status != f"INSERT 0 {len(scans)}":
                raise _NotAtOnce
            claimed = await conn.fetchval(
                _CLAIM_BATCH,
                ids,
                [s.stated.serial for s in scans],
                [s.token for s in scans],
                [s.stated.programme_id for s in scans],
                [s.stated.value_cents for s in scans],
                [Service(s.service).value for s in scans],
                [_demarche(s.demarche_family) for s in scans],
                [s.scanned_at for s in scans],
                [paris_day(s.scanned_at) for s in scans],
                [content.memo_text for content in contents],
                [content.content_hash for content in contents],
                codes,
                now,
                site_id,
                user_id,
                ENTRY_KIND,
            )
            if claimed != len(scans):
                raise _NotAtOnce
    except (
        _NotAtOnce,
        asyncpg.IntegrityConstraintViolationError,  # a key or a cheque taken meanwhile
        asyncpg.DeadlockDetectedError,
        asyncpg.LockNotAvailableError,
    ):
        return None
    return answers


async def _raise_refusal(
    session: AsyncSession, site_id: int, parsed: ParsedCode, day: date
) -> None:
    site = await _site(session, site_id)
    if not site.qualified:
        raise SiteNotQualified()
    cheque = (await _cheques(session, [parsed.serial])).get(parsed.serial)
    if cheque is None:
        raise _not_found(parsed)
    refusal = _refusal(site, cheque, parsed.claims, day)
    if refusal is not None:
        raise refusal


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


_CLAIM_MANY = text("""
WITH input AS (
    SELECT * FROM unnest(CAST(:cheque_ids AS bigint[]), CAST(:services AS text[]),
                         CAST(:demarches AS text[]), CAST(:scanned AS timestamptz[]))
         AS x(cheque_id, service, demarche_family, scanned_at)
), locked AS MATERIALIZED (
    SELECT c.id FROM cheque c
    WHERE c.id = ANY(CAST(:cheque_ids AS bigint[])) AND """ + _STILL_ACTIVE + """
    ORDER BY c.id
    FOR UPDATE
), claimed AS (
    UPDATE cheque c SET status = 'redeemed', status_changed_at = :now
    FROM locked WHERE c.id = locked.id AND """ + _STILL_ACTIVE + """
    RETURNING c.id, c.programme_id, c.value_cents
)
INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                        demarche_family, redeemed_at, scanned_at)
SELECT claimed.id, claimed.programme_id, :site_id, :user_id, claimed.value_cents,
       input.service, input.demarche_family, :now, input.scanned_at
FROM claimed JOIN input ON input.cheque_id = claimed.id
ORDER BY claimed.id
RETURNING id, cheque_id, programme_id, value_cents
""")


def _duplicate(redemption_id: int | None, redeemed_at: datetime | None) -> DomainError:
    return ChequeAlreadyRedeemed(
        "Ce chèque a déjà été encaissé par votre lieu (scan en double) : il n'est compté "
        "qu'une fois.",
        redeemed_at=redeemed_at,
        duplicate_of=redemption_id,
    )


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

    Each scan is accepted or refused on its own with the codes of the online path; a second
    scan of a cheque (in this batch, or already redeemed by this site) is a `conflict`. A few
    statements whatever the number of scans: read the site and the cheques, claim the
    candidates in one statement, post their ledger entries together."""
    outcomes: list[OfflineOutcome | None] = [None] * len(scans)
    parsed: dict[int, ParsedCode] = {}
    for i, scan in enumerate(scans):
        try:
            if not _scanned_in_range(scan.scanned_at, now):
                raise ScanOutOfRange(scanned_at=scan.scanned_at)
            parsed[i] = _read_code(scan.code)
        except DomainError as exc:
            outcomes[i] = OfflineOutcome("refused", error=exc)
    site = await _site(session, site_id)
    if not site.qualified:
        for i in parsed:
            outcomes[i] = OfflineOutcome("refused", error=SiteNotQualified())
        parsed = {}

    entries: list[ledger.NewEntry] = []
    redeemed_here: dict[int, RedemptionRead] = {}  # cheque id → its redemption in this batch
    snapshot = await _cheques(session, [p.serial for p in parsed.values()])
    for i in list(parsed):
        try:
            parsed[i] = _authenticate(parsed[i], snapshot.get(parsed[i].serial), keyring)
        except DomainError as exc:
            outcomes[i] = OfflineOutcome("refused", error=exc)
            del parsed[i]
    # Scan order, as if the earlier scans had been redeemed one by one.
    pending = sorted(parsed, key=lambda i: (scans[i].scanned_at, i))
    # A candidate another transaction claims after our read is read again and decided in the
    # next round (it is almost always refused then: someone redeemed or cancelled it).
    for _round in range(3):
        candidates: dict[int, int] = {}  # cheque id → the scan that claims it
        waiting: list[int] = []  # later scans of a candidate's cheque
        for i in pending:
            cheque = snapshot.get(parsed[i].serial)
            if cheque is None:
                outcomes[i] = OfflineOutcome("refused", error=_not_found(parsed[i]))
            elif cheque.id in redeemed_here:
                mine = redeemed_here[cheque.id]
                outcomes[i] = OfflineOutcome("conflict", error=_duplicate(mine.id, now))
            elif cheque.id in candidates:
                waiting.append(i)
            else:
                refusal = _refusal(site, cheque, parsed[i].claims, paris_day(scans[i].scanned_at))
                if refusal is None:
                    candidates[cheque.id] = i
                elif isinstance(refusal, ChequeAlreadyRedeemed) and cheque.redeemed_by == site_id:
                    error = _duplicate(cheque.redemption_id, cheque.redeemed_at)
                    outcomes[i] = OfflineOutcome("conflict", error=error)
                else:
                    outcomes[i] = OfflineOutcome("refused", error=refusal)
        if not candidates:
            break
        for rid, cheque_id, programme_id, value_cents in await _claim_many(
            session, candidates, scans, site_id=site_id, user_id=user_id, now=now
        ):
            i = candidates[cheque_id]
            # Values straight from the database: no validation needed (500 of them a batch).
            redeemed_here[cheque_id] = RedemptionRead.model_construct(
                id=rid,
                cheque_serial=parsed[i].serial,
                value_cents=value_cents,
                redeemed_at=now,
                site_id=site_id,
            )
            outcomes[i] = OfflineOutcome("accepted", redemption=redeemed_here[cheque_id])
            entries.append(
                ledger.NewEntry(
                    key=f"redeem:{rid}",
                    kind=ENTRY_KIND,
                    postings=ledger_postings(programme_id, site_id, value_cents),
                    memo={"serial": parsed[i].serial},
                    at=now,
                )
            )
        pending = sorted(
            (i for i in [*candidates.values(), *waiting] if outcomes[i] is None),
            key=lambda i: (scans[i].scanned_at, i),
        )
        lost = [i for i in pending if snapshot[parsed[i].serial].id not in redeemed_here]
        if lost:
            snapshot.update(await _cheques(session, [parsed[i].serial for i in lost]))
    for i in pending:
        if outcomes[i] is not None:
            continue
        here = redeemed_here.get(snapshot[parsed[i].serial].id)
        outcomes[i] = (
            OfflineOutcome("conflict", error=_duplicate(here.id, now))
            if here
            # Still contended after three rounds (cheques reversed and redeemed again meanwhile).
            else OfflineOutcome("refused", error=ChequeAlreadyRedeemed())
        )
    if entries:
        await ledger.post_many(session, entries)
    return [o if o is not None else _unreachable(i) for i, o in enumerate(outcomes)]


async def _claim_many(
    session: AsyncSession,
    candidates: dict[int, int],
    scans: Sequence[OfflineScanIn],
    *,
    site_id: int,
    user_id: int | None,
    now: datetime,
) -> list[tuple[int, int, int, int]]:
    """Claim the candidate cheques and insert their redemptions in one statement; returns
    (redemption id, cheque id, programme id, value) of those claimed."""
    ids = sorted(candidates)
    rows = await session.execute(
        _CLAIM_MANY,
        {
            "cheque_ids": ids,
            "services": [Service(scans[candidates[c]].service).value for c in ids],
            "demarches": [_demarche(scans[candidates[c]].demarche_family) for c in ids],
            "scanned": [scans[candidates[c]].scanned_at for c in ids],
            "now": now,
            "site_id": site_id,
            "user_id": user_id,
        },
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


def _unreachable(index: int) -> OfflineOutcome:
    raise RuntimeError(f"offline scan {index} was left undecided")


def _demarche(value: DemarcheFamily | str | None) -> str | None:
    return DemarcheFamily(value).value if value else None


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
