"""Use cases of the journal: post entries (idempotently), reverse them, read balances.

Posting is one database function, `ledger_post_many` (ledger/posting.sql; `ledger_post` is its
case of one entry): it creates missing accounts, computes the entries' fingerprints, inserts
the entries (ON CONFLICT on their idempotency keys) and their postings. `post` and `post_many`
call it, and so does SQL that posts within its own transaction (the redemption,
pass_/redeem.sql): one definition. No row is updated, so
concurrent posts on the same accounts never wait on each other; balances are sums of
postings. The database re-checks the balance at commit (see migration 0002_ledger).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Result, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.canonical import canonical_memo
from ledger.errors import EntryNotFound, IdempotencyConflict, InvalidEntry, UnbalancedEntry
from ledger.values import Entry, NewEntry, Posting, PostingsIn

__all__ = [
    "Entry",
    "NewEntry",
    "Posting",
    "balance",
    "balances",
    "ensure_accounts",
    "get_entry",
    "post",
    "post_many",
    "reverse",
]

MAX_TEXT = 200
MAX_KIND = 64
MAX_CENTS = 2**63 - 1
# As the database's CHECK: printable ASCII, no spaces (`programme:12:available`).
ACCOUNT_CODE = re.compile(r"[!-~]{1,200}")

# The posting itself is the database function `ledger_post` (ledger/posting.sql, installed by
# migration 0008_redeem_function): accounts created on first use, the entry with its
# fingerprint (content hash), its postings, the balance checked, the key's existing entry
# found. SQL that posts inside its own statement (the redemption) calls the same function.
_POST = text("""
SELECT entry_id, created, created_at, content_hash, same_content
FROM ledger_post(:key, :kind, CAST(:memo AS jsonb), CAST(:at AS timestamptz),
                 CAST(:codes AS text[]), CAST(:amounts AS bigint[]))
""")

# Many entries in one statement: `ledger_post_many`, of which `ledger_post` is the case of one;
# postings are passed flat with the index (from 1) of their entry.
_POST_MANY = text("""
SELECT i, entry_id, created, created_at, content_hash, same_content
FROM ledger_post_many(CAST(:keys AS text[]), CAST(:kinds AS text[]),
                      CAST(CAST(:memos AS text[]) AS jsonb[]),
                      CAST(:ats AS timestamptz[]), CAST(:entry_of AS int[]),
                      CAST(:codes AS text[]), CAST(:amounts AS bigint[]))
ORDER BY i
""")

_ENTRY_BY_KEY = text("""
SELECT e.id, e.kind, CAST(e.memo AS text), e.created_at, e.content_hash,
       array_remove(array_agg(a.code ORDER BY p.id), NULL),
       array_remove(array_agg(p.amount_cents ORDER BY p.id), NULL)
FROM ledger_entry e
LEFT JOIN ledger_posting p ON p.entry_id = e.id
LEFT JOIN ledger_account a ON a.id = p.account_id
WHERE e.idempotency_key = :key
GROUP BY e.id
""")

_RESOLVE_ACCOUNTS = text("""
WITH wanted AS (
    SELECT DISTINCT unnest(CAST(:codes AS text[])) AS code
), new_account AS (
    INSERT INTO ledger_account (code)
    SELECT w.code FROM wanted w
    WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.code = w.code)
    ORDER BY w.code
    ON CONFLICT (code) DO NOTHING
    RETURNING id, code
)
SELECT id, code FROM new_account
UNION ALL
SELECT a.id, a.code FROM ledger_account a JOIN wanted w ON a.code = w.code
""")


async def _run(session: AsyncSession, statement: TextClause,
               params: dict[str, Any]) -> Result[Any]:
    """Execute on the session's connection (its transaction): Session.execute would add only
    ORM bookkeeping, and text() statements do not autoflush anyway."""
    connection = await session.connection()
    return await connection.execute(statement, params)


class _Checked:
    """An entry's input read in Python: well-formed values, or a French InvalidEntry /
    UnbalancedEntry before any SQL (the database function re-checks the balance)."""

    __slots__ = ("key", "kind", "postings", "memo", "memo_text", "at")

    def __init__(self, key: str, kind: str, postings: PostingsIn, memo: dict[str, Any] | None,
                 at: datetime | None) -> None:
        _check_text(key, "clé d'idempotence", MAX_TEXT)
        _check_text(kind, "nature de l'écriture", MAX_KIND)
        checked = [_check_posting(p) for p in postings]
        if len(checked) < 2:
            raise InvalidEntry("Une écriture comptable a au moins deux lignes.", key=key,
                               postings=len(checked))
        total = sum(p.amount_cents for p in checked)
        if total != 0:
            raise UnbalancedEntry(key=key, total_cents=total)
        if memo is not None and (not isinstance(memo, dict) or not _exact_json(memo)):
            raise InvalidEntry("Le mémo d'une écriture est un objet JSON sans nombre à virgule "
                               "ni caractère nul.", key=key)
        try:
            memo_text = canonical_memo(memo)
        except (TypeError, ValueError) as exc:
            raise InvalidEntry("Le mémo de l'écriture n'est pas du JSON valide.",
                               key=key) from exc
        if at is not None and at.tzinfo is None:
            raise InvalidEntry("L'instant d'une écriture doit porter un fuseau horaire.", key=key)
        self.key = key
        self.kind = kind
        self.postings = tuple(checked)
        # Returned as it reads back from jsonb, so retries compare equal.
        self.memo = None if memo_text is None else json.loads(memo_text)
        self.memo_text = memo_text
        self.at = at

    def entry(self, row: Any) -> Entry:
        """The entry `ledger_post` answered with `row` (id, created, at, hash, same)."""
        entry_id, created, created_at, fingerprint, same_content = row
        if not same_content:
            raise IdempotencyConflict(key=self.key, entry_id=entry_id)
        return Entry(id=entry_id, key=self.key, kind=self.kind, postings=self.postings,
                     memo=self.memo, created_at=created_at, content_hash=fingerprint,
                     created=created)


def _exact_json(value: object) -> bool:
    """True if `value` reads back from jsonb unchanged: floats may not (1e100 returns as an
    integer), and jsonb refuses NUL characters; the ledger needs neither."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and "\x00" not in k and _exact_json(v)
                   for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_exact_json(v) for v in value)
    if isinstance(value, str):
        return "\x00" not in value
    return value is None or isinstance(value, int)


def _check_text(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise InvalidEntry(f"La {what} doit être un texte de 1 à {limit} caractères.")


def _check_posting(posting: tuple[str, int] | Posting) -> Posting:
    try:
        code, amount = posting
    except (TypeError, ValueError) as exc:
        raise InvalidEntry("Une ligne d'écriture est un couple (compte, montant).") from exc
    if not isinstance(code, str) or not ACCOUNT_CODE.fullmatch(code):
        raise InvalidEntry(f"Le code d'un compte a de 1 à {MAX_TEXT} caractères ASCII "
                           "imprimables, sans espace.", account=str(code)[:MAX_TEXT])
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidEntry("Un montant est un nombre entier de centimes.", account=code)
    if amount == 0 or abs(amount) > MAX_CENTS:
        raise InvalidEntry("Un montant d'écriture est non nul et tient sur 63 bits.",
                           account=code, amount_cents=amount)
    return Posting(code, amount)


async def post(session: AsyncSession, *, key: str, kind: str, postings: PostingsIn,
               memo: dict[str, Any] | None = None, at: datetime | None = None) -> Entry:
    """Write a balanced entry, or return the one already written under `key`.

    Same key and same content (kind, memo, postings in any order) returns the existing entry
    with `created=False`; same key and other content raises IdempotencyConflict.
    Accounts are created on first use; until the transaction that created an account commits,
    other posts to that account wait for it, so create hot accounts ahead (`ensure_accounts`,
    e.g. with the programme). The caller owns the transaction. One statement: the database
    function `ledger_post`.
    """
    entry = _Checked(key, kind, postings, memo, at)
    row = (await _run(session, _POST, {
        "key": entry.key,
        "kind": entry.kind,
        "memo": entry.memo_text,
        "at": entry.at,
        "codes": [p.account for p in entry.postings],
        "amounts": [p.amount_cents for p in entry.postings],
    })).one()
    return entry.entry(row)


async def ensure_accounts(session: AsyncSession, codes: Sequence[str]) -> dict[str, int]:
    """Create the accounts that do not exist yet; return every account's id by code."""
    for code in codes:
        if not isinstance(code, str) or not ACCOUNT_CODE.fullmatch(code):
            raise InvalidEntry("Code de compte invalide.", account=str(code)[:MAX_TEXT])
    return await _resolve_accounts(session, codes)


async def _resolve_accounts(session: AsyncSession, codes: Sequence[str]) -> dict[str, int]:
    """Account ids by code, creating the missing accounts."""
    wanted = set(codes)
    ids: dict[str, int] = {}
    # A code committed by another transaction after our snapshot needs a second statement.
    for _attempt in range(3):
        rest = sorted(wanted - ids.keys())
        if not rest:
            break
        rows = (await _run(session, _RESOLVE_ACCOUNTS, {"codes": rest})).all()
        ids.update({code: account_id for account_id, code in rows})
    if wanted - ids.keys():
        raise RuntimeError(f"accounts could not be resolved: {sorted(wanted - ids.keys())}")
    return ids


async def post_many(session: AsyncSession, entries: Sequence[NewEntry]) -> list[Entry]:
    """Post many entries in one statement (clearing batches): `ledger_post_many`;
    same rules as `post`.

    Returns the entries in the given order. A key repeated in `entries` with the same content
    is written once; with other content, or conflicting with an existing entry, the whole call
    raises IdempotencyConflict (the caller rolls back).
    """
    checked: dict[str, _Checked] = {}
    for new in entries:
        one = _Checked(new.key, new.kind, new.postings, new.memo, new.at)
        seen = checked.get(one.key)
        if seen is None:
            checked[one.key] = one
        elif (seen.kind, sorted(seen.postings), seen.memo_text) != (
            one.kind, sorted(one.postings), one.memo_text
        ):
            raise IdempotencyConflict(key=one.key)
    if not checked:
        return []
    batch = list(checked.values())
    entry_of: list[int] = []
    codes: list[str] = []
    amounts: list[int] = []
    for i, one in enumerate(batch, start=1):
        for p in one.postings:
            entry_of.append(i)
            codes.append(p.account)
            amounts.append(p.amount_cents)
    rows = (await _run(session, _POST_MANY, {
        "keys": [one.key for one in batch],
        "kinds": [one.kind for one in batch],
        "memos": [one.memo_text for one in batch],
        "ats": [one.at for one in batch],
        "entry_of": entry_of,
        "codes": codes,
        "amounts": amounts,
    })).all()
    result = {batch[row[0] - 1].key: batch[row[0] - 1].entry(tuple(row[1:])) for row in rows}
    return [result[new.key] for new in entries]


async def get_entry(session: AsyncSession, key: str) -> Entry | None:
    """The entry posted under `key`, with its postings, or None."""
    row = (await _run(session, _ENTRY_BY_KEY, {"key": key})).first()
    if row is None:
        return None
    entry_id, kind, memo_text, created_at, fingerprint, codes, amounts = row
    return Entry(id=entry_id, key=key, kind=kind,
                 postings=tuple(Posting(c, a) for c, a in zip(codes, amounts, strict=True)),
                 memo=None if memo_text is None else json.loads(memo_text),
                 created_at=created_at, content_hash=fingerprint, created=False)


async def reverse(session: AsyncSession, *, key: str, original_key: str, kind: str,
                  memo: dict[str, Any] | None = None, at: datetime | None = None) -> Entry:
    """Post, under `key`, the exact opposite of the entry posted under `original_key`."""
    original = await get_entry(session, original_key)
    if original is None:
        raise EntryNotFound(key=original_key)
    return await post(session, key=key, kind=kind, memo=memo, at=at,
                      postings=[Posting(p.account, -p.amount_cents) for p in original.postings])


_BALANCES_BY_CODES = text("""
SELECT a.code, CAST(coalesce(sum(p.amount_cents), 0) AS bigint)
FROM ledger_account a LEFT JOIN ledger_posting p ON p.account_id = a.id
WHERE a.code = ANY(CAST(:codes AS text[]))
GROUP BY a.code
""")

# Codes are printable ASCII ("C" collation) and '~' is the greatest such character, so this
# range is exactly the codes starting with the prefix, and the unique index on code serves it.
_BALANCES_BY_PREFIX = text("""
SELECT a.code, CAST(coalesce(sum(p.amount_cents), 0) AS bigint)
FROM ledger_account a LEFT JOIN ledger_posting p ON p.account_id = a.id
WHERE a.code >= :prefix AND a.code < :prefix || chr(127)
GROUP BY a.code
""")


async def balances(session: AsyncSession, prefix_or_codes: str | Sequence[str]) -> dict[str, int]:
    """Balances (sum of postings, cents) of the accounts whose code starts with a prefix, or
    of the given codes (an unknown code has balance 0)."""
    if isinstance(prefix_or_codes, str):
        rows = (await _run(session, _BALANCES_BY_PREFIX, {"prefix": prefix_or_codes})).all()
        return {code: amount for code, amount in rows}
    codes = list(prefix_or_codes)
    result = dict.fromkeys(codes, 0)
    rows = (await _run(session, _BALANCES_BY_CODES, {"codes": codes})).all()
    result.update({code: amount for code, amount in rows})
    return result


async def balance(session: AsyncSession, code: str) -> int:
    """Balance of one account in cents (0 for an account never posted to)."""
    return (await balances(session, [code]))[code]
