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
        "SELECT e.id, s.sealed_seq, s.hash, s.prev_hash FROM ledger_entry e "
        "LEFT JOIN ledger_seal s ON s.entry_id = e.id WHERE e.id = ANY(:ids)"),
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
            "SELECT entry_id, sealed_seq, hash FROM ledger_seal"))).all()
    assert all(seq is not None for seq, _h, _p in first.values())
    seqs = sorted(seq for seq, _h, _p in first.values())
    assert seqs == list(range(seqs[0], seqs[0] + 5)), "committed together, sealed together"
    assert await seal_once(sessionmaker) == 0
    async with sessionmaker() as s:
        assert await seal_state(s, ids) == first
        assert sorted((await s.execute(text(
            "SELECT entry_id, sealed_seq, hash FROM ledger_seal"))).all()) == sorted(everything)
        # Each links to the one before; the chain starts at the genesis hash.
        by_seq = {seq: (h, p) for seq, h, p in first.values()}
        for seq in seqs[1:]:
            assert by_seq[seq][1] == by_seq[seq - 1][0]
        genesis = (await s.execute(text(
            "SELECT prev_hash FROM ledger_seal WHERE sealed_seq = 1"))).scalar_one()
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
                "SELECT count(*) FROM ledger_entry e WHERE idempotency_key = :k "
                "AND NOT EXISTS (SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id)"),
                {"k": f"{ns}:1"})).scalar_one()
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


# What a run leaves for the next one to look at: the entries written by the transactions its
# snapshot could not see (in progress, or started later), less the sealed ones.
_LEFT_TO_LOOK_AT = text("""
SELECT e.id FROM ledger_entry e,
     (SELECT open_from, open_xids FROM ledger_seal ORDER BY sealed_seq DESC LIMIT 1) AS n
WHERE e.xact >= n.open_from OR e.xact = ANY(n.open_xids)
ORDER BY e.id
""")


async def noted(s: AsyncSession) -> tuple[int, list[int]]:
    row = (await s.execute(text(
        "SELECT open_from, open_xids FROM ledger_seal ORDER BY sealed_seq DESC LIMIT 1"))).one()
    return row[0], row[1]


async def test_a_run_leaves_the_next_one_nothing_of_the_sealed_history_to_look_at(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    for i in range(3):
        await post_committed(sessionmaker, f"{ns}:{i}", ns)
    await seal_once(sessionmaker)
    async with sessionmaker() as s:
        assert (await s.execute(_LEFT_TO_LOOK_AT)).all() == []
        # Every seal but each run's last carries no snapshot.
        assert (await s.execute(text(
            "SELECT count(*) FROM ledger_seal WHERE open_from IS NOT NULL "
            "AND sealed_seq <> (SELECT max(sealed_seq) FROM ledger_seal)"
        ))).scalar_one() < (await s.execute(text(
            "SELECT count(*) FROM ledger_seal"))).scalar_one()
    later = await post_committed(sessionmaker, f"{ns}:later", ns)
    async with sessionmaker() as s:
        assert [r[0] for r in (await s.execute(_LEFT_TO_LOOK_AT)).all()] == [later]
    assert await seal_once(sessionmaker) == 1


async def test_a_run_stopped_at_its_limit_keeps_where_it_looked(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    await post_committed(sessionmaker, f"{ns}:first", ns)
    await seal_once(sessionmaker)
    async with sessionmaker() as s:
        before = await noted(s)
    ids = [await post_committed(sessionmaker, f"{ns}:{i}", ns) for i in range(5)]
    async with sessionmaker() as s, s.begin():
        assert await seal_pending(s, limit=2) == 2
    async with sessionmaker() as s:
        assert await noted(s) == before, "three visible entries are still to seal"
        assert {i for (i,) in (await s.execute(_LEFT_TO_LOOK_AT)).all()} >= set(ids[2:])
    assert await seal_once(sessionmaker, limit=2) == 3
    async with sessionmaker() as s:
        state = await seal_state(s, ids)
        assert (await s.execute(_LEFT_TO_LOOK_AT)).all() == []
    assert sorted(seq for seq, _h, _p in state.values()) == list(
        range(state[ids[0]][0], state[ids[0]][0] + 5))


async def test_a_transaction_seen_in_progress_then_rolled_back_holds_nothing_up(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    doomed = sessionmaker()
    await doomed.begin()
    await ledger.post(doomed, key=f"{ns}:doomed", kind="t",
                      postings=[(f"{ns}:x", 1), (f"{ns}:y", -1)])
    xid = (await doomed.execute(text(
        "SELECT CAST(CAST(pg_current_xact_id() AS text) AS bigint)"))).scalar_one()
    await post_committed(sessionmaker, f"{ns}:1", ns)
    await seal_once(sessionmaker)
    async with sessionmaker() as s:
        assert xid in (await noted(s))[1]
    await doomed.rollback()
    await doomed.close()
    after = await post_committed(sessionmaker, f"{ns}:2", ns)
    assert await seal_once(sessionmaker) == 1
    async with sessionmaker() as s:
        assert (await seal_state(s, [after]))[after][0] is not None
        assert xid not in (await noted(s))[1]
        assert (await s.execute(_LEFT_TO_LOOK_AT)).all() == []


async def test_entries_a_transaction_writes_after_sealing_are_sealed_later(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()
    async with sessionmaker() as s, s.begin():
        before = (await ledger.post(s, key=f"{ns}:before", kind="t",
                                    postings=[(f"{ns}:a", 2), (f"{ns}:b", -2)])).id
        # A later transaction that completes first puts this one's id below the snapshot's
        # xmax, where the snapshot does not list it as in progress: it is its own.
        await post_committed(sessionmaker, f"{ns}:other", f"{ns}:o")
        assert await seal_pending(s) >= 2  # sees its own entry
        after = (await ledger.post(s, key=f"{ns}:after", kind="t",
                                   postings=[(f"{ns}:a", 3), (f"{ns}:b", -3)])).id
    assert await seal_once(sessionmaker) == 1
    async with sessionmaker() as s:
        state = await seal_state(s, [before, after])
        assert (await s.execute(_LEFT_TO_LOOK_AT)).all() == []
    assert state[after][0] is not None and state[after][0] > state[before][0]


async def test_an_entry_still_without_postings_is_left_for_later_without_losing_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The sealer's own transaction may hold an entry whose postings are not written yet: it
    is skipped, and counts toward the limit, so the run that stopped at it keeps looking."""
    await seal_once(sessionmaker)
    ns = fresh()
    async with sessionmaker() as s, s.begin():
        own = (await s.execute(text(
            "INSERT INTO ledger_entry (idempotency_key, kind, content_hash) "
            "VALUES (:k, 't', repeat('0', 64)) RETURNING id"), {"k": f"{ns}:own"})).scalar_one()
        second = await post_committed(sessionmaker, f"{ns}:2", ns)
        third = await post_committed(sessionmaker, f"{ns}:3", ns)
        assert own < second < third
        assert await seal_pending(s, limit=2) == 1  # the second; its own has no posting yet
        await s.execute(text(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
            "SELECT :id, a.id, CASE WHEN a.code = :c THEN 3 ELSE -3 END "
            "FROM ledger_account a WHERE a.code IN (:c, :d)"),
            {"id": own, "c": f"{ns}:c", "d": f"{ns}:d"})
    assert await seal_once(sessionmaker) == 2
    async with sessionmaker() as s:
        state = await seal_state(s, [own, second, third])
        assert (await s.execute(_LEFT_TO_LOOK_AT)).all() == []
    assert state[second][0] < state[own][0] < state[third][0]
