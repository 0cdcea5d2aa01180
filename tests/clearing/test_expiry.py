"""Expiry of unused cheques (their value back to the programme) and the end of a programme
(credit notes giving each financer its unused commitment)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from clearing.batches import close_batch
from clearing.errors import ProgrammeNotCleared, ProgrammeNotEnded
from clearing.expiry import EXPIRY_GRACE, close_programme, expire_cheques, run_expiry
from kit.clock import utcnow
from ledger import service as ledger
from pass_ import redemption
from pass_.enums import FinancerRole
from pass_.issuance import audit_issuance
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

LAST_DAY = date(2025, 1, 31)  # the factories' redeem_until
# Offline scans made up to LAST_DAY may arrive for EXPIRY_GRACE more days: expiry waits for them.
LAST_OFFLINE_DAY = LAST_DAY + EXPIRY_GRACE  # 7 February
DAY_AFTER = LAST_OFFLINE_DAY + timedelta(days=1)  # the first day cheques expire


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-expiry") / "keys")


async def _statuses(session, scheme) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = (await session.execute(
        select(Cheque.status, Cheque.id).where(Cheque.programme_id == scheme.id))).all()
    counts: dict[str, int] = {}
    for status, _ in rows:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def _entries(session, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    return list((await session.scalars(text(
        "SELECT idempotency_key FROM ledger_entry WHERE starts_with(idempotency_key, :p) "
        "ORDER BY idempotency_key"), {"p": prefix})).all())


async def test_cheques_past_their_last_day_expire_and_their_value_returns_to_available(
        session, keyring):
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 5)
    site = await make_site(session)
    for cheque in cheques[:2]:
        await redeem(session, scheme, site, cheque, at=paris(2024, 3, 1))
    outstanding = f"programme:{scheme.id}:outstanding"
    available = f"programme:{scheme.id}:available"
    before = await ledger.balances(session, [outstanding, available])

    on_last_day = await expire_cheques(session, today=LAST_DAY, now=utcnow(),
                                       programme_id=scheme.id)
    offline_grace = await expire_cheques(session, today=LAST_OFFLINE_DAY, now=utcnow(),
                                         programme_id=scheme.id)
    expired = await expire_cheques(session, today=DAY_AFTER, now=utcnow(),
                                   programme_id=scheme.id)

    assert on_last_day == []  # still redeemable on its last day
    assert offline_grace == []  # a scan made offline on the last day may still arrive
    assert [(e.programme_id, e.cheques, e.value_cents) for e in expired] == \
        [(scheme.id, 3, 3000)]
    assert await _statuses(session, scheme) == {"redeemed": 2, "expired": 3}
    assert await ledger.balances(session, [outstanding, available]) == {
        outstanding: before[outstanding] - 3000, available: before[available] + 3000}
    assert before[outstanding] == 3000
    assert await _entries(session, f"expire:{scheme.id}:") == [f"expire:{scheme.id}:2025-02-08"]
    assert not [d for d in await audit_issuance(session)
                if d.details.get("programme_id") == scheme.id or d.account == outstanding]


async def test_expiring_again_the_same_day_changes_nothing(session, keyring):
    scheme = await make_scheme(session, keyring)
    await issue_cheques(session, scheme, 2)
    await expire_cheques(session, today=DAY_AFTER, now=utcnow(), programme_id=scheme.id)

    again = await expire_cheques(session, today=DAY_AFTER, now=utcnow(),
                                 programme_id=scheme.id)

    assert again == []
    assert await _entries(session, f"expire:{scheme.id}:") == [f"expire:{scheme.id}:2025-02-08"]


async def test_a_cheque_reactivated_after_the_days_expiry_expires_under_a_second_key(
        session, keyring):
    scheme = await make_scheme(session, keyring)
    cheque, other = await issue_cheques(session, scheme, 2)
    site = await make_site(session)
    # Redeemed in the last evening, reversed the next morning (within 24 h, not yet cleared).
    late = await redeem(session, scheme, site, cheque, at=paris(2025, 1, 31, 20))
    await expire_cheques(session, today=DAY_AFTER, now=utcnow(), programme_id=scheme.id)
    await redemption.reverse_redemption(session, site_id=site.id, redemption_id=late.id,  # type: ignore[arg-type]
                                        now=paris(2025, 2, 1, 9))

    second = await expire_cheques(session, today=DAY_AFTER, now=utcnow(),
                                  programme_id=scheme.id)

    assert [(e.cheques, e.value_cents) for e in second] == [(1, 1000)]
    assert await _entries(session, f"expire:{scheme.id}:") == [
        f"expire:{scheme.id}:2025-02-08", f"expire:{scheme.id}:2025-02-08:2"]
    assert await ledger.balance(session, f"programme:{scheme.id}:outstanding") == 0
    assert await _statuses(session, scheme) == {"expired": 2}
    assert other.id != cheque.id


async def test_closing_a_programme_gives_each_financer_its_unused_commitment(session, keyring):
    scheme = await make_scheme(session, keyring, financers=[
        FinancerSpec(FinancerRole.state, 4_000), FinancerSpec(FinancerRole.local, 3_000),
        FinancerSpec(FinancerRole.local, 2_000, weight=2)])
    cheques = await issue_cheques(session, scheme, 6)
    site = await make_site(session)
    for cheque in cheques[:4]:
        await redeem(session, scheme, site, cheque, at=paris(2024, 5, 6))
    await close_batch(session, cutoff=unique_cutoff(month=6), now=utcnow())

    closed = await close_programme(session, programme_id=scheme.id, today=DAY_AFTER,
                                   now=utcnow())

    # 4 cheques of 10 €: the State pays 4 × 500 = 2000; the two local financers split the rest
    # 1:2, 4 × (167 + 333) → 668 and 1332 (500/3 = 166.67: floors 166 + 333, the leftover
    # cent to the largest remainder, the first one's 2/3 against 1/3: 167 and 333).
    state, first, second = (scheme.financer_id(i) for i in range(3))
    notes = dict((await session.execute(text(
        "SELECT organisation_id, net_cents FROM statement WHERE kind = 'credit_note' "
        "AND programme_id = :p"), {"p": scheme.id})).all())
    assert notes == {state: 4_000 - 2_000, first: 3_000 - 668, second: 2_000 - 1_332}
    assert closed.unused_cents == sum(notes.values()) == 9_000 - 4_000
    assert len(closed.credit_note_ids) == 3
    assert await _statuses(session, scheme) == {"redeemed": 4, "expired": 2}
    # Every commitment is settled and the programme's accounts are empty.
    accounts = [f"financer:{f}:commitment" for f in (state, first, second)] + [
        f"programme:{scheme.id}:available", f"programme:{scheme.id}:outstanding"]
    assert set((await ledger.balances(session, accounts)).values()) == {0}
    entries = await _entries(session, f"credit:{scheme.id}:")

    again = await close_programme(session, programme_id=scheme.id, today=date(2025, 3, 1),
                                  now=utcnow())

    assert again.credit_note_ids == closed.credit_note_ids
    assert await _entries(session, f"credit:{scheme.id}:") == entries


async def test_a_programme_does_not_close_before_its_last_day_has_passed(session, keyring):
    scheme = await make_scheme(session, keyring)
    with pytest.raises(ProgrammeNotEnded):
        await close_programme(session, programme_id=scheme.id, today=LAST_DAY, now=utcnow())


async def test_a_programme_waits_for_its_redemptions_to_be_cleared(session, keyring):
    scheme = await make_scheme(session, keyring)
    [cheque] = await issue_cheques(session, scheme, 1)
    await redeem(session, scheme, await make_site(session), cheque, at=paris(2024, 9, 9))

    with pytest.raises(ProgrammeNotCleared):
        await close_programme(session, programme_id=scheme.id, today=DAY_AFTER, now=utcnow())
    run = await run_expiry(session, today=DAY_AFTER, now=utcnow())
    assert scheme.id in run.waiting
    assert scheme.id not in [c.programme_id for c in run.closed]

    await close_batch(session, cutoff=unique_cutoff(month=10), now=utcnow())
    run = await run_expiry(session, today=DAY_AFTER, now=utcnow())
    assert scheme.id in [c.programme_id for c in run.closed]
