"""Independent checks of the journal from its rows alone: balance of every entry, fingerprints,
seal hashes and chain links. Domains add their own checks and report with the same Difference.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import raw_connection
from kit.snapshot import Snapshot, in_processes, read_at
from ledger.canonical import GENESIS_HASH, entry_hashes


@dataclass(frozen=True)
class Difference:
    """One thing the audit found wrong: a stable `kind`, a French `message`, and where."""

    kind: str
    message: str
    entry_id: int | None = None
    account: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# A link is broken when prev_hash is not the hash of the seal just before; a missing
# predecessor (deleted row, gap in sealed_seq) breaks it too.
_BROKEN_LINKS = text("""
SELECT s.entry_id, s.sealed_seq, s.prev_hash, prev.entry_id, prev.hash
FROM ledger_seal s
LEFT JOIN ledger_seal prev ON prev.sealed_seq = s.sealed_seq - 1
WHERE CASE WHEN s.sealed_seq = 1 THEN s.prev_hash IS DISTINCT FROM :genesis
           ELSE prev.entry_id IS NULL OR prev.hash IS DISTINCT FROM s.prev_hash END
ORDER BY s.sealed_seq
""")

_ORPHAN_SEALS = text("""
SELECT s.entry_id, s.sealed_seq FROM ledger_seal s
LEFT JOIN ledger_entry e ON e.id = s.entry_id
WHERE e.id IS NULL
ORDER BY s.sealed_seq
""")

_ORPHAN_POSTINGS = text("""
SELECT p.id, p.entry_id, p.amount_cents FROM ledger_posting p
LEFT JOIN ledger_entry e ON e.id = p.entry_id
WHERE e.id IS NULL
ORDER BY p.id
""")


# The entries sealed after a checkpoint (`sealed_seq` > :after_seq), in sealing order, a chunk
# at a time; and the entries not sealed yet written after the checkpoint's last entry.
_UNSEALED_SINCE = text("""
SELECT e.id, e.idempotency_key, e.kind, CAST(e.memo AS text), e.created_at, e.content_hash,
       NULL, NULL, NULL,
       array_agg(p.id ORDER BY p.id) FILTER (WHERE p.id IS NOT NULL),
       array_agg(a.code ORDER BY p.id) FILTER (WHERE p.id IS NOT NULL),
       array_agg(p.amount_cents ORDER BY p.id) FILTER (WHERE p.id IS NOT NULL)
FROM ledger_entry e
LEFT JOIN ledger_posting p ON p.entry_id = e.id
LEFT JOIN ledger_account a ON a.id = p.account_id
WHERE e.id > :after_id AND NOT EXISTS (SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id)
GROUP BY e.id
ORDER BY e.id
""")


# The entries with ids in [$1, $2], each with its seal and postings, in one pass over the
# three tables in id order (postings by entry, merged), read through a server-side cursor:
# memory stays bounded and PostgreSQL does not re-plan a chunk query per few thousand entries.
# The whole journal is one such range; the full audit may check several ranges at once. The
# postings' arrays come in the index's order, without a sort per entry (a third of the query's
# time): `_check_entry` orders them by posting id where the order shows.
_ENTRIES_BETWEEN = """
SELECT e.id, e.idempotency_key, e.kind, CAST(e.memo AS text), e.created_at, e.content_hash,
       s.sealed_seq, s.hash, s.prev_hash, p.ids, p.codes, p.amounts
FROM ledger_entry e
LEFT JOIN ledger_seal s ON s.entry_id = e.id AND s.entry_id BETWEEN $1 AND $2
LEFT JOIN (
    SELECT p.entry_id, array_agg(p.id) AS ids, array_agg(a.code) AS codes,
           array_agg(p.amount_cents) AS amounts
    FROM ledger_posting p LEFT JOIN ledger_account a ON a.id = p.account_id
    WHERE p.entry_id BETWEEN $1 AND $2
    GROUP BY p.entry_id
) p ON p.entry_id = e.id
WHERE e.id BETWEEN $1 AND $2
ORDER BY e.id
"""

_ID_RANGE = text("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM ledger_entry")


async def _check_between(raw: Any, first: int, last: int, chunk: int) -> list[Difference]:
    """`_check_entry` of every entry with an id in [first, last], streamed on `raw` (an
    asyncpg connection in a transaction) a chunk at a time."""
    found: list[Difference] = []
    cursor = await raw.cursor(_ENTRIES_BETWEEN, first, last)
    while rows := await cursor.fetch(chunk):
        for row in rows:
            found.extend(_check_entry(tuple(row)))
    return found


_ALL_ENTRIES_SINCE = """
SELECT e.id, e.idempotency_key, e.kind, CAST(e.memo AS text), e.created_at, e.content_hash,
       s.sealed_seq, s.hash, s.prev_hash, p.ids, p.codes, p.amounts
FROM ledger_seal s
JOIN ledger_entry e ON e.id = s.entry_id
LEFT JOIN LATERAL (
    SELECT array_agg(p.id ORDER BY p.id) AS ids, array_agg(a.code ORDER BY p.id) AS codes,
           array_agg(p.amount_cents ORDER BY p.id) AS amounts
    FROM ledger_posting p LEFT JOIN ledger_account a ON a.id = p.account_id
    WHERE p.entry_id = e.id
) p ON true
WHERE s.sealed_seq > $1
ORDER BY s.sealed_seq
"""


async def _entries_since(session: AsyncSession, after_seq: int,
                         chunk: int) -> AsyncIterator[tuple[Any, ...]]:
    """The entries sealed after `after_seq`, in sealing order, streamed."""
    raw = await raw_connection(session)
    async for row in raw.cursor(_ALL_ENTRIES_SINCE, after_seq,  # type: ignore[union-attr]
                                prefetch=chunk):
        yield tuple(row)


def _check_entry(row: tuple[Any, ...]) -> list[Difference]:
    (entry_id, key, kind, memo_text, created_at, fingerprint, seq, digest, prev_hash,
     posting_ids, codes, amounts) = row
    posting_ids, codes, amounts = posting_ids or [], codes or [], amounts or []
    found: list[Difference] = []
    where = {"entry_id": entry_id}
    if None in codes or 0 in amounts:  # rare: only then does the postings' order show
        lines = sorted(zip(posting_ids, codes, amounts, strict=True))
    else:
        lines = []
    for posting_id, code, amount in lines:
        if code is None:
            found.append(Difference(
                "posting_account_missing",
                f"La ligne {posting_id} de l'écriture {key} vise un compte qui n'existe pas.",
                **where, details={"posting_id": posting_id}))
        if amount == 0:
            found.append(Difference(
                "zero_posting", f"La ligne {posting_id} de l'écriture {key} a un montant nul.",
                **where, account=code, details={"posting_id": posting_id}))
    if len(amounts) < 2:
        found.append(Difference(
            "too_few_postings",
            f"L'écriture {key} a {len(amounts)} ligne(s) ; il en faut au moins deux.",
            **where, details={"postings": len(amounts)}))
    total = sum(amounts)
    if total != 0:
        found.append(Difference(
            "unbalanced_entry",
            f"Les lignes de l'écriture {key} ne s'annulent pas : leur somme est {total} centimes.",
            **where, details={"total_cents": total}))
    memo = None if memo_text is None else json.loads(memo_text)
    postings = [(c or "", a) for c, a in zip(codes, amounts, strict=True)]
    recomputed, resealed = entry_hashes(prev_hash or "", seq=seq, entry_id=entry_id, key=key,
                                        kind=kind, memo=memo, created_at=created_at,
                                        postings=postings)
    if recomputed != fingerprint:
        found.append(Difference(
            "content_hash_mismatch",
            f"Le contenu de l'écriture {key} ne correspond plus à son empreinte d'origine.",
            **where, details={"stored": fingerprint, "recomputed": recomputed}))
    if seq is not None:  # the seal's columns are NOT NULL: a seal is whole or absent
        if resealed != digest:
            found.append(Difference(
                "seal_hash_mismatch",
                f"L'écriture scellée n° {seq} ({key}) ne correspond plus à son sceau : "
                "elle ou son sceau a été modifié.",
                **where, details={"sealed_seq": seq, "stored": digest,
                                  "recomputed": resealed}))
    return found


@dataclass(frozen=True)
class ChainHead:
    """Where a verified chain ends: its last seal's number and hash, and the largest entry id
    then (for the next incremental audit)."""

    sealed_seq: int
    hash: str
    entry_id: int


_HEAD = text("""
SELECT s.sealed_seq, s.hash, (SELECT coalesce(max(id), 0) FROM ledger_entry)
FROM ledger_seal s ORDER BY s.sealed_seq DESC LIMIT 1
""")


async def chain_head(session: AsyncSession) -> ChainHead:
    row = (await session.execute(_HEAD)).first()
    if row is None:
        last = (await session.execute(text("SELECT coalesce(max(id), 0) FROM ledger_entry")))
        return ChainHead(0, GENESIS_HASH, int(last.scalar() or 0))
    return ChainHead(int(row[0]), row[1], int(row[2]))


async def audit_ledger_since(session: AsyncSession, head: ChainHead, *,
                             chunk: int = 5_000) -> list[Difference]:
    """The checks of `audit_ledger` for what came after a verified `head` only: the entries
    sealed after it (each one's balance, fingerprint and seal, each link of the chain from
    `head.hash` on, no gap), and the entries written after it and not sealed yet. What the
    chain held up to `head` was verified by the audit that recorded it (a full audit reads it
    all again)."""
    found: list[Difference] = []
    seq, prev = head.sealed_seq, head.hash
    still = (await session.execute(text(
        "SELECT hash FROM ledger_seal WHERE sealed_seq = :s"), {"s": seq})).scalar()
    if seq and still != head.hash:
        found.append(Difference(
            "checkpoint_seal_changed",
            f"Le sceau n° {seq}, vérifié au dernier point de contrôle, a changé ou disparu.",
            details={"sealed_seq": seq, "checkpoint": head.hash, "now": still}))
    async for row in _entries_since(session, head.sealed_seq, chunk):
        found.extend(_check_entry(row))
        entry_id, row_seq, digest, prev_hash = row[0], row[6], row[7], row[8]
        if row_seq != seq + 1 or prev_hash != prev:
            found.append(Difference(
                "chain_broken",
                f"La chaîne de scellement est rompue à l'écriture scellée n° {row_seq} : elle "
                "ne suit pas le sceau précédent.",
                entry_id=entry_id, details={"sealed_seq": row_seq, "expected_seq": seq + 1}))
        seq, prev = row_seq, digest
    for unsealed in (await session.execute(_UNSEALED_SINCE,
                                           {"after_id": head.entry_id})).all():
        found.extend(_check_entry(tuple(unsealed)))
    return found


SLICE_ENTRIES = 250_000  # ids per range checked by a worker process, at least


def id_ranges(first: int, last: int, *, ranges: int, at_least: int) -> list[tuple[int, int]]:
    """[first, last] cut into at most `ranges` contiguous ranges of `at_least` ids or more
    (the last may be shorter), in order, together covering it exactly."""
    count = max(1, min(ranges, (last - first + 1) // max(1, at_least)))
    size, extra = divmod(last - first + 1, count)
    out, start = [], first
    for i in range(count):
        end = start + size + (1 if i < extra else 0) - 1
        out.append((start, end))
        start = end + 1
    return out


async def _check_entries(session: AsyncSession, chunk: int, snapshot: Snapshot | None,
                         processes: int, slice_entries: int) -> list[Difference]:
    """`_check_entry` of every entry, in id order: on the session's connection, or (with the
    session's exported `snapshot`) by id ranges in worker processes."""
    first, last = (await session.execute(_ID_RANGE)).one()
    ranges = id_ranges(first, last, ranges=4 * processes, at_least=slice_entries)
    if snapshot is None or len(ranges) == 1:
        return await _check_between(await raw_connection(session), first, last, chunk)
    checked = await in_processes(
        read_at, [(snapshot, _check_between, a, b, chunk) for a, b in ranges],
        processes=processes)
    return [difference for found in checked for difference in found]


async def audit_ledger(session: AsyncSession, *, chunk: int = 5_000,
                       snapshot: Snapshot | None = None, processes: int = 2,
                       slice_entries: int = SLICE_ENTRIES) -> list[Difference]:
    """Every difference between the journal and its rules; an empty list means all is well.

    Checks each entry (≥ 2 non-zero postings on existing accounts, summing to zero, content
    matching its fingerprint), each seal (hash recomputed from the entry and its prev_hash)
    and each link of the chain (prev_hash = hash of the seal just before, no gap, no seal
    without its entry).

    Given `snapshot` (what the session reads, exported: `kit.snapshot`), a large journal's
    entries are checked by id ranges in `processes` worker processes reading that same state:
    the same differences in the same order, on every core.
    """
    found = await _check_entries(session, chunk, snapshot, processes, slice_entries)
    for entry_id, seq, prev_hash, before_id, before_hash in (
            await session.execute(_BROKEN_LINKS, {"genesis": GENESIS_HASH})).all():
        if seq > 1 and before_id is None:
            message = (f"La chaîne de scellement est interrompue : l'écriture scellée n° {seq - 1}"
                       " est absente.")
        else:
            message = (f"La chaîne de scellement est rompue à l'écriture scellée n° {seq} : "
                       "elle ne pointe pas vers le sceau de la précédente.")
        found.append(Difference(
            "chain_broken", message, entry_id=entry_id,
            details={"sealed_seq": seq, "prev_hash": prev_hash, "previous_entry_id": before_id,
                     "previous_hash": before_hash}))
    for entry_id, seq in (await session.execute(_ORPHAN_SEALS)).all():
        found.append(Difference(
            "orphan_seal",
            f"Le sceau n° {seq} scelle une écriture {entry_id} qui n'existe pas.",
            entry_id=entry_id, details={"sealed_seq": seq}))
    for posting_id, entry_id, amount in (await session.execute(_ORPHAN_POSTINGS)).all():
        found.append(Difference(
            "orphan_posting",
            f"La ligne {posting_id} appartient à une écriture {entry_id} qui n'existe pas.",
            entry_id=entry_id, details={"posting_id": posting_id, "amount_cents": amount}))
    return found
