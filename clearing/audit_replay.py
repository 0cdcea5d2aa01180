"""The replay of clearing for the audit (clearing/audit.py): every batch's redemptions allocated
again by the rule (DESIGN.md §6), in batch order and clearing order, and every site and
financer statement rebuilt from them (`Recomputed`), with the allocation and batch-total
differences found on the way. Streamed: what is kept is per site, financer and line."""

from __future__ import annotations

import array
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import journal
from clearing.batches import (
    OrderedLinesDigest,
    allocation_parts,
    allocator_for,
    financer_lines_digest,
    half_up_mixed,
    load_terms,
    site_lines_digest,
    statement_hash,
)
from kit.db import raw_connection
from ledger.audit import Difference

MAX_IDS = 20  # redemption ids quoted in one difference


@dataclass(slots=True)
class Recomputed:
    """A statement as the audit rebuilds it."""

    kind: str
    organisation_id: int
    batch_id: int | None
    programme_id: int | None
    gross: int
    fee: int
    net: int
    cheques: int
    lines_digest: str

    def fingerprint(self) -> str:
        return statement_hash(
            kind=self.kind, organisation_id=self.organisation_id, batch_id=self.batch_id,
            programme_id=self.programme_id, gross_cents=self.gross, fee_cents=self.fee,
            net_cents=self.net, cheque_count=self.cheques, lines_digest=self.lines_digest)

    def postings(self) -> list[tuple[str, int]]:
        if self.kind == "site":
            return journal.batch_site(self.organisation_id, gross_cents=self.gross,
                                      commission_cents=self.fee)
        if self.kind == "financer":
            return journal.batch_financer(self.organisation_id, allocated_cents=self.gross,
                                          fee_cents=self.fee)
        return journal.credit(self.programme_id or 0, self.organisation_id, self.gross)

    def key(self) -> str:
        if self.kind == "site":
            return journal.batch_site_key(self.batch_id or 0, self.organisation_id)
        if self.kind == "financer":
            return journal.batch_financer_key(self.batch_id or 0, self.organisation_id)
        return journal.credit_key(self.programme_id or 0, self.organisation_id)


def batch_digest(statements: list[Recomputed]) -> str:
    """A batch's replay in one hash: its recomputed statements' fingerprints, in order."""
    return hashlib.sha256("\n".join(sorted(
        f"{st.kind};{st.organisation_id};{st.fingerprint()}" for st in statements
    )).encode()).hexdigest()


_BATCHES = text("SELECT id, cutoff, redemption_count, gross_cents FROM batch ORDER BY id")

_BATCH_REDEMPTIONS = """
SELECT r.id, r.programme_id, r.site_id, r.value_cents, r.demarche_family, a.pattern
FROM redemption r LEFT JOIN allocation a ON a.redemption_id = r.id AND a.batch_id = r.batch_id
WHERE r.batch_id = $1
ORDER BY r.redeemed_at, r.id
"""

_PATTERNS = """
SELECT pattern, financer_id, amount_cents FROM allocation_pattern WHERE batch_id = $1
"""

_ORPHAN_ALLOCATIONS = """
SELECT a.batch_id, count(*), (array_agg(a.redemption_id ORDER BY a.redemption_id))[1:20]
FROM allocation a LEFT JOIN redemption r ON r.id = a.redemption_id AND r.batch_id = a.batch_id
WHERE r.id IS NULL AND a.batch_id > $1 GROUP BY a.batch_id ORDER BY a.batch_id
"""

_STATEMENT_SUMS = """
SELECT batch_id, kind, CAST(sum(gross_cents) AS bigint) FROM statement
WHERE batch_id IS NOT NULL GROUP BY batch_id, kind
"""


_BATCH_PROGRAMMES = "SELECT DISTINCT programme_id FROM redemption WHERE batch_id = $1"

_BITS = 32  # a line's key: programme, family and commune numbers, 32 bits each
_MASK = (1 << _BITS) - 1
_LINE_CHEQUE = 1 << 48  # a line's cheque count, above its cents (a line never nears 2⁴⁸ ¢)
STREAM_PREFETCH = 20_000  # redemptions read at a time while replaying a batch


async def replay_batches(
        session: AsyncSession, found: list[Difference], *, after_batch: int = 0,
        allocated_before: dict[int, dict[int, int]] | None = None,
        digests: dict[int, str] | None = None,
) -> tuple[list[Recomputed], dict[int, dict[int, int]]]:
    """Replay the allocation of every batch after `after_batch` in order, starting from what
    earlier batches allocated (`allocated_before`); check allocations and batch totals; return
    every site and financer statement as recomputed, and what the replay allocated per
    programme and financer. A batch's redemptions are streamed (bounded memory: what is kept
    is per site, financer and line, plus each site's redemption ids for its digest). Each
    batch's digest of its recomputed statements goes into `digests`."""
    raw = await raw_connection(session)
    batches = [b for b in (await session.execute(_BATCHES)).all() if b[0] > after_batch]
    sums: dict[tuple[int, str], int] = {
        (b, k): s for b, k, s in await raw.fetch(_STATEMENT_SUMS)}
    allocated: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for pid, earlier in (allocated_before or {}).items():
        allocated[int(pid)].update({int(f): int(c) for f, c in earlier.items()})
    terms_cache: dict[int, Any] = {}
    communes = {r[0]: r[1] for r in await raw.fetch(
        "SELECT id, commune_insee FROM organisation WHERE kind = 'site'")}
    out: list[Recomputed] = []
    for batch_id, _cutoff, stored_count, stored_gross in batches:
        tally = await _tally_batch(raw, batch_id, allocated, terms_cache, communes)
        found += _batch_findings(batch_id, tally, stored_count, stored_gross, sums)
        statements = (_site_statements(batch_id, tally, terms_cache)
                      + _financer_statements(batch_id, tally, terms_cache))
        out += statements
        if digests is not None:
            digests[batch_id] = batch_digest(statements)
    for batch_id, count, ids in await raw.fetch(_ORPHAN_ALLOCATIONS, after_batch):
        found.append(Difference(
            "allocation_orphan",
            f"Lot {batch_id} : {count} répartition(s) visent un encaissement absent du lot.",
            details={"batch_id": batch_id, "count": count, "redemption_ids": list(ids)}))
    return out, {p: dict(f) for p, f in allocated.items()}


@dataclass
class _Tally:
    """What the replay of one batch adds up, redemption by redemption."""

    site_programme: dict[int, dict[int, int]]  # site → programme → cents
    site_ids: dict[int, array.array[int]]  # site → its redemption ids, in clearing order
    # Financer lines (financer, programme, family, commune) → cheques and cents, packed in
    # one int each way: a big batch has millions of lines, this halves their memory.
    lines: dict[int, dict[int, int]]
    names: dict[str | None, int]  # families and communes, numbered
    mismatched: list[int]
    redeemed: int = 0
    stored_allocated: int = 0
    count: int = 0


async def _tally_batch(raw: Any, batch_id: int, allocated: dict[int, dict[int, int]],
                       terms_cache: dict[int, Any], communes: dict[int, str | None]) -> _Tally:
    """Allocate each of the batch's redemptions by the rule, in clearing order, from what
    `allocated` holds (updated), and add up what its statements need."""
    parts_of: dict[int, dict[int, int]] = defaultdict(dict)
    for pattern, fid, cents in await raw.fetch(_PATTERNS, batch_id):
        parts_of[pattern][fid] = cents
    pattern_sums = {pattern: sum(parts.values()) for pattern, parts in parts_of.items()}
    programme_ids = [r[0] for r in await raw.fetch(_BATCH_PROGRAMMES, batch_id)]
    missing = [pid for pid in programme_ids if pid not in terms_cache]
    terms_cache.update(await load_terms(raw, sorted(missing)) if missing else {})
    allocators = {pid: allocator_for(terms_cache[pid], allocated[pid])
                  for pid in programme_ids}
    tally = _Tally(defaultdict(lambda: defaultdict(int)),
                   defaultdict(lambda: array.array("q")), defaultdict(lambda: defaultdict(int)),
                   {}, [])
    site_programme, site_ids, lines, names = (tally.site_programme, tally.site_ids,
                                              tally.lines, tally.names)
    mismatched, redeemed, stored_allocated = tally.mismatched, 0, 0
    cursor = await raw.cursor(_BATCH_REDEMPTIONS, batch_id)
    while rows := await cursor.fetch(STREAM_PREFETCH):
        tally.count += len(rows)
        for rid, pid, sid, value, family, pattern in rows:
            parts = allocation_parts(allocators[pid].allocate(value, family))
            if pattern is None or parts_of.get(pattern) != dict(parts):
                mismatched.append(rid)
            if pattern is not None:
                stored_allocated += pattern_sums.get(pattern, 0)
            redeemed += value
            site_programme[sid][pid] += value
            site_ids[sid].append(rid)
            commune = communes.get(sid)
            f_no = names.setdefault(family, len(names))
            c_no = names.setdefault(commune, len(names))
            where = ((pid << _BITS) | f_no) << _BITS | c_no
            for fid, cents in parts.items():
                lines[fid][where] += _LINE_CHEQUE + cents
                allocated[pid][fid] += cents
    tally.redeemed, tally.stored_allocated = redeemed, stored_allocated
    return tally


def _batch_findings(batch_id: int, tally: _Tally, stored_count: int, stored_gross: int,
                    sums: dict[tuple[int, str], int]) -> list[Difference]:
    found = []
    if tally.mismatched:
        found.append(Difference(
            "allocation_mismatch",
            f"Lot {batch_id} : la répartition enregistrée de {len(tally.mismatched)} "
            "encaissement(s) diffère de la règle pollueur-payeur rejouée.",
            details={"batch_id": batch_id, "count": len(tally.mismatched),
                     "redemption_ids": tally.mismatched[:MAX_IDS]}))
    redeemed, count = tally.redeemed, tally.count
    figures = {"redemptions": redeemed, "allocations": tally.stored_allocated,
               "sites": sums.get((batch_id, "site"), 0),
               "financers": sums.get((batch_id, "financer"), 0),
               "batch": stored_gross}
    if len(set(figures.values())) != 1 or stored_count != count:
        found.append(Difference(
            "batch_totals",
            f"Lot {batch_id} : les totaux ne concordent pas (encaissements {redeemed}, "
            f"répartitions {tally.stored_allocated}, lieux {figures['sites']}, financeurs "
            f"{figures['financers']}, lot {stored_gross} centimes ; {count} "
            f"encaissements pour {stored_count} annoncés).",
            details={"batch_id": batch_id, **figures, "count": count,
                     "stored_count": stored_count}))
    return found


def _site_statements(batch_id: int, tally: _Tally,
                     terms: dict[int, Any]) -> list[Recomputed]:
    out = []
    for sid, by_programme in tally.site_programme.items():
        gross = sum(by_programme.values())
        fee = half_up_mixed((c, terms[p].site_commission_bp) for p, c in by_programme.items())
        ids = tally.site_ids[sid]
        out.append(Recomputed("site", sid, batch_id, None, gross, fee, gross - fee,
                               len(ids), site_lines_digest(ids)))
    return out


def _financer_statements(batch_id: int, tally: _Tally,
                         terms: dict[int, Any]) -> list[Recomputed]:
    """Each financer's statement from its lines, one financer at a time, its lines freed
    before the next one's. A line's key packs programme, family and commune numbers; sorted
    by programme and the names' ranks in `financer_lines_digest`'s order, the lines are
    hashed as they come (OrderedLinesDigest), never all unpacked at once: a financer of a
    big batch has a million lines."""
    names, lines = tally.names, tally.lines
    named = {no: name for name, no in names.items()}
    rank = {names[name]: i for i, name in enumerate(sorted(names, key=lambda n: n or ""))}
    ranked = (None not in names) or ("" not in names)  # else two names would rank as one
    out = []
    for fid in sorted(lines, key=lambda f: len(lines[f])):
        packed_lines = lines.pop(fid)
        digest = OrderedLinesDigest()
        by_programme: dict[int, int] = defaultdict(int)
        cheques = 0
        for key in sorted(packed_lines, key=lambda k: (
                (k >> 2 * _BITS) << 2 * _BITS | rank[(k >> _BITS) & _MASK] << _BITS
                | rank[k & _MASK])):
            n, cents = divmod(packed_lines[key], _LINE_CHEQUE)
            pid = key >> 2 * _BITS
            digest.add((pid, named[(key >> _BITS) & _MASK], named[key & _MASK], n, cents))
            by_programme[pid] += cents
            cheques += n
        lines_digest = digest.hexdigest()
        if not (ranked and digest.ordered):
            lines_digest = financer_lines_digest(_unpacked(packed_lines, named))
        del packed_lines
        gross = sum(by_programme.values())
        fee = half_up_mixed((c, terms[p].financer_fee_bp) for p, c in by_programme.items())
        out.append(Recomputed("financer", fid, batch_id, None, gross, fee, gross + fee,
                               cheques, lines_digest))
    return out


def _unpacked(packed_lines: dict[int, int],
              named: dict[int, str | None]) -> list[tuple[Any, ...]]:
    """A financer's lines as `financer_lines_digest` takes them."""
    return [(key >> (2 * _BITS), named[(key >> _BITS) & _MASK], named[key & _MASK],
             *divmod(packed, _LINE_CHEQUE)) for key, packed in packed_lines.items()]
