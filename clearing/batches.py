"""Closing a clearing batch: claim the redemptions before a cutoff, allocate them to financers
(DESIGN.md §6), write allocations, statements and ledger entries — once per cutoff.

Speed (a national batch is a million redemptions): one UPDATE … RETURNING claims the batch's
redemptions and hands them back in clearing order (`redeemed_at`, id); the allocation runs in a
tight Python loop (the `Allocator` memoises the common cases); per-redemption allocations go to
PostgreSQL by COPY on the session's own connection; statements, their lines and the ledger
entries are a few multi-row statements. Nothing is read or written row by row.

Concurrency: closes serialise on a transaction-level advisory lock, then look for a batch with
the same cutoff (unique) and return it untouched if there is one. A reversal racing with the
close is decided by the row lock on the redemption: the claim re-checks `reversed_at IS NULL`.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import repeat
from time import perf_counter
from typing import Any, cast

import asyncpg
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from clearing import journal
from clearing.allocation import Allocation as AllocationResult
from clearing.allocation import Allocator, FinancerShare
from clearing.errors import BatchEmpty, ConcurrentChange, CutoffBeforeLast, CutoffInFuture
from clearing.invoices import InvoiceTerms, issue_batch_invoices
from clearing.models import Batch
from clearing.sepa import BankAccountInvalid, Party, check_account
from kit.clock import PARIS, UTC, check_instant, paris_midnight
from kit.db import raw_connection
from kit.errors import InvalidInput
from kit.money import half_up_bp
from ledger import service as ledger

log = structlog.get_logger()

# pg_advisory_xact_lock key of batch closing ("PN-BATCH" as a number).
BATCH_LOCK_KEY = 0x504E_2D42_4154_4348

# The batch's redemptions in clearing order, read through the partial index of unbatched
# redemptions (already in (redeemed_at, id) order: no sort).
_CANDIDATES = """
SELECT id, programme_id, site_id, value_cents, demarche_family
FROM redemption
WHERE batch_id IS NULL AND reversed_at IS NULL AND redeemed_at < $1
ORDER BY redeemed_at, id
"""

# Marks the same redemptions by the same condition (a plan over the table, not a million
# index probes), and returns checksums of what it marked, compared with what was read: a
# reversal or a late redemption committed in between shows as a difference.
_CLAIM = """
WITH claimed AS (
    UPDATE redemption SET batch_id = $1
    WHERE batch_id IS NULL AND reversed_at IS NULL AND redeemed_at < $2
    RETURNING id
)
SELECT count(*), coalesce(sum(id), 0), coalesce(sum(CAST(id AS numeric) * id), 0)
FROM claimed
"""

_PROGRAMMES = """
SELECT p.id, p.state_share_bp, p.financer_fee_bp, p.site_commission_bp,
       f.organisation_id, f.role, f.weight, f.demarche_families, f.commitment_cents
FROM programme p JOIN programme_financer f ON f.programme_id = p.id
WHERE p.id = ANY($1::bigint[])
ORDER BY p.id, f.position
"""

# What earlier batches allocated, per programme and financer: the financer statement lines.
_ALLOCATED_BEFORE = """
SELECT l.programme_id, s.organisation_id, sum(l.amount_cents)::bigint
FROM statement_line l JOIN statement s ON s.id = l.statement_id
WHERE s.kind = 'financer' AND l.programme_id = ANY($1::bigint[])
GROUP BY l.programme_id, s.organisation_id
"""

_ORGANISATIONS = """
SELECT id, name, commune_insee, iban, bic, stripe_customer_id, stripe_payment_method_id
FROM organisation WHERE id = ANY($1::bigint[])
"""

_INSERT_STATEMENTS = """
INSERT INTO statement (kind, organisation_id, batch_id, gross_cents, fee_cents, net_cents,
                       cheque_count, status, payment_method, hold_code, hold_reason,
                       content_hash)
SELECT x.kind, x.organisation_id, $1, x.gross, x.fee, x.net, x.cheques, x.status, x.method,
       x.hold_code, x.hold_reason, x.content_hash
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
     AS x(kind, organisation_id, gross, fee, net, cheques, status, method, hold_code,
          hold_reason, content_hash)
RETURNING id, organisation_id
"""


# ------------------------------------------------------------------------ pure helpers


def cutoff_instant(value: datetime | date) -> datetime:
    """A cutoff as an aware UTC instant: a date means 00:00 in Paris that day, a naive
    datetime is read as Paris time (the scheme's clock). Bounded like every date the service
    accepts (kit.clock.check_instant): DateOutOfRange, never an overflow or -infinity."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=PARIS)
        return check_instant(aware).astimezone(UTC)
    if isinstance(value, date):
        return check_instant(paris_midnight(value))
    raise InvalidInput("La date d'arrêté est invalide.")


def half_up_mixed(amounts_and_rates: Iterable[tuple[int, int]]) -> int:
    """Σ amount × rate / 10000 over a statement's programmes, rounded half up once.

    A statement may cover programmes with different rates; rounding the exact sum once (not
    each programme) keeps "rounded half up per statement". `half_up_bp(n, 1)` is n / 10000
    rounded half up."""
    return half_up_bp(sum(amount * rate for amount, rate in amounts_and_rates), 1)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def site_lines_digest(redemption_ids: Iterable[int]) -> str:
    """sha256 of a site statement's lines: its redemption ids in clearing order, as
    little-endian signed 64-bit integers (the values are in the statement's totals)."""
    data = array.array("q", redemption_ids)
    if sys.byteorder == "big":
        data.byteswap()
    return hashlib.sha256(data.tobytes()).hexdigest()


def financer_lines_digest(lines: Iterable[Sequence[Any]]) -> str:
    """sha256 of lines (programme, family, commune, cheques, cents) sorted by programme,
    family and commune, one `p;family;commune;cheques;cents` text line each."""
    ordered = sorted(lines, key=_line_order)
    return hashlib.sha256("\n".join(map(_line_text, ordered)).encode()).hexdigest()


def _line_text(line: Sequence[Any]) -> str:
    p, f, c, n, cents = line
    return f"{p};{f or ''};{c or ''};{n};{cents}"


class OrderedLinesDigest:
    """`financer_lines_digest` of lines given one at a time, already in its order (programme,
    family, commune): a running hash instead of a list, for statements of a million lines.
    `ordered` turns False if a line comes out of that order (the digest then means nothing:
    sort them and call `financer_lines_digest`)."""

    __slots__ = ("_hash", "_last", "count", "ordered")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._last: tuple[int, str, str] | None = None
        self.count = 0
        self.ordered = True

    def add(self, line: Sequence[Any]) -> None:
        key = _line_order(line)
        if self._last is not None and key < self._last:
            self.ordered = False
        self._last = key
        text = _line_text(line)
        self._hash.update((("\n" + text) if self.count else text).encode())
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def statement_hash(*, kind: str, organisation_id: int, batch_id: int | None,
                   programme_id: int | None, gross_cents: int, fee_cents: int, net_cents: int,
                   cheque_count: int, lines_digest: str) -> str:
    """The statement's fingerprint, printed on it and re-computed by the audit."""
    return hashlib.sha256(_canonical({
        "kind": kind, "organisation_id": organisation_id, "batch_id": batch_id,
        "programme_id": programme_id, "gross_cents": gross_cents, "fee_cents": fee_cents,
        "net_cents": net_cents, "cheque_count": cheque_count, "lines": lines_digest,
    })).hexdigest()


@dataclass(frozen=True, slots=True)
class ProgrammeTerms:
    """What the allocation and the statements need of a programme."""

    id: int
    state_share_bp: int
    financer_fee_bp: int
    site_commission_bp: int
    financers: tuple[FinancerShare, ...]
    commitments: dict[int, int]


async def load_terms(raw: asyncpg.Connection,
                     programme_ids: Sequence[int]) -> dict[int, ProgrammeTerms]:
    """Each programme's rates and financers in declared order (`position`)."""
    grouped: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in await raw.fetch(_PROGRAMMES, list(programme_ids)):
        grouped[row[0]].append(row)
    terms = {}
    for pid, rows in grouped.items():
        first = rows[0]
        terms[pid] = ProgrammeTerms(
            id=pid, state_share_bp=first[1], financer_fee_bp=first[2],
            site_commission_bp=first[3],
            financers=tuple(FinancerShare(r[4], r[5], r[6], frozenset(r[7] or ()))
                            for r in rows),
            commitments={r[4]: r[8] for r in rows},
        )
    return terms


def allocator_for(terms: ProgrammeTerms, allocated_before: dict[int, int]) -> Allocator:
    """An allocator whose remaining commitments are commitment − allocated in earlier batches
    (never below zero: an overrun of an earlier batch leaves nothing)."""
    remaining: dict[Hashable, int] = {fid: max(0, c - allocated_before.get(fid, 0))
                                      for fid, c in terms.commitments.items()}
    return Allocator(state_share_bp=terms.state_share_bp, financers=terms.financers,
                     remaining_cents=remaining)


# ------------------------------------------------------------------------ the use case


_PREVIEW = text("""
SELECT count(*), CAST(coalesce(sum(value_cents), 0) AS bigint) FROM redemption
WHERE batch_id IS NULL AND reversed_at IS NULL AND redeemed_at < :cutoff
""")

_ANY_TO_CLEAR = text("""
SELECT EXISTS (SELECT 1 FROM redemption
               WHERE batch_id IS NULL AND reversed_at IS NULL AND redeemed_at < :cutoff)
""")


@dataclass(frozen=True, slots=True)
class BatchPreview:
    """What closing a batch at `cutoff` would clear, shown before the operator confirms."""

    cutoff: datetime
    last_cutoff: datetime | None
    redemption_count: int
    gross_cents: int
    existing_batch_id: int | None  # that cutoff is already closed: closing changes nothing


async def preview_batch(session: AsyncSession, *, cutoff: datetime | date,
                        now: datetime) -> BatchPreview:
    """The redemptions a close at `cutoff` would take (count and value), with the same
    refusals as the close itself (future, out of range, before the last batch)."""
    instant = cutoff_instant(cutoff)
    if instant > now:
        raise CutoffInFuture(cutoff=instant.isoformat())
    existing = await session.scalar(select(Batch).where(col(Batch.cutoff) == instant))
    last = await session.scalar(select(func.max(Batch.cutoff)))
    if existing is None and last is not None and instant < last:
        raise CutoffBeforeLast(cutoff=instant.isoformat(), last_cutoff=last.isoformat())
    if existing is not None:
        return BatchPreview(instant, last, existing.redemption_count, existing.gross_cents,
                            existing.id)
    count, gross = (await session.execute(_PREVIEW, {"cutoff": instant})).one()
    return BatchPreview(instant, last, count, gross, None)


async def close_batch(session: AsyncSession, *, cutoff: datetime | date, now: datetime,
                      closed_by: int | None = None,
                      invoice_terms: InvoiceTerms | None = None) -> tuple[Batch, bool]:
    """Close the batch of every live redemption before `cutoff` not yet in a batch.

    Returns (batch, created). The same cutoff again returns the existing batch, created=False,
    and changes nothing. Raises CutoffInFuture, DateOutOfRange, CutoffBeforeLast (a cutoff
    before the last batch's: redemptions recorded late go to the next batch) and BatchEmpty
    (nothing to clear: no empty batch, no empty SEPA file)."""
    instant = cutoff_instant(cutoff)
    if instant > now:
        raise CutoffInFuture(cutoff=instant.isoformat())
    await session.execute(select(func.pg_advisory_xact_lock(BATCH_LOCK_KEY)))
    existing = await session.scalar(select(Batch).where(col(Batch.cutoff) == instant))
    if existing is not None:
        return existing, False
    last = await session.scalar(select(func.max(Batch.cutoff)))
    if last is not None and instant < last:
        raise CutoffBeforeLast(cutoff=instant.isoformat(), last_cutoff=last.isoformat())
    if not (await session.execute(_ANY_TO_CLEAR, {"cutoff": instant})).scalar():
        raise BatchEmpty(cutoff=instant.isoformat())
    batch = Batch(cutoff=instant, period_start=last, closed_at=now, closed_by=closed_by)
    session.add(batch)
    await session.flush()
    assert batch.id is not None
    count, gross = await _clear(session, batch.id, instant, now)
    if count == 0:  # all reversed between the check and the claim
        raise BatchEmpty(cutoff=instant.isoformat())
    batch.redemption_count = count
    batch.gross_cents = gross
    await session.flush()
    await issue_batch_invoices(session, batch, now=now, terms=invoice_terms)
    return batch, True


class _Raced(Exception):
    """The redemptions claimed are not those read: one was reversed, or one recorded late was
    committed, in between."""


async def _clear(session: AsyncSession, batch_id: int, cutoff: datetime,
                 now: datetime) -> tuple[int, int]:
    for attempt in range(3):
        try:
            async with session.begin_nested():
                return await _clear_once(session, batch_id, cutoff, now)
        except _Raced:
            log.info("batch_claim_raced", batch_id=batch_id, attempt=attempt + 1)
    raise ConcurrentChange(batch_id=batch_id)


async def _clear_once(session: AsyncSession, batch_id: int, cutoff: datetime,
                      now: datetime) -> tuple[int, int]:
    """Read, then claim while allocating: the UPDATE marking a million redemptions runs in
    PostgreSQL while this process allocates them (two cores at work, not one after the
    other); checksums of the ids show that the claim marked exactly the rows read."""
    steps = _Steps()
    raw = await raw_connection(session)
    rows = await raw.fetch(_CANDIDATES, cutoff)
    steps.done("read")
    if not rows:
        return 0, 0
    programme_ids = sorted({r[1] for r in rows})
    terms = await load_terms(raw, programme_ids)
    before: dict[int, dict[int, int]] = defaultdict(dict)
    for pid, fid, cents in await raw.fetch(_ALLOCATED_BEFORE, programme_ids):
        before[pid][fid] = cents
    allocators = {pid: allocator_for(t, before[pid]) for pid, t in terms.items()}
    financer_ids = sorted({int(f.financer_id) for t in terms.values()  # type: ignore[call-overload]
                           for f in t.financers})
    site_ids = sorted({r[2] for r in rows})
    organisations = {r[0]: r for r in await raw.fetch(_ORGANISATIONS,
                                                      site_ids + financer_ids)}
    redemption_ids = [r[0] for r in rows]
    steps.done("terms")

    # Prepared first (one round trip), so that starting the task sends the UPDATE itself:
    # it then runs in PostgreSQL while the loop below keeps this process busy.
    claim_statement = await raw.prepare(_CLAIM)
    claim = asyncio.ensure_future(claim_statement.fetchrow(batch_id, cutoff))
    await asyncio.sleep(0)
    try:
        run = _allocate(rows, redemption_ids, allocators)
        steps.done("allocate")
        communes = [organisations[sid][2] for sid in run.site_ids]
        sites = _site_figures(run)
        financers = _financer_figures(run, communes)
        statements = [_site_statement(batch_id, sid, *sites[i], organisations[sid], terms)
                      for i, sid in enumerate(run.site_ids)]
        statements += [_financer_statement(batch_id, fid, lines, organisations[fid], terms)
                       for fid, lines in sorted(financers.items())]
        read = (len(redemption_ids), sum(redemption_ids), sum(i * i for i in redemption_ids))
        steps.done("statements")
    finally:
        claimed = await claim  # never leave the connection busy, even on error
    steps.done("claim_wait")
    if tuple(claimed) != read:
        raise _Raced(tuple(claimed), read)

    await raw.copy_records_to_table(
        "allocation_pattern", columns=["batch_id", "pattern", "financer_id", "programme_id",
                                       "amount_cents"],
        records=[(batch_id, p, fid, pid, cents)
                 for p, (pid, _family, _value, result) in enumerate(run.patterns)
                 for fid, cents in result.parts.items()])
    await raw.copy_records_to_table(
        "allocation", columns=["redemption_id", "batch_id", "pattern"],
        records=zip(run.redemption_ids, repeat(batch_id), run.redemption_patterns,
                    strict=False))  # (repeat is endless; the two others are aligned)
    steps.done("copy")

    columns = list(zip(*[s.row() for s in statements], strict=True))
    inserted = await raw.fetch(_INSERT_STATEMENTS, batch_id, *[list(c) for c in columns])
    statement_id = {org: sid for sid, org in inserted}
    await raw.copy_records_to_table(
        "statement_line", columns=["statement_id", "programme_id", "demarche_family",
                                   "commune_insee", "cheque_count", "amount_cents"],
        records=[(statement_id[fid], *line) for fid, lines in sorted(financers.items())
                 for line in lines])
    steps.done("insert_statements")

    await ledger.post_many(session, [s.entry(batch_id, statement_id[s.organisation_id], now)
                                     for s in statements])
    steps.done("ledger")
    log.info("batch_closed", batch_id=batch_id, redemptions=len(rows), gross_cents=run.gross,
             statements=len(statements), patterns=len(run.patterns), **steps.ms)
    return len(rows), run.gross


@dataclass(slots=True)
class _Run:
    """What the allocation loop leaves behind, in compact form.

    `patterns[p]` = (programme, family, value, result); each redemption is one pattern
    (`redemption_patterns`, aligned with `redemption_ids`); `groups[p * _SPAN + site index]`
    counts the redemptions of a pattern at a site; `site_ids[i]` is that site and
    `site_redemptions[i]` its redemption ids in clearing order."""

    patterns: list[tuple[int, str | None, int, AllocationResult]]
    redemption_ids: list[int]
    redemption_patterns: array.array
    groups: dict[int, int]
    site_ids: list[int]
    site_redemptions: list[array.array]
    gross: int


_SPAN = 1 << 32  # groups key: pattern × _SPAN + site index (a batch has far fewer sites)


def _allocate(rows: Sequence[Sequence[Any]], redemption_ids: list[int],
              allocators: dict[int, Allocator]) -> _Run:
    """The hot loop: each redemption, in clearing order, through its programme's allocator.

    Memoised allocator results are shared objects, so a result's identity names its pattern
    (and with it the programme, family and value: each result belongs to one memo entry)."""
    allocate = {pid: a.allocate for pid, a in allocators.items()}
    pattern_of: dict[int, int] = {}
    patterns: list[tuple[int, str | None, int, AllocationResult]] = []
    redemption_patterns = array.array("l")
    groups: dict[int, int] = defaultdict(int)
    site_index: dict[int, int] = {}
    site_redemptions: list[array.array] = []
    add_pattern = redemption_patterns.append
    gross = 0
    for rid, pid, sid, value, family in rows:
        result = allocate[pid](value, family)
        p = pattern_of.get(id(result))
        if p is None:
            p = pattern_of[id(result)] = len(patterns)
            patterns.append((pid, family, value, result))  # keeps it alive: ids stay unique
        s = site_index.get(sid)
        if s is None:
            s = site_index[sid] = len(site_redemptions)
            site_redemptions.append(array.array("q"))
        groups[p * _SPAN + s] += 1
        add_pattern(p)
        site_redemptions[s].append(rid)
        gross += value
    return _Run(patterns=patterns, redemption_ids=redemption_ids,
                redemption_patterns=redemption_patterns, groups=groups,
                site_ids=list(site_index), site_redemptions=site_redemptions, gross=gross)


def _site_figures(run: _Run) -> list[tuple[dict[int, int], int, array.array]]:
    """Per site index: (gross by programme, cheques, redemption ids in clearing order)."""
    by_programme: list[dict[int, int]] = [defaultdict(int) for _ in run.site_ids]
    counts = [0] * len(run.site_ids)
    for key, n in run.groups.items():
        p, s = divmod(key, _SPAN)
        pid, _family, value, _result = run.patterns[p]
        by_programme[s][pid] += n * value
        counts[s] += n
    return [(by_programme[s], counts[s], run.site_redemptions[s])
            for s in range(len(run.site_ids))]


Line = tuple[int, str | None, str | None, int, int]  # programme, family, commune, cheques, cents


def _financer_figures(run: _Run, communes: Sequence[str]) -> dict[int, list[Line]]:
    """Per financer: its lines (programme, family, site commune, cheques, cents), sorted.

    A batch has as many lines as (financer, programme, family, commune) combinations met —
    up to a few hundred thousand — so the sums run on integer keys, tuples come last."""
    commune_names = sorted(set(communes))
    commune_of_site = _indexes(communes, commune_names)
    nc = len(commune_names)
    # (pattern, commune) → cheques
    by_commune: dict[int, int] = defaultdict(int)
    for key, n in run.groups.items():
        p, s = divmod(key, _SPAN)
        by_commune[p * nc + commune_of_site[s]] += n
    # Patterns sharing a programme and a family fall on the same lines.
    classes: dict[tuple[int, str | None], int] = {}
    class_of = [classes.setdefault((pid, family), len(classes))
                for pid, family, _value, _result in run.patterns]
    class_names = list(classes)
    financers: dict[int, int] = {}
    nq = len(class_names)
    counts: dict[int, int] = defaultdict(int)
    amounts: dict[int, int] = defaultdict(int)
    for key, n in by_commune.items():
        p, c = divmod(key, nc)
        head = class_of[p] * nc + c
        for fid, cents in allocation_parts(run.patterns[p][3]).items():
            f = financers.setdefault(fid, len(financers))
            line = f * nq * nc + head
            counts[line] += n
            amounts[line] += n * cents
    fid_of = list(financers)
    out: dict[int, list[Line]] = defaultdict(list)
    for line, n in counts.items():
        f, rest = divmod(line, nq * nc)
        q, c = divmod(rest, nc)
        pid, family = class_names[q]
        out[fid_of[f]].append((pid, family, commune_names[c], n, amounts[line]))
    for fid_lines in out.values():
        fid_lines.sort(key=_line_order)
    return out


def allocation_parts(result: AllocationResult) -> Mapping[int, int]:
    """A result's parts, keyed by organisation id (what clearing gives the allocator)."""
    return cast("Mapping[int, int]", result.parts)


def _indexes(values: Sequence[str], names: list[str]) -> list[int]:
    position = {name: i for i, name in enumerate(names)}
    return [position[v] for v in values]


def _line_order(line: Sequence[Any]) -> tuple[int, str, str]:
    return line[0], line[1] or "", line[2] or ""


class _Steps:
    """Milliseconds spent in each step of a close, for the log line."""

    def __init__(self) -> None:
        self.ms: dict[str, int] = {}
        self._last = perf_counter()

    def done(self, step: str) -> None:
        now = perf_counter()
        self.ms[f"{step}_ms"] = round((now - self._last) * 1000)
        self._last = now


@dataclass(slots=True)
class _NewStatement:
    kind: str
    organisation_id: int
    gross: int
    fee: int
    net: int
    cheques: int
    status: str
    method: str
    hold_code: str | None
    hold_reason: str | None
    content_hash: str

    def row(self) -> tuple[Any, ...]:
        return (self.kind, self.organisation_id, self.gross, self.fee, self.net, self.cheques,
                self.status, self.method, self.hold_code, self.hold_reason, self.content_hash)

    def entry(self, batch_id: int, statement_id: int, now: datetime) -> ledger.NewEntry:
        memo = {"batch_id": batch_id, "statement_id": statement_id}
        if self.kind == "site":
            return ledger.NewEntry(
                key=journal.batch_site_key(batch_id, self.organisation_id),
                kind=journal.BATCH_SITE_KIND, memo=memo, at=now,
                postings=journal.batch_site(self.organisation_id, gross_cents=self.gross,
                                            commission_cents=self.fee))
        return ledger.NewEntry(
            key=journal.batch_financer_key(batch_id, self.organisation_id),
            kind=journal.BATCH_FINANCER_KIND, memo=memo, at=now,
            postings=journal.batch_financer(self.organisation_id, allocated_cents=self.gross,
                                            fee_cents=self.fee))


def site_hold(row: Sequence[Any]) -> tuple[str | None, str | None]:
    """(code, French reason) when a site's transfer must be held, else (None, None)."""
    try:
        check_account(Party(row[1], row[3], row[4]))
    except BankAccountInvalid as held:
        return held.code, held.message
    return None, None


def _site_statement(batch_id: int, site_id: int, by_programme: dict[int, int], cheques: int,
                    redemption_ids: array.array, organisation: Sequence[Any],
                    terms: dict[int, ProgrammeTerms]) -> _NewStatement:
    gross = sum(by_programme.values())
    fee = half_up_mixed((cents, terms[pid].site_commission_bp)
                        for pid, cents in by_programme.items())
    hold_code, hold_reason = site_hold(organisation)
    return _NewStatement(
        kind="site", organisation_id=site_id, gross=gross, fee=fee, net=gross - fee,
        cheques=cheques, status="held" if hold_code else "open", method="sepa_transfer",
        hold_code=hold_code, hold_reason=hold_reason,
        content_hash=statement_hash(
            kind="site", organisation_id=site_id, batch_id=batch_id, programme_id=None,
            gross_cents=gross, fee_cents=fee, net_cents=gross - fee, cheque_count=cheques,
            lines_digest=site_lines_digest(redemption_ids)))


def _financer_statement(batch_id: int, financer_id: int, lines: Sequence[Line],
                        organisation: Sequence[Any],
                        terms: dict[int, ProgrammeTerms]) -> _NewStatement:
    by_programme: dict[int, int] = defaultdict(int)
    for pid, _family, _commune, _n, cents in lines:
        by_programme[pid] += cents
    gross = sum(by_programme.values())
    fee = half_up_mixed((cents, terms[pid].financer_fee_bp)
                        for pid, cents in by_programme.items())
    # Collected by Stripe when the financer has a customer and a SEPA mandate; else by transfer.
    method = "stripe" if organisation[5] and organisation[6] else "transfer"
    cheques = sum(line[3] for line in lines)
    return _NewStatement(
        kind="financer", organisation_id=financer_id, gross=gross, fee=fee, net=gross + fee,
        cheques=cheques, status="open", method=method, hold_code=None, hold_reason=None,
        content_hash=statement_hash(
            kind="financer", organisation_id=financer_id, batch_id=batch_id, programme_id=None,
            gross_cents=gross, fee_cents=fee, net_cents=gross + fee, cheque_count=cheques,
            lines_digest=financer_lines_digest(lines)))
