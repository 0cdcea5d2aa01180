"""The audit sees rows changed behind the database's back (triggers disabled by a superuser).

Each test tampers inside the `session` transaction, which is rolled back: the shared test
database keeps a clean journal. The one test of the worker processes' road commits its
forgery (they cannot see a transaction's own writes) and deletes it at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.snapshot import export_snapshot
from ledger import service as ledger
from ledger.audit import Difference, audit_ledger, id_ranges
from ledger.sealer import seal_pending


@asynccontextmanager
async def triggers_off(session: AsyncSession) -> AsyncIterator[None]:
    """What a superuser (or anyone with the data files) can do: bypass every trigger."""
    await session.execute(text("SET LOCAL session_replication_role = replica"))
    try:
        yield
    finally:
        await session.execute(text("SET LOCAL session_replication_role = origin"))


async def kinds_for(session: AsyncSession, entry_id: int) -> set[str]:
    return {d.kind for d in await audit_ledger(session) if d.entry_id == entry_id}


async def post(session: AsyncSession, ns: str, n: int, amount: int = 250) -> int:
    entry = await ledger.post(session, key=f"{ns}:{n}", kind="t", memo={"n": n},
                              postings=[(f"{ns}:a", amount), (f"{ns}:b", -amount)])
    return entry.id


async def test_an_untouched_journal_has_no_difference_for_its_entries(
    session: AsyncSession,
) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    ids = [await post(session, ns, i) for i in range(3)]
    await seal_pending(session)
    differences = await audit_ledger(session)
    assert [d for d in differences if d.entry_id in ids] == []


async def test_a_posting_amount_changed_behind_the_database_is_reported(
    session: AsyncSession,
) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    sealed = await post(session, ns, 1)
    await seal_pending(session)
    unsealed = await post(session, ns, 2)
    async with triggers_off(session):
        await session.execute(text(
            "UPDATE ledger_posting SET amount_cents = amount_cents + 1 "
            "WHERE entry_id = ANY(:ids) AND amount_cents > 0"), {"ids": [sealed, unsealed]})
    assert await kinds_for(session, sealed) == {
        "unbalanced_entry", "content_hash_mismatch", "seal_hash_mismatch"}
    assert await kinds_for(session, unsealed) == {"unbalanced_entry", "content_hash_mismatch"}
    [difference] = [d for d in await audit_ledger(session)
                    if d.entry_id == sealed and d.kind == "unbalanced_entry"]
    assert difference.details == {"total_cents": 1}
    assert "ne s'annulent pas" in difference.message


async def test_a_balanced_forgery_is_still_reported_by_the_fingerprint(
    session: AsyncSession,
) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    entry_id = await post(session, ns, 1, amount=250)
    async with triggers_off(session):
        # Both legs moved: the entry still balances, but it is not what was posted.
        await session.execute(text(
            "UPDATE ledger_posting SET amount_cents = amount_cents * 4 WHERE entry_id = :id"),
            {"id": entry_id})
    assert await kinds_for(session, entry_id) == {"content_hash_mismatch"}


async def test_a_tampered_seal_breaks_its_hash_and_the_next_link(session: AsyncSession) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    entry_id = await post(session, ns, 1)
    await seal_pending(session)
    await post(session, ns, 2)
    await seal_pending(session)
    seq = (await session.execute(text("SELECT sealed_seq FROM ledger_seal WHERE entry_id = :id"),
                                 {"id": entry_id})).scalar_one()
    next_id = (await session.execute(text(
        "SELECT entry_id FROM ledger_seal WHERE sealed_seq = :s"), {"s": seq + 1})).scalar_one()
    async with triggers_off(session):
        await session.execute(text(
            "UPDATE ledger_seal SET hash = repeat('a', 64) WHERE entry_id = :id"),
            {"id": entry_id})
    differences = await audit_ledger(session)
    assert {d.kind for d in differences if d.entry_id == entry_id} == {"seal_hash_mismatch"}
    # The forged entry's own link is intact; the next one no longer points to its hash.
    around = [d for d in differences
              if d.kind == "chain_broken" and d.details["sealed_seq"] in (seq, seq + 1)]
    assert [(d.entry_id, d.details["sealed_seq"]) for d in around] == [(next_id, seq + 1)]


@pytest.mark.parametrize("with_its_seal", [True, False])
async def test_a_sealed_entry_deleted_behind_the_database_is_found(
    session: AsyncSession, with_its_seal: bool,
) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    entry_id = await post(session, ns, 1)
    await seal_pending(session)
    await post(session, ns, 2)
    await seal_pending(session)
    seq = (await session.execute(text("SELECT sealed_seq FROM ledger_seal WHERE entry_id = :id"),
                                 {"id": entry_id})).scalar_one()
    async with triggers_off(session):
        # With triggers off, foreign keys are not enforced either.
        if with_its_seal:
            await session.execute(text("DELETE FROM ledger_seal WHERE entry_id = :id"),
                                  {"id": entry_id})
        await session.execute(text("DELETE FROM ledger_entry WHERE id = :id"), {"id": entry_id})
    differences = await audit_ledger(session)
    gaps = [d for d in differences
            if d.kind == "chain_broken" and d.details["sealed_seq"] in (seq, seq + 1)]
    orphan_seals = [d for d in differences if d.kind == "orphan_seal"]
    if with_its_seal:  # the chain has a hole where the seal was
        assert [d.details["sealed_seq"] for d in gaps] == [seq + 1]
        assert "absente" in gaps[0].message
        assert orphan_seals == []
    else:  # the chain holds, and its seal points to nothing
        assert gaps == []
        assert [(d.entry_id, d.details["sealed_seq"]) for d in orphan_seals] == [(entry_id, seq)]
    orphans = [d for d in differences if d.kind == "orphan_posting"]
    assert {d.entry_id for d in orphans} == {entry_id} and len(orphans) == 2


async def test_postings_changed_behind_the_database_are_named_in_posting_order(
    session: AsyncSession,
) -> None:
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    entry_id = await post(session, ns, 1)
    posting_ids = (await session.execute(text(
        "SELECT id FROM ledger_posting WHERE entry_id = :id ORDER BY id"),
        {"id": entry_id})).scalars().all()
    async with triggers_off(session):  # (foreign keys are triggers too)
        # The later posting changed first: its new row version now comes first on disk.
        for posting_id in reversed(posting_ids):
            await session.execute(text(
                "UPDATE ledger_posting SET account_id = -account_id WHERE id = :id"),
                {"id": posting_id})
    # The plan a large journal gets (postings read by the entry_id index, in disk order
    # within an entry), not the hash joins of the test database's small tables.
    for plan in ("seqscan", "bitmapscan", "hashjoin", "hashagg", "sort"):
        await session.execute(text(f"SET LOCAL enable_{plan} = off"))
    missing = [d for d in await audit_ledger(session)
               if d.entry_id == entry_id and d.kind == "posting_account_missing"]
    assert len(posting_ids) == 2
    assert [d.details["posting_id"] for d in missing] == posting_ids


@given(first=st.integers(0, 10**6), size=st.integers(1, 10**5), ranges=st.integers(1, 16),
       at_least=st.integers(1, 10**4))
def test_id_ranges_cover_the_ids_once_in_order(first: int, size: int, ranges: int,
                                               at_least: int) -> None:
    last = first + size - 1
    cut = id_ranges(first, last, ranges=ranges, at_least=at_least)
    assert cut[0][0] == first and cut[-1][1] == last
    assert all(a <= b for a, b in cut)
    assert all(b + 1 == c for (_, b), (c, _) in zip(cut, cut[1:], strict=False))
    assert len(cut) <= ranges
    assert len(cut) == 1 or all(b - a + 1 >= at_least for a, b in cut)


async def test_entries_checked_in_worker_processes_give_what_one_connection_gives(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The full audit's road at scale: the entries checked by id ranges in worker processes,
    each on a connection of its own at the session's snapshot. The workers cannot see the
    session's own writes, so the forgery is committed (then removed): the journal's newest
    entry, in the last range."""
    ns = f"audit:{uuid.uuid4().hex[:10]}"
    async with sessionmaker() as s:
        ids = [await post(s, ns, i) for i in range(3)]
        await s.commit()
    try:
        async with sessionmaker() as s:
            async with triggers_off(s):
                await s.execute(text(
                    "UPDATE ledger_posting SET amount_cents = amount_cents + 1 "
                    "WHERE entry_id = :id AND amount_cents > 0"), {"id": ids[-1]})
            await s.commit()
        async with sessionmaker() as s:
            snapshot = await export_snapshot(s)
            assert snapshot is not None
            first, last = (await s.execute(text(
                "SELECT min(id), max(id) FROM ledger_entry"))).one()
            at_least = max(1, (last - first + 1) // 8)
            ranges = id_ranges(first, last, ranges=8, at_least=at_least)
            assert len(ranges) > 1 and ranges[0][1] < ids[-1]
            in_processes = await audit_ledger(s, snapshot=snapshot, processes=2,
                                              slice_entries=at_least)
            on_one_connection = await audit_ledger(s)
        assert in_processes == on_one_connection
        assert {d.kind for d in in_processes if d.entry_id == ids[-1]} == {
            "unbalanced_entry", "content_hash_mismatch"}
    finally:
        async with sessionmaker() as s:
            async with triggers_off(s):
                await s.execute(text("DELETE FROM ledger_posting WHERE entry_id = ANY(:ids)"),
                                {"ids": ids})
                await s.execute(text("DELETE FROM ledger_entry WHERE id = ANY(:ids)"),
                                {"ids": ids})
            await s.commit()


def test_a_difference_reads_as_a_plain_dict_for_the_api() -> None:
    d = Difference("unbalanced_entry", "Les lignes ne s'annulent pas.", entry_id=3,
                   details={"total_cents": 1})
    assert d.as_dict() == {"kind": "unbalanced_entry", "message": "Les lignes ne s'annulent pas.",
                           "entry_id": 3, "account": None, "details": {"total_cents": 1}}
