"""The audit sees rows changed behind the database's back (triggers disabled by a superuser).

Each test tampers inside the `session` transaction, which is rolled back: the shared test
database keeps a clean journal.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import service as ledger
from ledger.audit import Difference, audit_ledger
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


def test_a_difference_reads_as_a_plain_dict_for_the_api() -> None:
    d = Difference("unbalanced_entry", "Les lignes ne s'annulent pas.", entry_id=3,
                   details={"total_cents": 1})
    assert d.as_dict() == {"kind": "unbalanced_entry", "message": "Les lignes ne s'annulent pas.",
                           "entry_id": 3, "account": None, "details": {"total_cents": 1}}
