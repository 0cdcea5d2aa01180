"""The sealer: chains committed entries with sha256, after the fact, so writers never wait.

Each sealed entry gets a row of `ledger_seal`: `sealed_seq` (1, 2, 3…), `prev_hash` (the hash
of seal seq-1, or GENESIS_HASH) and `hash = sha256(prev_hash ‖ canonical entry)`
(ledger.canonical.seal_hash). Seals are only ever inserted; entries are never updated.

Which order is "commit order", and why this one is sound:
- ids come from a sequence at INSERT time, not at commit: a transaction may hold id 41 while
  id 42 commits and gets sealed. Sealing strictly by id would mean waiting for every id below
  the highest committed one, and nothing says whether a missing id is in progress or rolled back
  (nextval is not tied to the transaction that uses the id).
- So the chain order is the *sealing* order. A run takes, under a transaction-level advisory
  lock that only sealers take, the unsealed entries its snapshot sees (all committed, or its own
  transaction's), in id order, and appends them after the last seal. An entry that commits late
  is appended by a later run: nothing is inserted in the middle of the chain, no link ever
  changes. Hence: if A committed before a run started and B after, seq(A) < seq(B); inside one
  run, entries are in id order. An uncommitted entry is invisible, so never sealed early.

How a run finds what is left, without scanning the sealed history, and skipping nothing:
- every entry carries `xact`, its writer's top-level transaction id (the column's default,
  `pg_current_xact_id()`); the run notes the snapshot it read under on its last seal
  (`open_from`: the snapshot's xmax, the first transaction id not yet assigned; `open_xids`:
  the transactions in progress). An entry that run could not see was written by a transaction
  in progress then or started later, so its `xact` is in `open_xids` or ≥ `open_from`: the
  next run looks only there (index `ix_ledger_entry_xact`), less what is sealed meanwhile.
  A rolled-back transaction leaves nothing to wait for: its id simply never appears.
- A run that stops at its `limit` leaves visible entries behind, so it keeps the previous run's
  snapshot (its candidates are still there); before any noted snapshot (a new journal, seals
  copied by migration 0007), a run looks at every entry.
- Writers take no lock the sealer holds: they only INSERT entries, the sealer only INSERTs seals.
"""

from __future__ import annotations

import asyncio
import json

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger.canonical import GENESIS_HASH, seal_hash

log = structlog.get_logger(__name__)

# pg_advisory_xact_lock key of the sealer ("LEDGSEAL" as 8 bytes); writers never take it.
SEALER_LOCK_KEY = int.from_bytes(b"LEDGSEAL", "big") & 0x7FFF_FFFF_FFFF_FFFF

_LAST_SEALED = text("""
SELECT sealed_seq, hash, open_from, open_xids FROM ledger_seal
ORDER BY sealed_seq DESC LIMIT 1
""")

# Candidates by the writers' transaction ids first (materialised, so that no plan walks the
# whole journal in id order), less those already sealed; then each entry's postings by the
# index on entry_id (LATERAL: a join over the whole posting table let the planner hash it
# all, a cost growing with the journal). Every row also carries the statement's snapshot.
_PENDING = text("""
WITH candidate AS MATERIALIZED (
    SELECT id FROM ledger_entry
    WHERE xact >= :open_from OR xact = ANY(CAST(:open_xids AS bigint[]))
), seen AS MATERIALIZED (
    SELECT CAST(CAST(pg_snapshot_xmax(s) AS text) AS bigint) AS open_from,
           -- this very transaction too, when it wrote entries before sealing: its own id is
           -- below xmax and not among those in progress, yet it may write more after
           ARRAY(SELECT CAST(CAST(x AS text) AS bigint)
                 FROM (SELECT pg_snapshot_xip(s) UNION SELECT pg_current_xact_id_if_assigned())
                      AS t(x)
                 WHERE x IS NOT NULL ORDER BY 1) AS open_xids
    FROM pg_current_snapshot() AS s
)
SELECT e.id, e.idempotency_key, e.kind, CAST(e.memo AS text), e.created_at, x.codes, x.amounts,
       seen.open_from, seen.open_xids
FROM (SELECT l.id, l.idempotency_key, l.kind, l.memo, l.created_at
      FROM candidate c JOIN ledger_entry l ON l.id = c.id
      WHERE NOT EXISTS (SELECT 1 FROM ledger_seal s WHERE s.entry_id = c.id)
      ORDER BY c.id LIMIT :limit) AS e
CROSS JOIN seen
LEFT JOIN LATERAL (
    SELECT array_agg(a.code ORDER BY p.id) AS codes,
           array_agg(p.amount_cents ORDER BY p.id) AS amounts
    FROM ledger_posting p JOIN ledger_account a ON a.id = p.account_id
    WHERE p.entry_id = e.id
) AS x ON true
ORDER BY e.id
""")

# The run's last seal notes where the next run looks (`open_from`, `open_xids`).
_SEAL = text("""
INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash, open_from, open_xids)
SELECT v.id, v.seq, v.hash, v.prev_hash,
       CASE WHEN v.seq = :last_seq THEN CAST(:open_from AS bigint) END,
       CASE WHEN v.seq = :last_seq THEN CAST(:open_xids AS bigint[]) END
FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]), CAST(:hashes AS text[]),
            CAST(:prev_hashes AS text[])) AS v(id, seq, hash, prev_hash)
ORDER BY v.seq
""")


async def seal_pending(session: AsyncSession, *, limit: int = 10_000, wait: bool = True) -> int:
    """Seal up to `limit` unsealed entries visible to this transaction; return how many.

    With `wait=False`, return 0 at once if another sealer holds the lock. The caller commits;
    the lock is released at the end of its transaction.
    """
    if wait:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEALER_LOCK_KEY})
    else:
        got = (await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                     {"k": SEALER_LOCK_KEY})).scalar_one()
        if not got:
            return 0
    # Read after taking the lock: under READ COMMITTED each statement sees the previous
    # sealer's committed work.
    last = (await session.execute(_LAST_SEALED)).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
    # Before any noted snapshot, every entry is a candidate.
    looked = (last[2], last[3]) if last and last[2] is not None else (0, [])
    rows = (await session.execute(
        _PENDING, {"limit": limit, "open_from": looked[0], "open_xids": looked[1]})).all()
    if not rows:
        return 0
    # Stopped at the limit, the run leaves candidates behind: the next run looks where this
    # one did. Otherwise, where this run's snapshot could not see.
    noted = looked if len(rows) >= limit else (rows[0][7], rows[0][8])
    ids: list[int] = []
    seqs: list[int] = []
    hashes: list[str] = []
    prevs: list[str] = []
    for entry_id, key, kind, memo_text, created_at, codes, amounts, _, _ in rows:
        if codes is None:
            # No posting yet: only this very transaction's own entry, still being written
            # (any other is balanced at its commit). Its transaction id is among those noted,
            # so a later run finds it whole.
            continue
        seq += 1
        digest = seal_hash(prev, seq=seq, entry_id=entry_id, key=key, kind=kind,
                           memo=None if memo_text is None else json.loads(memo_text),
                           created_at=created_at, postings=zip(codes, amounts, strict=True))
        ids.append(entry_id)
        seqs.append(seq)
        hashes.append(digest)
        prevs.append(prev)
        prev = digest
    if not ids:
        return 0
    # A race with another sealer (impossible under the lock) would break the unique keys of
    # ledger_seal and undo this whole run.
    await session.execute(_SEAL, {"ids": ids, "seqs": seqs, "hashes": hashes,
                                  "prev_hashes": prevs, "last_seq": seq,
                                  "open_from": noted[0], "open_xids": list(noted[1])})
    return len(ids)


async def seal_once(sessionmaker: async_sessionmaker[AsyncSession], *,
                    limit: int = 10_000) -> int:
    """Seal everything committed so far, one committed transaction per batch (CLI, tests)."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            sealed = await seal_pending(session, limit=limit)
        total += sealed
        if sealed < limit:
            return total


# Under load, short intervals keep each run's work small: a run's burst of updates delays the
# requests around it (measured with wrk: p99 49-52 ms sealing every 0.05 s, 57-60 ms every
# 0.2 s, 64 ms every 1 s). Idle, the runs space out so that an idle service stays quiet.
IDLE_INTERVAL = 1.0


async def run_sealer_loop(sessionmaker: async_sessionmaker[AsyncSession], interval: float, *,
                          limit: int = 10_000, stop: asyncio.Event | None = None,
                          idle_interval: float = IDLE_INTERVAL) -> None:
    """Seal in the background every `interval` seconds while entries keep coming (at once
    again while batches are full), backing off to `idle_interval` while none come, until
    `stop` is set or the task is cancelled. Errors are logged and retried: the chain only
    ever lags, it is never wrong."""
    stop = stop or asyncio.Event()
    wait = interval
    while not stop.is_set():
        sealed = 0
        try:
            async with sessionmaker() as session, session.begin():
                # Several app workers may each run a loop: the busy ones just skip a turn.
                sealed = await seal_pending(session, limit=limit, wait=False)
            if sealed:
                log.info("ledger_sealed", entries=sealed)
        except Exception:  # noqa: BLE001 — a database hiccup must not kill the loop
            log.exception("ledger_sealer_failed")
        if sealed >= limit:
            continue
        wait = next_wait(wait, sealed=sealed, interval=interval, idle_interval=idle_interval)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except TimeoutError:
            pass


def next_wait(previous: float, *, sealed: int, interval: float, idle_interval: float) -> float:
    """The wait before the next run: `interval` after a run that sealed something, else twice
    the previous wait, up to `idle_interval` (never below `interval`)."""
    if sealed:
        return interval
    return max(interval, min(previous * 2, idle_interval))


async def chain_head(session: AsyncSession) -> tuple[int, str] | None:
    """(sealed_seq, hash) of the last seal: publish it (e.g. on statements) so that
    even a truncated chain tail can be detected against the published value."""
    row = (await session.execute(_LAST_SEALED)).first()
    return (int(row[0]), str(row[1])) if row else None
