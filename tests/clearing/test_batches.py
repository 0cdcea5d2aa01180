"""Closing clearing batches: once per cutoff, every live redemption before it, allocated to the
cent, with statements and ledger entries that add up."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.batches import close_batch, cutoff_instant
from clearing.errors import CutoffInFuture
from clearing.models import Allocation, AllocationPattern, Batch, Statement, StatementLine
from clearing.statements import get_statement
from kit.clock import PARIS, UTC, utcnow
from ledger import service as ledger
from pass_ import redemption
from pass_.enums import DemarcheFamily, FinancerRole
from pass_.models import Cheque
from pass_.tokens import Keyring
from tests.clearing.factories import (
    FinancerSpec,
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing") / "keys")


async def _statements(session: AsyncSession, batch_id: int) -> dict[tuple[str, int], Statement]:
    rows = (await session.scalars(select(Statement).where(Statement.batch_id == batch_id))).all()
    return {(s.kind, s.organisation_id): s for s in rows}


async def _batch_ids_of(session: AsyncSession, redemption_ids: list[int]) -> dict[int, int | None]:
    rows = (await session.execute(text(
        "SELECT id, batch_id FROM redemption WHERE id = ANY(:ids)"),
        {"ids": redemption_ids})).all()
    return dict(rows)  # type: ignore[arg-type]


async def _parts(session: AsyncSession, redemption_id: int) -> dict[int, int]:
    rows = (await session.execute(
        select(AllocationPattern.financer_id, AllocationPattern.amount_cents)
        .join(Allocation, (Allocation.batch_id == AllocationPattern.batch_id)
              & (Allocation.pattern == AllocationPattern.pattern))
        .where(Allocation.redemption_id == redemption_id))).all()
    return dict(rows)  # type: ignore[arg-type]


async def test_closing_the_same_cutoff_again_returns_the_same_batch_and_changes_nothing(
        session, keyring):
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 4)
    site = await make_site(session)
    for i, cheque in enumerate(cheques):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 10 + i))
    cutoff = unique_cutoff()

    first, created = await close_batch(session, cutoff=cutoff, now=utcnow())
    counts = [await session.scalar(select(func.count()).select_from(table))
              for table in (Batch, Statement, StatementLine, Allocation, AllocationPattern)]
    entries = await session.scalar(text("SELECT count(*) FROM ledger_entry"))
    again, created_again = await close_batch(session, cutoff=cutoff, now=utcnow())

    assert created and not created_again
    assert again.id == first.id
    assert first.redemption_count == 4 and first.gross_cents == 4_000
    assert [await session.scalar(select(func.count()).select_from(table))
            for table in (Batch, Statement, StatementLine, Allocation, AllocationPattern)] \
        == counts
    assert await session.scalar(text("SELECT count(*) FROM ledger_entry")) == entries


async def test_concurrent_closes_of_one_cutoff_make_one_batch(sessionmaker, keyring):
    async with sessionmaker() as setup:
        scheme = await make_scheme(setup, keyring)
        cheques = await issue_cheques(setup, scheme, 3)
        site = await make_site(setup)
        for i, cheque in enumerate(cheques):
            await redeem(setup, scheme, site, cheque, at=paris(2024, 1, 5 + i))
        await setup.commit()
    cutoff = unique_cutoff()

    async def close() -> tuple[int, bool]:
        async with sessionmaker() as s:
            batch, created = await close_batch(s, cutoff=cutoff, now=utcnow())
            await s.commit()
            return batch.id, created  # type: ignore[return-value]

    results = await asyncio.gather(close(), close(), close())

    assert len({batch_id for batch_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, True]
    async with sessionmaker() as s:
        batch_id = results[0][0]
        statements = await _statements(s, batch_id)
        assert statements[("site", site.id)].gross_cents == 3_000
        assert await s.scalar(select(func.count()).select_from(Batch)
                              .where(Batch.cutoff == cutoff_instant(cutoff))) == 1


async def test_a_redemption_after_the_cutoff_waits_for_the_next_batch(session, keyring):
    scheme = await make_scheme(session, keyring)
    early, late = await issue_cheques(session, scheme, 2)
    site = await make_site(session)
    january = await redeem(session, scheme, site, early, at=paris(2024, 1, 20))
    cutoff = unique_cutoff(month=2)
    # The minute after the cutoff: already the next period.
    after = await redeem(session, scheme, site, late, at=cutoff + timedelta(minutes=1))

    first, _ = await close_batch(session, cutoff=cutoff, now=utcnow())
    assert await _batch_ids_of(session, [january.id, after.id]) == {january.id: first.id,
                                                                     after.id: None}
    second, _ = await close_batch(session, cutoff=unique_cutoff(month=3), now=utcnow())

    assert second.id != first.id
    assert await _batch_ids_of(session, [january.id, after.id]) == {january.id: first.id,
                                                                     after.id: second.id}
    assert (await _statements(session, first.id))[("site", site.id)].gross_cents == 1_000
    assert (await _statements(session, second.id))[("site", site.id)].gross_cents == 1_000
    assert second.period_start == first.cutoff


async def test_a_cutoff_in_the_future_is_refused(session):
    now = utcnow()
    with pytest.raises(CutoffInFuture) as refused:
        await close_batch(session, cutoff=now + timedelta(minutes=1), now=now)
    assert refused.value.code == "cutoff_in_future"
    assert await session.scalar(select(func.count()).select_from(Batch)
                                .where(Batch.cutoff > now)) == 0


async def test_a_day_as_cutoff_means_midnight_in_paris():
    from datetime import date, datetime

    assert cutoff_instant(date(2024, 7, 1)) == datetime(2024, 6, 30, 22, 0, tzinfo=UTC)
    assert cutoff_instant(date(2024, 2, 1)) == datetime(2024, 1, 31, 23, 0, tzinfo=UTC)
    assert cutoff_instant(datetime(2024, 2, 1, 0, 0)) == datetime(2024, 2, 1, tzinfo=PARIS)


async def test_reversed_redemptions_are_left_out_of_the_batch(session, keyring):
    scheme = await make_scheme(session, keyring)
    kept_cheque, reversed_cheque = await issue_cheques(session, scheme, 2)
    site = await make_site(session)
    kept = await redeem(session, scheme, site, kept_cheque, at=paris(2024, 1, 8))
    undone = await redeem(session, scheme, site, reversed_cheque, at=paris(2024, 1, 9))
    await redemption.reverse_redemption(session, site_id=site.id, redemption_id=undone.id,  # type: ignore[arg-type]
                                        now=paris(2024, 1, 9, 11))

    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())

    assert await _batch_ids_of(session, [kept.id, undone.id]) == {kept.id: batch.id,
                                                                   undone.id: None}
    statement = (await _statements(session, batch.id))[("site", site.id)]
    assert (statement.gross_cents, statement.cheque_count) == (1_000, 1)
    assert await session.scalar(select(Cheque.status).where(Cheque.id == reversed_cheque.id)) \
        == "active"
    assert await _parts(session, undone.id) == {}


async def test_each_batch_adds_up_sites_redemptions_and_financers_to_the_same_total(
        session, keyring):
    one = await make_scheme(session, keyring, site_commission_bp=300, financer_fee_bp=100)
    two = await make_scheme(session, keyring, face_value_cents=750, state_share_bp=3000)
    sites = [await make_site(session, commune_insee=c) for c in ("35238", "35047", "35238")]
    cheques = [(one, c) for c in await issue_cheques(session, one, 7)]
    cheques += [(two, c) for c in await issue_cheques(session, two, 6)]
    families = [None, DemarcheFamily.caf, DemarcheFamily.impots]
    for i, (scheme, cheque) in enumerate(cheques):
        await redeem(session, scheme, sites[i % 3], cheque, at=paris(2024, 1, 3 + i % 20, 9, i),
                     family=families[i % 3])

    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())

    redeemed = await session.scalar(text(
        "SELECT sum(value_cents) FROM redemption WHERE batch_id = :b"), {"b": batch.id})
    allocated = await session.scalar(text("""
        SELECT sum(p.amount_cents) FROM allocation a JOIN allocation_pattern p
        ON p.batch_id = a.batch_id AND p.pattern = a.pattern WHERE a.batch_id = :b"""),
        {"b": batch.id})
    statements = await _statements(session, batch.id)
    site_gross = sum(s.gross_cents for (kind, _), s in statements.items() if kind == "site")
    financer_gross = sum(s.gross_cents for (kind, _), s in statements.items()
                         if kind == "financer")
    ours = 7 * 1000 + 6 * 750
    assert redeemed == allocated == site_gross == financer_gross == batch.gross_cents
    assert sum(statements[("site", s.id)].gross_cents for s in sites) == ours
    assert sum(statements[("financer", o.id)].gross_cents
               for scheme in (one, two) for o in scheme.financers) == ours
    # Each entry balances (the ledger refuses otherwise); per batch the clearing entries move
    # the same total out of the sites' payable accounts and into the financers' commitments.
    for (kind, org), statement in statements.items():
        key = f"batch:{batch.id}:{kind}:{org}"
        entry = await ledger.get_entry(session, key)
        assert entry is not None and sum(p.amount_cents for p in entry.postings) == 0
        account = f"site:{org}:payable" if kind == "site" else f"financer:{org}:commitment"
        moved = sum(p.amount_cents for p in entry.postings if p.account == account)
        assert abs(moved) == statement.gross_cents
    for site in sites:  # all cleared: nothing left to clear
        assert await ledger.balance(session, f"site:{site.id}:payable") == 0


async def test_worked_scenario_face_value_1003_weights_1_2_and_an_operator_running_out(
        session, keyring):
    """Three financers in declared order: the State (50 %), the Département (local, weight 1)
    and the CAF (operator for the `caf` family, weight 2, only 10.00 € committed). Cheques of
    10.03 €, a 2.5 % site commission and a 1.5 % financer fee.

    For every cheque the State pays floor(1003 × 5000 / 10000) = 501 and rest = 502.
      r1 caf, site A    → P = {CAF}: CAF 502.                           CAF left 1000 − 502 = 498
      r2 impôts, site A → P = all non-state, 502 split 1:2: 502/3 = 167.33, 1004/3 = 334.67;
                          floors 167 + 334 = 501, the leftover cent to the largest remainder
                          (CAF, 2/3): Département 167, CAF 335.        CAF left 498 − 335 = 163
      r3 caf, site A    → P = {CAF}, 502 capped at its 163; the excess 339 goes to the other
                          non-state financer with commitment left: Département 339. CAF left 0
      r4 caf, site B    → (same instant as r3, recorded after it: clearing order is by id)
                          CAF has nothing left, so P = all non-state; 502 split 1:2 gives CAF
                          335, capped at 0, and its excess to the Département: 502.
      r5 no family, B   → P = all non-state: the Département again pays 502 (CAF exhausted).
    """
    scheme = await make_scheme(
        session, keyring, face_value_cents=1003, state_share_bp=5000,
        site_commission_bp=250, financer_fee_bp=150,
        financers=[FinancerSpec(FinancerRole.state, 10_000, name="État — ANCT"),
                   FinancerSpec(FinancerRole.local, 10_000, weight=1,
                                name="Département d'Ille-et-Vilaine"),
                   FinancerSpec(FinancerRole.operator, 1_000, weight=2,
                                families=(DemarcheFamily.caf,), name="CAF d'Ille-et-Vilaine")])
    state, departement, caf = (scheme.financer_id(i) for i in range(3))
    a = await make_site(session, commune_insee="35238")
    b = await make_site(session, commune_insee="35047")
    c1, c2, c3, c4, c5, c6 = await issue_cheques(session, scheme, 6)
    r1 = await redeem(session, scheme, a, c1, at=paris(2024, 1, 10), family=DemarcheFamily.caf)
    r2 = await redeem(session, scheme, a, c2, at=paris(2024, 1, 11),
                      family=DemarcheFamily.impots)
    same = paris(2024, 1, 12)
    r3 = await redeem(session, scheme, a, c3, at=same, family=DemarcheFamily.caf)
    r4 = await redeem(session, scheme, b, c4, at=same, family=DemarcheFamily.caf)
    r5 = await redeem(session, scheme, b, c5, at=paris(2024, 1, 13))
    cutoff = unique_cutoff(month=2)
    r6 = await redeem(session, scheme, a, c6, at=cutoff + timedelta(days=3),
                      family=DemarcheFamily.caf)

    batch, _ = await close_batch(session, cutoff=cutoff, now=utcnow())

    assert await _parts(session, r1.id) == {state: 501, caf: 502}
    assert await _parts(session, r2.id) == {state: 501, departement: 167, caf: 335}
    assert await _parts(session, r3.id) == {state: 501, caf: 163, departement: 339}
    assert await _parts(session, r4.id) == {state: 501, departement: 502}
    assert await _parts(session, r5.id) == {state: 501, departement: 502}
    statements = await _statements(session, batch.id)

    def figures(kind: str, org: int) -> tuple[int, int, int, int]:
        s = statements[(kind, org)]
        return s.gross_cents, s.fee_cents, s.net_cents, s.cheque_count

    # Site A: 3 × 1003 = 3009; 3009 × 2.5 % = 75.225 → 75; net 2934.
    assert figures("site", a.id) == (3009, 75, 2934, 3)
    # Site B: 2 × 1003 = 2006; 2006 × 2.5 % = 50.15 → 50; net 1956.
    assert figures("site", b.id) == (2006, 50, 1956, 2)
    # State: 5 × 501 = 2505; 2505 × 1.5 % = 37.575 → 38; due 2543.
    assert figures("financer", state) == (2505, 38, 2543, 5)
    # Département: 167 + 339 + 502 + 502 = 1510; 1510 × 1.5 % = 22.65 → 23; due 1533.
    assert figures("financer", departement) == (1510, 23, 1533, 4)
    # CAF: 502 + 335 + 163 = 1000, all its commitment; 1000 × 1.5 % = 15; due 1015.
    assert figures("financer", caf) == (1000, 15, 1015, 3)
    # Σ sites 3009 + 2006 = 5015 = Σ financers 2505 + 1510 + 1000 = 5 × 1003.
    assert batch.gross_cents == 5015

    # The CAF's lines, by programme, family and site commune; its commitment is used up.
    read = await get_statement(session, statements[("financer", caf)].id, organisation_id=None)
    assert [(line.demarche_family, line.commune_insee, line.cheque_count, line.amount_cents)
            for line in read.lines] == [("caf", "35238", 2, 665), ("impots", "35238", 1, 335)]
    [standing] = read.programmes
    assert (standing.commitment_cents, standing.cumulative_cents, standing.remaining_cents,
            standing.beyond_commitment_cents) == (1000, 1000, 0, 0)
    dep_lines = (await get_statement(session, statements[("financer", departement)].id,
                                     organisation_id=None)).lines
    assert [(line.demarche_family, line.commune_insee, line.amount_cents)
            for line in dep_lines] == [(None, "35047", 502), ("caf", "35047", 502),
                                      ("caf", "35238", 339), ("impots", "35238", 167)]

    # The journal: the site's redeemed value leaves `payable` for `payout` and the fees; the
    # CAF's allocations call its commitment (now 0) and it owes them plus its fee.
    assert sorted((await ledger.get_entry(
        session, f"batch:{batch.id}:site:{a.id}")).postings) == sorted(  # type: ignore[union-attr]
        [(f"site:{a.id}:payable", -3009), (f"site:{a.id}:payout", 2934),
         ("operator:fees", 75)])
    assert await ledger.balance(session, f"financer:{caf}:commitment") == 0
    assert await ledger.balance(session, f"financer:{caf}:receivable") == -1015
    assert await ledger.balance(session, f"financer:{state}:commitment") == -(10_000 - 2505)

    # The next batch starts from what is left: the CAF has nothing, so r6 (caf) falls on the
    # Département: State 501, Département 502.
    second, _ = await close_batch(session, cutoff=unique_cutoff(month=3), now=utcnow())
    assert await _parts(session, r6.id) == {state: 501, departement: 502}
    assert ("financer", caf) not in await _statements(session, second.id)


async def test_a_reversal_committed_during_the_claim_is_left_out_and_the_close_retried(
        sessionmaker, keyring):
    async with sessionmaker() as setup:
        scheme = await make_scheme(setup, keyring)
        site = await make_site(setup)
        done = [await redeem(setup, scheme, site, cheque, at=paris(2024, 1, 10, 10, i))
                for i, cheque in enumerate(await issue_cheques(setup, scheme, 3))]
        await setup.commit()
    cutoff = unique_cutoff()

    async with sessionmaker() as reversing, sessionmaker() as closing:
        # The reversal holds the redemption's row lock, not yet committed…
        await redemption.reverse_redemption(reversing, site_id=site.id,  # type: ignore[arg-type]
                                            redemption_id=done[1].id,
                                            now=paris(2024, 1, 10, 11))
        closer = await closing.scalar(text("SELECT pg_backend_pid()"))
        close = asyncio.ensure_future(close_batch(closing, cutoff=cutoff, now=utcnow()))
        # …so the close reads the three redemptions and its claim waits on that lock.
        async with sessionmaker() as watcher:
            deadline = asyncio.get_running_loop().time() + 30
            while not await watcher.scalar(text(
                    "SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                    {"pid": closer}):
                assert not close.done(), close
                assert asyncio.get_running_loop().time() < deadline, "the claim never waited"
                await asyncio.sleep(0.02)  # a poll interval under a deadline
        await reversing.commit()
        batch, created = await close
        await closing.commit()

    assert created and batch.redemption_count >= 2
    async with sessionmaker() as check:
        assert await _batch_ids_of(check, [r.id for r in done]) == {
            done[0].id: batch.id, done[1].id: None, done[2].id: batch.id}
        statement = (await _statements(check, batch.id))[("site", site.id)]
        assert (statement.gross_cents, statement.cheque_count) == (2_000, 2)
