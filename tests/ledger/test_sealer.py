"""The sealer chains committed entries once, in sealing order, and never ahead of a commit."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import service as ledger
from ledger.audit import audit_ledger
from ledger.canonical import GENESIS_HASH
from ledger.sealer import chain_head, next_wait, run_sealer_loop, seal_once, seal_pending


def fresh() -> str:
    return f"seal:{uuid.uuid4().hex[:10]}"


async def post_committed(sm: async_sessionmaker[AsyncSession], key: str, ns: str) -> int:
    async with sm() as s, s.begin():
        entry = await ledger.post(s, key=key, kind="t",
                                  postings=[(f"{ns}:c", 3), (f"{ns}:d", -3)])
    return entry.id


async def seal_state(s: AsyncSession, ids: list[int]) -> dict[int, tuple[int, str, str]]:
    rows = (await s.execute(text(
        "SELECT id, sealed_seq, hash, prev_hash FROM ledger_entry WHERE id = ANY(:ids)"),
        {"ids": ids})).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_sealing_twice_changes_nothing_and_the_chain_verifies(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    ids = [await post_committed(sessionmaker, f"{ns}:{i}", ns) for i in range(5)]
    assert await seal_once(sessionmaker) >= 5
    async with sessionmaker() as s:
        first = await seal_state(s, ids)
        everything = (await s.execute(text(
            "SELECT id, sealed_seq, hash FROM ledger_entry WHERE sealed_seq IS NOT NULL"))).all()
    assert all(seq is not None for seq, _h, _p in first.values())
    seqs = sorted(seq for seq, _h, _p in first.values())
    assert seqs == list(range(seqs[0], seqs[0] + 5)), "committed together, sealed together"
    assert await seal_once(sessionmaker) == 0
    async with sessionmaker() as s:
        assert await seal_state(s, ids) == first
        assert sorted((await s.execute(text(
            "SELECT id, sealed_seq, hash FROM ledger_entry WHERE sealed_seq IS NOT NULL"
        ))).all()) == sorted(everything)
        # Each links to the one before; the chain starts at the genesis hash.
        by_seq = {seq: (h, p) for seq, h, p in first.values()}
        for seq in seqs[1:]:
            assert by_seq[seq][1] == by_seq[seq - 1][0]
        genesis = (await s.execute(text(
            "SELECT prev_hash FROM ledger_entry WHERE sealed_seq = 1"))).scalar_one()
        assert genesis == GENESIS_HASH
        assert await chain_head(s) == max((r[1], r[2]) for r in everything)
        differences = [d for d in await audit_ledger(s) if d.entry_id in ids]
    assert differences == []


async def test_an_entry_of_a_still_open_transaction_is_not_sealed_ahead_of_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    late = sessionmaker()
    await late.begin()
    # Takes its id first, commits last. (Its accounts are its own: an account created by an
    # uncommitted transaction makes other posts to it wait for that commit.)
    late_entry = await ledger.post(late, key=f"{ns}:late", kind="t",
                                   postings=[(f"{ns}:a", 9), (f"{ns}:b", -9)])
    early_id = await post_committed(sessionmaker, f"{ns}:early", ns)
    assert late_entry.id < early_id
    await seal_once(sessionmaker)
    async with sessionmaker() as s:
        state = await seal_state(s, [early_id])
    assert state[early_id][0] is not None
    await late.commit()
    await late.close()
    async with sessionmaker() as s:
        assert (await seal_state(s, [late_entry.id]))[late_entry.id][0] is None
    await seal_once(sessionmaker)
    async with sessionmaker() as s:
        state = await seal_state(s, [early_id, late_entry.id])
        differences = [d for d in await audit_ledger(s)
                       if d.entry_id in (early_id, late_entry.id)]
    # Appended after the entries sealed before it committed, never inserted in the middle.
    assert state[late_entry.id][0] > state[early_id][0]
    assert differences == []


async def test_a_sealer_that_would_wait_for_another_can_skip_its_turn(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    await post_committed(sessionmaker, f"{ns}:1", ns)
    async with sessionmaker() as holder, holder.begin():
        await seal_pending(holder)  # holds the sealer lock until the end of this block
        async with sessionmaker() as other, other.begin():
            assert await seal_pending(other, wait=False) == 0
            pending = (await other.execute(text(
                "SELECT count(*) FROM ledger_entry WHERE idempotency_key = :k "
                "AND sealed_seq IS NULL"), {"k": f"{ns}:1"})).scalar_one()
            assert pending == 1, "the holder's seals are not committed yet"


async def test_the_background_loop_seals_new_entries_until_stopped(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    stop = asyncio.Event()
    task = asyncio.create_task(run_sealer_loop(sessionmaker, 0.02, stop=stop))
    try:
        entry_id = await post_committed(sessionmaker, f"{ns}:1", ns)
        async with asyncio.timeout(10):
            while True:
                async with sessionmaker() as s:
                    if (await seal_state(s, [entry_id]))[entry_id][0] is not None:
                        break
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    assert task.done() and task.exception() is None


def test_the_loop_seals_every_interval_under_load_and_spaces_out_when_idle() -> None:
    waits = []
    wait = 0.05
    for sealed in (0, 0, 0, 0, 0, 0, 0, 3, 0, 120):
        wait = next_wait(wait, sealed=sealed, interval=0.05, idle_interval=1.0)
        waits.append(wait)
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.05, 0.1, 0.05]
    # An interval longer than the idle one is kept as it is.
    assert next_wait(5.0, sealed=0, interval=5.0, idle_interval=1.0) == 5.0
