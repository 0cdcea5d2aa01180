"""Use cases of the journal: post entries (idempotently), reverse them, read balances.

The hot path is append-only and short: `post` is one SQL statement that creates missing
accounts, inserts the entry (ON CONFLICT on its idempotency key) and its postings. No row is
updated, so concurrent posts on the same accounts never wait on each other; balances are sums
of postings. The database re-checks what matters at commit (see migration 0002_ledger).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Result, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.canonical import canonical_memo, content_hash, content_text
from ledger.errors import EntryNotFound, IdempotencyConflict, InvalidEntry, UnbalancedEntry
from ledger.values import Entry, NewContent, NewEntry, Posting, PostingsIn

__all__ = [
    "Entry",
    "NewContent",
    "NewEntry",
    "Posting",
    "balance",
    "balances",
    "ensure_accounts",
    "get_entry",
    "post",
    "post_many",
    "prepare",
    "prepare_family",
    "reverse",
]

MAX_TEXT = 200
MAX_KIND = 64
MAX_CENTS = 2**63 - 1
# As the database's CHECK: printable ASCII, no spaces (`programme:12:available`).
ACCOUNT_CODE = re.compile(r"[!-~]{1,200}")

# One round trip: accounts created on first use, the entry, its postings.
# - An account committed by another transaction after this statement's snapshot is skipped by
#   ON CONFLICT yet invisible to `account`: its postings are then missing from the count, and
#   `post` completes them with a second statement (rare: only the first uses of an account).
# - If the key exists, `entry` returns nothing and no posting is written; ON CONFLICT waits for
#   a concurrent writer of the same key to finish, so the existing row is then readable.
_POST = text("""
WITH input AS (
    SELECT x.code, x.amount, x.n
    FROM unnest(CAST(:codes AS text[]), CAST(:amounts AS bigint[])) WITH ORDINALITY
         AS x(code, amount, n)
), new_account AS (
    INSERT INTO ledger_account (code)
    SELECT DISTINCT i.code FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.code = i.code)
    ORDER BY i.code
    ON CONFLICT (code) DO NOTHING
    RETURNING id, code
), account AS (
    SELECT id, code FROM new_account
    UNION ALL
    SELECT a.id, a.code FROM ledger_account a WHERE a.code = ANY(CAST(:codes AS text[]))
), entry AS (
    INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
    VALUES (:key, :kind, CAST(:memo AS jsonb), coalesce(CAST(:at AS timestamptz), now()),
            :content_hash)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, created_at
), posting AS (
    INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
    SELECT entry.id, account.id, input.amount
    FROM entry CROSS JOIN input JOIN account ON account.code = input.code
    ORDER BY input.n
    RETURNING 1
)
SELECT entry.id, entry.created_at, (SELECT count(*) FROM posting) AS postings FROM entry
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

_INSERT_POSTINGS = text("""
INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
SELECT * FROM unnest(CAST(:entry_ids AS bigint[]), CAST(:account_ids AS bigint[]),
                     CAST(:amounts AS bigint[]))
""")

_INSERT_ENTRIES = text("""
INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
SELECT x.key, x.kind, CAST(x.memo AS jsonb), coalesce(x.at, now()), x.content_hash
FROM unnest(CAST(:keys AS text[]), CAST(:kinds AS text[]), CAST(:memos AS text[]),
            CAST(:ats AS timestamptz[]), CAST(:hashes AS text[])) WITH ORDINALITY
     AS x(key, kind, memo, at, content_hash, n)
ORDER BY x.n
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key, created_at
""")

_EXISTING = text("""
SELECT idempotency_key, id, created_at, content_hash
FROM ledger_entry WHERE idempotency_key = ANY(CAST(:keys AS text[]))
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

_POSTINGS_OF = text("""
SELECT a.code, p.amount_cents FROM ledger_posting p JOIN ledger_account a ON a.id = p.account_id
WHERE p.entry_id = :entry_id
""")


async def _run(session: AsyncSession, statement: TextClause,
               params: dict[str, Any]) -> Result[Any]:
    """Execute on the session's connection (its transaction): Session.execute would add only
    ORM bookkeeping, and text() statements do not autoflush anyway."""
    connection = await session.connection()
    return await connection.execute(statement, params)


class _Checked:
    """An entry validated in Python, with its fingerprint."""

    __slots__ = ("key", "kind", "postings", "memo", "memo_text", "at", "content_hash")

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
        # Stored and returned as it will read back from jsonb, so retries compare equal.
        self.memo = None if memo_text is None else json.loads(memo_text)
        self.memo_text = memo_text
        self.at = at
        self.content_hash = content_hash(kind, self.postings, self.memo)

    def entry(self, entry_id: int, created_at: datetime, *, created: bool) -> Entry:
        return Entry(id=entry_id, key=self.key, kind=self.kind, postings=self.postings,
                     memo=self.memo, created_at=created_at, content_hash=self.content_hash,
                     created=created)


def prepare(*, kind: str, postings: PostingsIn, memo: dict[str, Any] | None = None,
            at: datetime | None = None) -> NewContent:
    """Validate an entry and compute what is stored with it, for a caller that writes it
    inside a statement of its own, in the same round trip as the business rows it records
    (the redemption path: `pass_.redemption.redeem_at_once`). Same checks and same
    fingerprint as `post`; the caller inserts `ledger_entry (idempotency_key, kind, memo,
    created_at, content_hash)` with these values and one `ledger_posting` per posting, and
    the database re-checks the balance at commit as for any entry."""
    checked = _Checked("prepared", kind, postings, memo, at)
    return NewContent(kind=checked.kind, postings=checked.postings, memo_text=checked.memo_text,
                      content_hash=checked.content_hash)


# Stands for a family member's memo value while the family's canonical texts are built.
_FAMILY_MARK = "ledger-family-member-7c1e0b"


def prepare_family(*, kind: str, postings: PostingsIn,
                   memo_field: str) -> Callable[[str], NewContent]:
    """`prepare` for entries that differ only by the text of one memo field (say, each
    redemption's serial): kind and postings are checked once, and each member's content,
    `member(value)`, is byte for byte what `prepare(kind=…, postings=…, memo={memo_field:
    value})` returns, for a fraction of the cost (the canonical texts are the family's, cut
    around the value). Raises what `prepare` raises for the kind and postings; `member`
    raises InvalidEntry for a value `prepare` would refuse."""
    checked = _Checked("family", kind, postings, {memo_field: _FAMILY_MARK}, None)
    mark = _dumps_text(_FAMILY_MARK)
    memo_text = checked.memo_text or ""
    body = content_text(checked.kind, checked.postings, {memo_field: _FAMILY_MARK})
    if memo_text.count(mark) != 1 or body.count(mark) != 1:  # the mark in a code or the kind
        def slow(value: str) -> NewContent:
            return prepare(kind=kind, postings=postings, memo={memo_field: value})
        return slow
    memo_before, memo_after = memo_text.split(mark)
    body_before, body_after = body.split(mark)

    def member(value: str) -> NewContent:
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidEntry("Le mémo d'une écriture est un objet JSON sans nombre à virgule "
                               "ni caractère nul.")
        quoted = _dumps_text(value)
        return NewContent(
            kind=checked.kind, postings=checked.postings,
            memo_text=memo_before + quoted + memo_after,
            content_hash=hashlib.sha256(
                (body_before + quoted + body_after).encode()).hexdigest(),
        )

    return member


_TEXT_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _dumps_text(value: str) -> str:
    """A string as the canonical JSON texts write it (ledger.canonical's encoder settings)."""
    return _TEXT_ENCODER.encode(value)


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
    e.g. with the programme). The caller owns the transaction.
    """
    entry = _Checked(key, kind, postings, memo, at)
    row = (await _run(session, _POST, {
        "codes": [p.account for p in entry.postings],
        "amounts": [p.amount_cents for p in entry.postings],
        "key": entry.key,
        "kind": entry.kind,
        "memo": entry.memo_text,
        "at": entry.at,
        "content_hash": entry.content_hash,
    })).first()
    if row is None:
        return await _existing(session, entry)
    entry_id, created_at, written = row
    if written != len(entry.postings):
        await _complete_postings(session, entry_id, entry.postings)
    return entry.entry(entry_id, created_at, created=True)


async def _existing(session: AsyncSession, entry: _Checked) -> Entry:
    row = (await _run(session, _EXISTING, {"keys": [entry.key]})).first()
    if row is None:
        # ON CONFLICT saw a row our snapshot cannot: only under REPEATABLE READ or stricter,
        # where PostgreSQL normally raises a serialization failure first.
        raise IdempotencyConflict("L'écriture existante n'est pas encore visible ; réessayez.",
                                  key=entry.key)
    _key, entry_id, created_at, existing_hash = row
    if existing_hash != entry.content_hash:
        raise IdempotencyConflict(key=entry.key, entry_id=entry_id)
    return entry.entry(entry_id, created_at, created=False)


async def _complete_postings(session: AsyncSession, entry_id: int,
                             postings: Sequence[Posting]) -> None:
    """Write the postings the main statement skipped (account committed concurrently)."""
    present = Counter(tuple(r) for r in
                      (await _run(session, _POSTINGS_OF, {"entry_id": entry_id})).all())
    missing: list[Posting] = []
    for p in postings:
        if present[p] > 0:
            present[p] -= 1
        else:
            missing.append(p)
    ids = await _resolve_accounts(session, [p.account for p in missing])
    await _run(session, _INSERT_POSTINGS, {
        "entry_ids": [entry_id] * len(missing),
        "account_ids": [ids[p.account] for p in missing],
        "amounts": [p.amount_cents for p in missing],
    })


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
    """Post many entries in a few statements (clearing batches); same rules as `post`.

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
        elif seen.content_hash != one.content_hash:
            raise IdempotencyConflict(key=one.key)
    if not checked:
        return []
    batch = list(checked.values())
    account_ids = await _resolve_accounts(
        session, [p.account for one in batch for p in one.postings])
    created = {key: (entry_id, created_at) for entry_id, key, created_at in (
        await _run(session, _INSERT_ENTRIES, {
            "keys": [one.key for one in batch],
            "kinds": [one.kind for one in batch],
            "memos": [one.memo_text for one in batch],
            "ats": [one.at for one in batch],
            "hashes": [one.content_hash for one in batch],
        })).all()}
    result: dict[str, Entry] = {}
    existing_keys = [one.key for one in batch if one.key not in created]
    if existing_keys:
        found = {r[0]: r for r in
                 (await _run(session, _EXISTING, {"keys": existing_keys})).all()}
        for key in existing_keys:
            row = found.get(key)
            if row is None or row[3] != checked[key].content_hash:
                raise IdempotencyConflict(key=key, entry_id=row[1] if row else None)
            result[key] = checked[key].entry(row[1], row[2], created=False)
    entry_ids: list[int] = []
    posting_accounts: list[int] = []
    amounts: list[int] = []
    for one in batch:
        if one.key not in created:
            continue
        entry_id, created_at = created[one.key]
        result[one.key] = one.entry(entry_id, created_at, created=True)
        for p in one.postings:
            entry_ids.append(entry_id)
            posting_accounts.append(account_ids[p.account])
            amounts.append(p.amount_cents)
    if entry_ids:
        await _run(session, _INSERT_POSTINGS, {
            "entry_ids": entry_ids, "account_ids": posting_accounts, "amounts": amounts})
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
