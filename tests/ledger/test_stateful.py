"""A Hypothesis state machine drives the journal with random posts, retries, conflicting keys,
reversals, batches and concurrent posts from separate connections, and checks after every step
that the database agrees with a model kept in Python.

The machine is synchronous; it drives its own event loop in a thread (with its own engine), so
it never touches pytest-asyncio's session loop.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import make_engine
from ledger import service as ledger
from ledger.errors import IdempotencyConflict
from ledger.sealer import seal_once
from ledger.service import NewEntry, Posting

T = TypeVar("T")
ACCOUNTS = 4


class LoopThread:
    """An event loop running in its own thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


amounts = st.integers(min_value=-10**7, max_value=10**7).filter(lambda a: a != 0)
# Legs on account indexes; a closing leg on `closing` makes the entry balance.
legs_st = st.lists(st.tuples(st.integers(0, ACCOUNTS - 1), amounts), min_size=1, max_size=3
                   ).filter(lambda legs: sum(a for _, a in legs) != 0)
closing_st = st.integers(0, ACCOUNTS - 1)


def machine(runner: LoopThread, sm: async_sessionmaker[AsyncSession]) -> type:
    class LedgerMachine(RuleBasedStateMachine):
        keys = Bundle("keys")

        @initialize()
        def start(self) -> None:
            # A namespace per run: the model starts at zero whatever the database holds.
            self.ns = f"sm:{uuid.uuid4().hex[:10]}"
            self.accounts = [f"{self.ns}:acc{i}" for i in range(ACCOUNTS)]
            self.balances: Counter[str] = Counter()
            self.entries: dict[str, tuple[str, tuple[Posting, ...]]] = {}
            self.ids: dict[str, int] = {}
            self.counter = 0

        # -- helpers ---------------------------------------------------------------------
        def new_key(self) -> str:
            self.counter += 1
            return f"{self.ns}:e{self.counter}"

        def postings(self, legs: list[tuple[int, int]], closing: int) -> list[Posting]:
            out = [Posting(self.accounts[i], a) for i, a in legs]
            out.append(Posting(self.accounts[closing], -sum(a for _, a in legs)))
            return out

        def record(self, entry: ledger.Entry) -> None:
            assert entry.created
            assert entry.key not in self.entries
            self.entries[entry.key] = (entry.kind, tuple(sorted(entry.postings)))
            self.ids[entry.key] = entry.id
            for p in entry.postings:
                self.balances[p.account] += p.amount_cents

        async def post_one(self, key: str, postings: list[Posting],
                           kind: str = "transfer") -> ledger.Entry:
            async with sm() as s, s.begin():
                return await ledger.post(s, key=key, kind=kind, postings=postings)

        # -- rules -----------------------------------------------------------------------
        @rule(target=keys, legs=legs_st, closing=closing_st)
        def post(self, legs: list[tuple[int, int]], closing: int) -> str:
            entry = runner.run(self.post_one(self.new_key(), self.postings(legs, closing)))
            self.record(entry)
            return entry.key

        @rule(key=keys, seed=st.integers(0, 2**16))
        def retry_with_same_content(self, key: str, seed: int) -> None:
            kind, postings = self.entries[key]
            shuffled = list(postings)
            random.Random(seed).shuffle(shuffled)
            entry = runner.run(self.post_one(key, shuffled, kind))
            assert not entry.created and entry.id == self.ids[key]

        @rule(key=keys, legs=legs_st, closing=closing_st)
        def reuse_key_for_other_content(self, key: str, legs: list[tuple[int, int]],
                                        closing: int) -> None:
            postings = self.postings(legs, closing)
            kind = self.entries[key][0]
            if tuple(sorted(postings)) == self.entries[key][1]:
                kind = kind + "_other"  # make sure the content differs
            try:
                runner.run(self.post_one(key, postings, kind))
            except IdempotencyConflict:
                pass
            else:
                raise AssertionError("a key reused for other content was accepted")

        @rule(target=keys, batch=st.lists(st.tuples(legs_st, closing_st, st.booleans()),
                                          min_size=2, max_size=6))
        def concurrent_posts(self, batch: list[tuple[list[tuple[int, int]], int, bool]]) -> Any:
            """Separate connections at once, on shared accounts; `repeat` resends the
            previous request (same key, same content), as a client retrying would."""
            requests: list[tuple[str, list[Posting]]] = []
            for legs, closing, repeat in batch:
                if repeat and requests:
                    requests.append(requests[-1])
                else:
                    requests.append((self.new_key(), self.postings(legs, closing)))

            async def all_at_once() -> list[ledger.Entry]:
                return list(await asyncio.gather(*(self.post_one(k, p) for k, p in requests)))

            results = runner.run(all_at_once())
            by_key: dict[str, list[ledger.Entry]] = {}
            for entry in results:
                by_key.setdefault(entry.key, []).append(entry)
            for same in by_key.values():
                assert len({e.id for e in same}) == 1
                assert sum(e.created for e in same) == 1
                self.record(next(e for e in same if e.created))
            return multiple(*by_key)

        @rule(target=keys, amounts_=st.lists(amounts, min_size=2, max_size=5, unique=True))
        def concurrent_conflicting_posts(self, amounts_: list[int]) -> str:
            """One key, different contents, at once: exactly one wins, the others conflict."""
            key = self.new_key()
            a, b = self.accounts[0], self.accounts[1]

            async def attempt(amount: int) -> ledger.Entry | IdempotencyConflict:
                try:
                    return await self.post_one(key, [Posting(a, amount), Posting(b, -amount)])
                except IdempotencyConflict as exc:
                    return exc

            async def all_at_once() -> list[ledger.Entry | IdempotencyConflict]:
                return list(await asyncio.gather(*(attempt(x) for x in amounts_)))

            results = runner.run(all_at_once())
            winners = [r for r in results if isinstance(r, ledger.Entry)]
            assert len(winners) == 1
            assert len(results) - 1 == sum(isinstance(r, IdempotencyConflict) for r in results)
            self.record(winners[0])
            return key

        @rule(target=keys, key=keys)
        def reverse(self, key: str) -> str:
            async def do() -> ledger.Entry:
                async with sm() as s, s.begin():
                    return await ledger.reverse(s, key=f"{key}:rev{self.counter}",
                                                original_key=key, kind="reversal")
            self.counter += 1
            entry = runner.run(do())
            self.record(entry)
            return entry.key

        @rule(target=keys, batch=st.lists(st.tuples(legs_st, closing_st), min_size=1,
                                          max_size=8), retry=st.booleans())
        def post_a_batch(self, batch: list[tuple[list[tuple[int, int]], int]],
                         retry: bool) -> Any:
            news = [NewEntry(key=self.new_key(), kind="batch", postings=self.postings(lg, c))
                    for lg, c in batch]

            async def do() -> list[ledger.Entry]:
                async with sm() as s, s.begin():
                    return await ledger.post_many(s, news)

            entries = runner.run(do())
            for entry in entries:
                self.record(entry)
            if retry:
                again = runner.run(do())
                assert [e.id for e in again] == [e.id for e in entries]
                assert not any(e.created for e in again)
            return multiple(*(e.key for e in entries))

        @rule()
        def seal(self) -> None:
            runner.run(seal_once(sm))

        # -- invariants ------------------------------------------------------------------
        @invariant()
        def balances_match_the_model(self) -> None:
            async def read() -> dict[str, int]:
                async with sm() as s:
                    return await ledger.balances(s, f"{self.ns}:")
            db = runner.run(read())
            assert {a: db.get(a, 0) for a in self.accounts} == {
                a: self.balances[a] for a in self.accounts}
            assert set(db) <= set(self.accounts)
            assert sum(db.values()) == 0

        @invariant()
        def every_entry_balances_and_no_key_has_two_entries(self) -> None:
            async def read() -> list[Any]:
                async with sm() as s:
                    return list((await s.execute(text("""
                        SELECT e.idempotency_key, e.id, count(p.id), sum(p.amount_cents)
                        FROM ledger_entry e JOIN ledger_posting p ON p.entry_id = e.id
                        WHERE starts_with(e.idempotency_key, :ns)
                        GROUP BY e.id"""), {"ns": f"{self.ns}:"})).all())
            rows = runner.run(read())
            assert all(n >= 2 and total == 0 for _k, _id, n, total in rows)
            assert sorted((k, i) for k, i, _n, _t in rows) == sorted(self.ids.items())

    return LedgerMachine


def test_the_journal_agrees_with_a_model_under_random_posts_retries_and_concurrency(
    database_url: str,
) -> None:
    runner = LoopThread()
    engine = make_engine(database_url, pool_size=8, max_overflow=4)
    try:
        sm = async_sessionmaker(engine, expire_on_commit=False)
        run_state_machine_as_test(machine(runner, sm), settings=settings(
            max_examples=12, stateful_step_count=20, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        runner.run(engine.dispose())
        runner.close()
