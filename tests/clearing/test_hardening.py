"""Issue 17, items 1–3 and issue 16, item 6: bounded dates, cutoffs never before the last
batch's, no empty batch, a preview before closing, an operator's expiry that cannot run on an
impossible day or silently expire a large share of the live cheques, and a whole batch's
transfers recorded at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from clearing.batches import close_batch, cutoff_instant, preview_batch
from clearing.errors import (
    BatchEmpty,
    CutoffBeforeLast,
    ExpiryDayInFuture,
    ExpiryDayTooOld,
    ExpiryNeedsConfirmation,
    NothingToTransfer,
)
from clearing.expiry import operator_expiry, preview_expiry
from clearing.payments import batch_transfer_reference, record_batch_transfers
from kit.clock import DateOutOfRange, check_day, paris_day, paris_midnight, utcnow
from pass_.tokens import Keyring
from tests.clearing.factories import issue_cheques, make_scheme, make_site, paris, redeem


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-hardening") / "keys")


@pytest.mark.parametrize("value", [
    date(1, 1, 1), date(9999, 12, 31), date(1999, 12, 31),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(1, 1, 1, 0, 0),  # naive: Paris time, before year 1 in UTC
])
def test_an_impossible_cutoff_is_out_of_range_not_an_overflow(value: date) -> None:
    with pytest.raises(DateOutOfRange) as refused:
        cutoff_instant(value)
    assert refused.value.code == "date_out_of_range"


def test_paris_midnight_at_the_ends_of_the_calendar_is_out_of_range() -> None:
    # 0001-01-01 00:00 in Paris is before year 1 in UTC: refused, not an OverflowError.
    with pytest.raises(DateOutOfRange):
        paris_midnight(date.min)


def test_the_bounded_day_accepts_the_scheme_years_and_a_stated_margin() -> None:
    now = utcnow()
    assert check_day(date(2000, 1, 1), now=now) == date(2000, 1, 1)
    assert check_day(paris_day(now) + timedelta(days=365 * 20), now=now)
    with pytest.raises(DateOutOfRange):
        check_day(paris_day(now) + timedelta(days=365 * 21), now=now)


async def _clear_everything(session, when: datetime) -> None:  # type: ignore[no-untyped-def]
    """Close a batch taking whatever other tests left unbatched, so this test sees its own."""
    try:
        await close_batch(session, cutoff=when, now=utcnow())
    except BatchEmpty:
        pass


async def test_a_cutoff_before_the_last_batch_is_refused_and_late_ones_go_to_the_next(
        session, keyring):
    now = utcnow()
    scheme = await make_scheme(session, keyring)
    site = await make_site(session)
    first, late = await issue_cheques(session, scheme, 2)
    await redeem(session, scheme, site, first, at=paris(2024, 3, 4))
    await _clear_everything(session, now - timedelta(minutes=20))

    # A redemption recorded late (an offline scan made before the last cutoff).
    await redeem(session, scheme, site, late, at=paris(2024, 3, 5))
    with pytest.raises(CutoffBeforeLast) as refused:
        await close_batch(session, cutoff=now - timedelta(minutes=30), now=now)
    assert refused.value.code == "cutoff_before_last_batch"
    with pytest.raises(CutoffBeforeLast):
        await preview_batch(session, cutoff=now - timedelta(minutes=30), now=now)

    batch, created = await close_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert created and batch.redemption_count == 1 and batch.gross_cents == late.value_cents


async def test_a_batch_with_nothing_to_clear_is_refused_and_nothing_is_written(
        session, keyring):
    now = utcnow()
    await _clear_everything(session, now - timedelta(minutes=20))
    batches = await session.scalar(text("SELECT count(*) FROM batch"))

    preview = await preview_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert (preview.redemption_count, preview.gross_cents) == (0, 0)
    with pytest.raises(BatchEmpty) as refused:
        await close_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert "Aucun encaissement" in refused.value.message
    assert await session.scalar(text("SELECT count(*) FROM batch")) == batches


async def test_the_preview_shows_what_the_close_then_takes(session, keyring):
    now = utcnow()
    await _clear_everything(session, now - timedelta(minutes=20))
    scheme = await make_scheme(session, keyring)
    site = await make_site(session)
    cheques = await issue_cheques(session, scheme, 5)
    for cheque in cheques:
        await redeem(session, scheme, site, cheque, at=paris(2024, 3, 6))

    preview = await preview_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert preview.existing_batch_id is None
    batch, _ = await close_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert (preview.redemption_count, preview.gross_cents) == (5, 5 * cheques[0].value_cents)
    assert (batch.redemption_count, batch.gross_cents) == (
        preview.redemption_count, preview.gross_cents)
    again = await preview_batch(session, cutoff=now - timedelta(minutes=10), now=now)
    assert again.existing_batch_id == batch.id


async def test_a_whole_batch_of_transfers_is_recorded_at_once_held_sites_left(
        session, keyring):
    now = utcnow()
    await _clear_everything(session, now - timedelta(minutes=20))
    scheme = await make_scheme(session, keyring)
    paid_site, held_site = await make_site(session), await make_site(session)
    await session.execute(text("UPDATE organisation SET iban = NULL WHERE id = :id"),
                          {"id": held_site.id})
    a, b, c = await issue_cheques(session, scheme, 3)
    await redeem(session, scheme, paid_site, a, at=paris(2024, 3, 7))
    await redeem(session, scheme, paid_site, b, at=paris(2024, 3, 7))
    await redeem(session, scheme, held_site, c, at=paris(2024, 3, 7))
    batch, _ = await close_batch(session, cutoff=now - timedelta(minutes=10), now=now)

    done = await record_batch_transfers(session, batch_id=batch.id, sent_on=paris_day(now),
                                        now=now)

    assert [d.organisation_id for d in done] == [paid_site.id]
    rows = (await session.execute(text(
        "SELECT organisation_id, status, payment_reference, paid_cents, net_cents "
        "FROM statement WHERE batch_id = :b AND kind = 'site'"), {"b": batch.id})).all()
    by_site = {r[0]: r for r in rows}
    assert by_site[paid_site.id][1:4] == (
        "paid", batch_transfer_reference(batch.id, done[0].statement_id),
        by_site[paid_site.id][4])
    assert by_site[held_site.id][1] == "held"
    with pytest.raises(NothingToTransfer):
        await record_batch_transfers(session, batch_id=batch.id, sent_on=paris_day(now),
                                     now=now)


async def test_the_operator_expiry_day_may_not_be_after_today_nor_far_back(session):
    now = utcnow()
    today = paris_day(now)
    for day, error in ((date(9999, 12, 31), ExpiryDayInFuture),
                       (today + timedelta(days=1), ExpiryDayInFuture),
                       (today - timedelta(days=8), ExpiryDayTooOld),
                       (date(2000, 1, 1), ExpiryDayTooOld)):
        with pytest.raises(error):
            await operator_expiry(session, today=day, now=now, confirm=True,
                                  confirm_share_percent=100)
    # A catch-up day within the week is allowed.
    run = await operator_expiry(session, today=today - timedelta(days=7), now=now,
                                confirm=True, confirm_share_percent=100)
    assert run.today == today - timedelta(days=7)


async def test_an_expiry_touching_a_large_share_of_live_cheques_needs_confirmation(
        session, keyring):
    now = utcnow()
    today = paris_day(now)
    # Everything already past its day expires first, so the figures below are this test's.
    await operator_expiry(session, today=today, now=now, confirm=True,
                          confirm_share_percent=100)
    scheme = await make_scheme(session, keyring)  # redeemable until 31 January 2025
    await issue_cheques(session, scheme, 3)

    preview = await preview_expiry(session, today=today, now=now, confirm_share_percent=10)
    assert preview.cheques == 3 and preview.needs_confirmation
    with pytest.raises(ExpiryNeedsConfirmation) as refused:
        await operator_expiry(session, today=today, now=now, confirm=False,
                              confirm_share_percent=10)
    assert refused.value.details["cheques"] == 3
    assert await session.scalar(text(
        "SELECT count(*) FROM cheque WHERE programme_id = :p AND status = 'expired'"),
        {"p": scheme.id}) == 0

    run = await operator_expiry(session, today=today, now=now, confirm=True,
                                confirm_share_percent=10)
    assert run.cheques == 3
