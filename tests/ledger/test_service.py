"""The journal's use cases: posting, idempotency, accounts on first use, balances, reversal."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import service as ledger
from ledger.errors import EntryNotFound, IdempotencyConflict, InvalidEntry, UnbalancedEntry
from ledger.service import NewEntry, Posting


def fresh(prefix: str = "t") -> str:
    """A namespace of its own, so tests sharing the database never see each other's accounts."""
    return f"{prefix}:{uuid.uuid4().hex[:10]}"


async def count_entries(session: AsyncSession, key: str) -> int:
    return (await session.execute(
        text("SELECT count(*) FROM ledger_entry WHERE idempotency_key = :k"), {"k": key}
    )).scalar_one()


async def test_a_balanced_entry_is_written_with_its_postings_and_moves_balances(
    session: AsyncSession,
) -> None:
    ns = fresh()
    entry = await ledger.post(session, key=f"{ns}:1", kind="transfer",
                              postings=[(f"{ns}:a", 1500), (f"{ns}:b", -1500)],
                              memo={"why": "test"})
    assert entry.created
    assert entry.postings == (Posting(f"{ns}:a", 1500), Posting(f"{ns}:b", -1500))
    assert await ledger.balance(session, f"{ns}:a") == 1500
    assert await ledger.balance(session, f"{ns}:b") == -1500
    read = await ledger.get_entry(session, f"{ns}:1")
    assert read is not None
    assert (read.id, read.kind, read.memo, set(read.postings)) == (
        entry.id, "transfer", {"why": "test"}, set(entry.postings))


async def test_posting_again_with_the_same_key_and_content_returns_the_first_entry(
    session: AsyncSession,
) -> None:
    ns = fresh()
    first = await ledger.post(session, key=f"{ns}:k", kind="transfer",
                              postings=[(f"{ns}:a", 700), (f"{ns}:b", -700)], memo={"n": 1})
    # Same content, postings in another order: a faithful retry.
    again = await ledger.post(session, key=f"{ns}:k", kind="transfer",
                              postings=[Posting(f"{ns}:b", -700), Posting(f"{ns}:a", 700)],
                              memo={"n": 1})
    assert again.id == first.id and not again.created
    assert again.created_at == first.created_at
    assert await count_entries(session, f"{ns}:k") == 1
    assert await ledger.balance(session, f"{ns}:a") == 700


@pytest.mark.parametrize("change", ["amount", "account", "kind", "memo"])
async def test_the_same_key_with_other_content_is_an_idempotency_conflict(
    session: AsyncSession, change: str,
) -> None:
    ns = fresh()
    args = {"key": f"{ns}:k", "kind": "transfer", "memo": {"n": 1},
            "postings": [(f"{ns}:a", 700), (f"{ns}:b", -700)]}
    await ledger.post(session, **args)  # type: ignore[arg-type]
    other = dict(args)
    if change == "amount":
        other["postings"] = [(f"{ns}:a", 701), (f"{ns}:b", -701)]
    elif change == "account":
        other["postings"] = [(f"{ns}:a", 700), (f"{ns}:c", -700)]
    elif change == "kind":
        other["kind"] = "other"
    else:
        other["memo"] = {"n": 2}
    with pytest.raises(IdempotencyConflict) as err:
        await ledger.post(session, **other)  # type: ignore[arg-type]
    assert err.value.code == "idempotency_conflict"
    assert await count_entries(session, f"{ns}:k") == 1
    assert await ledger.balance(session, f"{ns}:a") == 700


@pytest.mark.parametrize(("postings", "error"), [
    ([("x:a", 100), ("x:b", -99)], UnbalancedEntry),
    ([("x:a", 0), ("x:b", 0)], InvalidEntry),
    ([("x:a", 100)], InvalidEntry),
    ([], InvalidEntry),
    ([("", 100), ("x:b", -100)], InvalidEntry),
    ([("x: a", 100), ("x:b", -100)], InvalidEntry),
    ([("x:é", 100), ("x:b", -100)], InvalidEntry),
    ([("x:" + "a" * 199, 100), ("x:b", -100)], InvalidEntry),
    ([("x:a", 1.5), ("x:b", -1.5)], InvalidEntry),
    ([("x:a", True), ("x:b", -1)], InvalidEntry),
    ([("x:a", 2**63), ("x:b", -(2**63))], InvalidEntry),
])
async def test_an_invalid_entry_is_refused_before_reaching_the_database(
    session: AsyncSession, postings: list[tuple[str, int]], error: type[Exception],
) -> None:
    key = fresh()
    with pytest.raises(error):
        await ledger.post(session, key=key, kind="transfer", postings=postings)
    assert await count_entries(session, key) == 0


async def test_unbalanced_entry_error_says_by_how_much(session: AsyncSession) -> None:
    with pytest.raises(UnbalancedEntry) as err:
        await ledger.post(session, key=fresh(), kind="t", postings=[("x:a", 100), ("x:b", -90)])
    assert err.value.code == "unbalanced_entry"
    assert err.value.details["total_cents"] == 10


@pytest.mark.parametrize("memo", [{"rate": 0.5}, {"s": "a\x00b"}, ["not", "an", "object"]])
async def test_a_memo_that_would_not_read_back_identically_is_refused(
    session: AsyncSession, memo: object,
) -> None:
    with pytest.raises(InvalidEntry):
        await ledger.post(session, key=fresh(), kind="t", memo=memo,  # type: ignore[arg-type]
                          postings=[("x:a", 1), ("x:b", -1)])


async def test_an_entry_can_be_dated_and_a_naive_date_is_refused(session: AsyncSession) -> None:
    ns = fresh()
    at = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    entry = await ledger.post(session, key=f"{ns}:1", kind="t", at=at,
                              postings=[(f"{ns}:a", 1), (f"{ns}:b", -1)])
    assert entry.created_at == at
    with pytest.raises(InvalidEntry):
        await ledger.post(session, key=f"{ns}:2", kind="t", at=datetime(2024, 3, 1),
                          postings=[(f"{ns}:a", 1), (f"{ns}:b", -1)])


async def test_several_postings_on_one_account_in_one_entry_are_kept(
    session: AsyncSession,
) -> None:
    ns = fresh()
    entry = await ledger.post(session, key=f"{ns}:1", kind="t",
                              postings=[(f"{ns}:a", 300), (f"{ns}:a", 200), (f"{ns}:b", -500)])
    read = await ledger.get_entry(session, f"{ns}:1")
    assert read is not None and sorted(read.postings) == sorted(entry.postings)
    assert await ledger.balance(session, f"{ns}:a") == 500


async def test_balances_by_prefix_cover_exactly_the_accounts_under_it(
    session: AsyncSession,
) -> None:
    ns = fresh()
    await ledger.post(session, key=f"{ns}:1", kind="t", postings=[
        (f"{ns}:p_1:x", 100), (f"{ns}:p_10:x", 200), (f"{ns}:q:x", -300)])
    # "_" is not a wildcard, and p_1 does not cover p_10... unless asked for "p_1".
    assert await ledger.balances(session, f"{ns}:p_1:") == {f"{ns}:p_1:x": 100}
    assert await ledger.balances(session, f"{ns}:p_1") == {f"{ns}:p_1:x": 100,
                                                           f"{ns}:p_10:x": 200}
    assert await ledger.balances(session, [f"{ns}:q:x", f"{ns}:unknown"]) == {
        f"{ns}:q:x": -300, f"{ns}:unknown": 0}
    assert sum((await ledger.balances(session, f"{ns}:")).values()) == 0


async def test_accounts_can_be_created_ahead_once(session: AsyncSession) -> None:
    ns = fresh()
    first = await ledger.ensure_accounts(session, [f"{ns}:a", f"{ns}:b", f"{ns}:a"])
    again = await ledger.ensure_accounts(session, [f"{ns}:b", f"{ns}:c"])
    assert set(first) == {f"{ns}:a", f"{ns}:b"} and again[f"{ns}:b"] == first[f"{ns}:b"]
    assert await ledger.balances(session, f"{ns}:") == {f"{ns}:a": 0, f"{ns}:b": 0,
                                                        f"{ns}:c": 0}
    with pytest.raises(InvalidEntry):
        await ledger.ensure_accounts(session, ["bad code"])


async def test_a_reversal_posts_the_opposite_postings_once(session: AsyncSession) -> None:
    ns = fresh()
    await ledger.post(session, key=f"{ns}:1", kind="t",
                      postings=[(f"{ns}:a", 400), (f"{ns}:b", -150), (f"{ns}:c", -250)])
    rev = await ledger.reverse(session, key=f"{ns}:1:rev", original_key=f"{ns}:1",
                               kind="t_reversal", memo={"reason": "erreur"})
    again = await ledger.reverse(session, key=f"{ns}:1:rev", original_key=f"{ns}:1",
                                 kind="t_reversal", memo={"reason": "erreur"})
    assert again.id == rev.id and not again.created
    assert sorted(rev.postings) == sorted(
        [Posting(f"{ns}:a", -400), Posting(f"{ns}:b", 150), Posting(f"{ns}:c", 250)])
    assert await ledger.balances(session, f"{ns}:") == {f"{ns}:a": 0, f"{ns}:b": 0,
                                                        f"{ns}:c": 0}
    with pytest.raises(EntryNotFound):
        await ledger.reverse(session, key=f"{ns}:x:rev", original_key=f"{ns}:x", kind="t")


async def test_post_many_writes_a_batch_in_order_and_is_idempotent(
    session: AsyncSession,
) -> None:
    ns = fresh()
    existing = await ledger.post(session, key=f"{ns}:0", kind="t",
                                 postings=[(f"{ns}:bank", 5), (f"{ns}:s0", -5)])
    batch = [NewEntry(key=f"{ns}:{i}", kind="t", memo={"i": i},
                      postings=[(f"{ns}:bank", 5 + i), (f"{ns}:s{i % 7}", -(5 + i))])
             for i in range(1, 2000)]
    # The already-posted entry and a repeated key with the same content are fine.
    entries = await ledger.post_many(
        session, [NewEntry(key=f"{ns}:0", kind="t", postings=[(f"{ns}:s0", -5), (f"{ns}:bank", 5)]),
                  *batch, batch[3]])
    assert [e.key for e in entries] == [f"{ns}:0"] + [b.key for b in batch] + [batch[3].key]
    assert entries[0].id == existing.id and not entries[0].created
    assert all(e.created for e in entries[1:-1])
    ids = [e.id for e in entries[1:-1]]
    assert ids == sorted(ids), "ids follow the order of the batch"
    assert await ledger.balance(session, f"{ns}:bank") == sum(5 + i for i in range(2000))
    assert sum((await ledger.balances(session, f"{ns}:")).values()) == 0
    again = await ledger.post_many(session, batch)
    assert [e.id for e in again] == ids and not any(e.created for e in again)


async def test_post_many_refuses_a_batch_reusing_a_key_for_other_content(
    session: AsyncSession,
) -> None:
    ns = fresh()
    a = NewEntry(key=f"{ns}:1", kind="t", postings=[(f"{ns}:a", 1), (f"{ns}:b", -1)])
    b = NewEntry(key=f"{ns}:1", kind="t", postings=[(f"{ns}:a", 2), (f"{ns}:b", -2)])
    with pytest.raises(IdempotencyConflict):
        await ledger.post_many(session, [a, b])
    await ledger.post(session, key=a.key, kind=a.kind, postings=a.postings)
    with pytest.raises(IdempotencyConflict):
        await ledger.post_many(session, [b])


async def test_concurrent_posts_of_one_key_write_one_entry(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()

    async def attempt() -> ledger.Entry:
        async with sessionmaker() as s, s.begin():
            return await ledger.post(s, key=f"{ns}:k", kind="t",
                                     postings=[(f"{ns}:a", 10), (f"{ns}:b", -10)])

    results = await asyncio.gather(*(attempt() for _ in range(8)))
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    async with sessionmaker() as s:
        assert await count_entries(s, f"{ns}:k") == 1
        assert await ledger.balance(s, f"{ns}:a") == 10


async def test_concurrent_posts_of_one_key_with_other_content_keep_the_first_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ns = fresh()

    async def attempt(amount: int) -> ledger.Entry | IdempotencyConflict:
        try:
            async with sessionmaker() as s, s.begin():
                return await ledger.post(s, key=f"{ns}:k", kind="t",
                                         postings=[(f"{ns}:a", amount), (f"{ns}:b", -amount)])
        except IdempotencyConflict as exc:
            return exc

    results = await asyncio.gather(*(attempt(a) for a in range(1, 9)))
    winners = [r for r in results if isinstance(r, ledger.Entry)]
    assert len(winners) == 1 and winners[0].created
    assert all(isinstance(r, IdempotencyConflict) for r in results if r is not winners[0])
    async with sessionmaker() as s:
        assert await ledger.balance(s, f"{ns}:a") == winners[0].postings[0].amount_cents


async def test_a_post_racing_with_the_creation_of_its_account_still_writes_all_postings(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The account appears (committed) after the post's snapshot: the post completes itself."""
    ns = fresh()
    creator = sessionmaker()
    await creator.begin()
    await creator.execute(text("INSERT INTO ledger_account (code) VALUES (:c)"), {"c": f"{ns}:new"})
    creator_pid = (await creator.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with sessionmaker() as s:
        await s.begin()
        pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        posting = asyncio.ensure_future(ledger.post(
            s, key=f"{ns}:1", kind="t", postings=[(f"{ns}:new", 5), (f"{ns}:old", -5)]))
        # Wait (with a deadline) until the post is blocked on the uncommitted account.
        async with sessionmaker() as watcher:
            for _ in range(500):
                blocked = (await watcher.execute(text(
                    "SELECT :blocker = ANY(pg_blocking_pids(:pid))"),
                    {"blocker": creator_pid, "pid": pid})).scalar_one()
                if blocked:
                    break
                await asyncio.sleep(0.01)
            assert blocked, "the post never waited for the account being created"
        await creator.commit()
        await creator.close()
        entry = await posting
        await s.commit()
    async with sessionmaker() as s:
        read = await ledger.get_entry(s, f"{ns}:1")
        assert read is not None and read.id == entry.id
        assert sorted(read.postings) == [Posting(f"{ns}:new", 5), Posting(f"{ns}:old", -5)]


@pytest.mark.parametrize("memo", [
    None,
    {"serial": "PN-ABCD-EFGH-JKMN-P"},
    {"clé \"é\"\n": "ü\u2028\x01\\"},  # one key: written without a query, escapes alike
    {"n": -(2**62)},
    {"z": [1, {"b": None, "a": "x"}]},  # one key, a value that is not a scalar
    {"é": "ünï\u2028", "a": [1, -2, {"z": None, "b": True}], "ctl": "\x01\t\n\"\\", "B": 2**62},
    {"": [], "x": {}},
])
async def test_the_database_fingerprint_is_the_canonical_one_of_ledger_canonical(
    session: AsyncSession, memo: dict[str, object] | None,
) -> None:
    """`ledger_post` (SQL) and `ledger.canonical.content_hash` (the auditor's Python) agree."""
    from ledger.canonical import content_hash

    ns = fresh()
    postings = [(f"{ns}:b", -7), (f"{ns}:a", 3), (f"{ns}:a", 4)]
    entry = await ledger.post(session, key=f"{ns}:k", kind="t\u00e9", postings=postings,
                              memo=memo)
    assert entry.content_hash == content_hash("t\u00e9", postings, entry.memo)


async def test_the_database_orders_any_postings_as_the_auditor_s_python_does(
    session: AsyncSession,
) -> None:
    """`ledger_content_hash` sorts postings itself (an insertion sort in PL/pgSQL): on random
    entries — 0 to 12 postings, repeated codes and amounts, characters that collations order
    differently (upper/lower case, punctuation, accents) — it gives Python's hash."""
    import random

    from ledger.canonical import content_hash

    rng = random.Random(20261206)
    alphabet = ["a", "B", "b", "A", "_", "-", "~", "0", "é", "Z", ":"]
    for _ in range(300):
        n = rng.randint(0, 12)
        codes = ["".join(rng.choices(alphabet, k=rng.randint(1, 3))) for _ in range(n)]
        amounts = [rng.choice([-2, -1, 1, 2, 10**12, -(10**12)]) for _ in range(n)]
        got = (await session.execute(
            text("SELECT ledger_content_hash('k', NULL, CAST(:c AS text[]), "
                 "CAST(:a AS bigint[]))"), {"c": codes, "a": amounts})).scalar_one()
        assert got == content_hash("k", list(zip(codes, amounts, strict=True)), None), (
            codes, amounts)


_POST_MANY_SQL = text("""
SELECT i, created, same_content, entry_id FROM ledger_post_many(
    CAST(:keys AS text[]), CAST(:kinds AS text[]), CAST(:memos AS jsonb[]),
    CAST(:ats AS timestamptz[]), CAST(:entry_of AS int[]), CAST(:codes AS text[]),
    CAST(:amounts AS bigint[]))
""")


def _many(keys: list[str], entry_of: list[int], codes: list[str],
          amounts: list[int]) -> dict[str, object]:
    return {"keys": keys, "kinds": ["t"] * len(keys), "memos": [None] * len(keys),
            "ats": [None] * len(keys), "entry_of": entry_of, "codes": codes, "amounts": amounts}


async def test_the_database_s_many_posting_writes_a_key_given_twice_once(
    session: AsyncSession,
) -> None:
    """`ledger_post_many` called from SQL (the redemption does) with one key twice: one entry;
    the second row is not created and says whether it matches."""
    ns = fresh()
    rows = (await session.execute(_POST_MANY_SQL, _many(
        [f"{ns}:1", f"{ns}:2", f"{ns}:1"], [1, 1, 2, 2, 3, 3],
        [f"{ns}:a", f"{ns}:b", f"{ns}:a", f"{ns}:b", f"{ns}:b", f"{ns}:a"],
        [-5, 5, -7, 7, 5, -5]))).all()
    assert [(r.i, r.created, r.same_content) for r in rows] == [
        (1, True, True), (2, True, True), (3, False, True)]
    assert rows[2].entry_id == rows[0].entry_id
    assert await session.scalar(text(
        "SELECT count(*) FROM ledger_posting p JOIN ledger_entry e ON e.id = p.entry_id "
        "WHERE e.idempotency_key LIKE :ns"), {"ns": f"{ns}:%"}) == 4
    other = (await session.execute(_POST_MANY_SQL, _many(
        [f"{ns}:2"], [1, 1], [f"{ns}:a", f"{ns}:b"], [-1, 1]))).one()
    assert (other.created, other.same_content) == (False, False)


@pytest.mark.parametrize(("entry_of", "amounts", "detail"), [
    ([1, 1, 2], [-5, 5, 3], "postings"),  # entry 2 has one posting
    ([1, 1, 2, 2], [-5, 5, 0, 0], "amount"),
    ([1, 1, 2, 2], [-5, 5, -3, 4], "total"),
    ([1, 1, 2], [-5, 5], "postings"),  # arrays of unequal lengths
])
async def test_the_database_s_many_posting_refuses_an_unbalanced_entry_among_others(
    session: AsyncSession, entry_of: list[int], amounts: list[int], detail: str,
) -> None:
    from sqlalchemy.exc import DBAPIError

    ns = fresh()
    codes = [f"{ns}:{n}" for n in range(len(entry_of))]
    await session.execute(text("SAVEPOINT refused"))
    with pytest.raises(DBAPIError) as raised:
        await session.execute(_POST_MANY_SQL, _many([f"{ns}:1", f"{ns}:2"], entry_of, codes,
                                                    amounts))
    await session.execute(text("ROLLBACK TO SAVEPOINT refused"))
    error = raised.value.orig.__cause__  # type: ignore[union-attr]
    assert (error.sqlstate, error.detail) == ("LD001", detail)  # type: ignore[union-attr]
    assert await session.scalar(text(
        "SELECT count(*) FROM ledger_entry WHERE idempotency_key LIKE :ns"),
        {"ns": f"{ns}:%"}) == 0
