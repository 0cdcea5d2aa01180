"""Calendar days and cutoffs are Paris days, whatever the UTC instant and the season."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.clock import (
    end_of_january_next,
    end_of_year,
    first_of_month_cutoff,
    paris_day,
    paris_midnight,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_half_past_eleven_utc_on_31_january_is_1_february_in_paris() -> None:
    assert paris_day(utc(2025, 1, 31, 23, 30)) == date(2025, 2, 1)
    assert paris_day(utc(2025, 1, 31, 22, 59)) == date(2025, 1, 31)


def test_in_summer_paris_is_two_hours_ahead() -> None:
    assert paris_day(utc(2025, 7, 14, 21, 59)) == date(2025, 7, 14)
    assert paris_day(utc(2025, 7, 14, 22, 0)) == date(2025, 7, 15)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        paris_day(datetime(2025, 1, 31, 23, 30))


@pytest.mark.parametrize(
    ("day", "midnight_utc"),
    [
        (date(2025, 1, 15), utc(2025, 1, 14, 23)),  # winter: UTC+1
        (date(2025, 3, 30), utc(2025, 3, 29, 23)),  # spring-forward day starts in winter time
        (date(2025, 3, 31), utc(2025, 3, 30, 22)),  # first full day of summer time: UTC+2
        (date(2025, 10, 26), utc(2025, 10, 25, 22)),  # fall-back day starts in summer time
        (date(2025, 10, 27), utc(2025, 10, 26, 23)),
    ],
)
def test_paris_midnight_follows_daylight_saving(day: date, midnight_utc: datetime) -> None:
    assert paris_midnight(day) == midnight_utc
    assert paris_midnight(day).utcoffset() == timedelta(0)


def test_the_days_of_clock_changes_last_23_and_25_hours() -> None:
    spring = paris_midnight(date(2025, 3, 31)) - paris_midnight(date(2025, 3, 30))
    autumn = paris_midnight(date(2025, 10, 27)) - paris_midnight(date(2025, 10, 26))
    assert (spring, autumn) == (timedelta(hours=23), timedelta(hours=25))


def test_the_instants_around_the_clock_changes_fall_on_the_right_paris_day() -> None:
    # 02:00 → 03:00 on 30 March 2025 (01:00 UTC); 03:00 → 02:00 on 26 October (01:00 UTC).
    assert paris_day(utc(2025, 3, 30, 0, 59)) == date(2025, 3, 30)
    assert paris_day(utc(2025, 3, 30, 21, 59)) == date(2025, 3, 30)
    assert paris_day(utc(2025, 3, 30, 22, 0)) == date(2025, 3, 31)
    assert paris_day(utc(2025, 10, 26, 22, 59)) == date(2025, 10, 26)
    assert paris_day(utc(2025, 10, 26, 23, 0)) == date(2025, 10, 27)


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2199, 12, 30)))
def test_paris_midnight_starts_the_paris_day_it_names(day: date) -> None:
    start = paris_midnight(day)
    assert paris_day(start) == day
    assert paris_day(start - timedelta(microseconds=1)) == day - timedelta(days=1)
    assert paris_midnight(day + timedelta(days=1)) - start in {
        timedelta(hours=23),
        timedelta(hours=24),
        timedelta(hours=25),
    }


def test_the_first_of_month_cutoff_is_paris_midnight_on_the_first() -> None:
    assert first_of_month_cutoff(utc(2025, 3, 15, 12)) == utc(2025, 2, 28, 23)
    # In summer the 1st begins at 22:00 UTC the day before.
    assert first_of_month_cutoff(utc(2025, 7, 14, 12)) == utc(2025, 6, 30, 22)


def test_the_first_of_month_cutoff_uses_the_paris_month_not_the_utc_month() -> None:
    # Still 31 January in UTC, already 1 February in Paris: February's cutoff.
    assert first_of_month_cutoff(utc(2025, 1, 31, 23, 30)) == utc(2025, 1, 31, 23)
    # One instant earlier it is still January in Paris.
    assert first_of_month_cutoff(utc(2025, 1, 31, 22, 59)) == utc(2024, 12, 31, 23)


def test_the_first_of_month_cutoff_on_the_first_itself_is_that_very_midnight() -> None:
    assert first_of_month_cutoff(utc(2025, 4, 30, 22)) == utc(2025, 4, 30, 22)
    assert first_of_month_cutoff(utc(2025, 4, 30, 21, 59, 59)) == utc(2025, 3, 31, 22)


def test_the_first_of_month_cutoff_defaults_to_now() -> None:
    before = datetime.now(UTC)
    cutoff = first_of_month_cutoff()
    after = datetime.now(UTC)
    # Either instant may be the one used, should a month begin between the two readings.
    assert cutoff in {first_of_month_cutoff(before), first_of_month_cutoff(after)}
    assert cutoff <= after


def test_default_validity_ends_on_31_december_and_redemption_on_31_january_next() -> None:
    assert end_of_year(date(2025, 3, 4)) == date(2025, 12, 31)
    assert end_of_january_next(date(2025, 3, 4)) == date(2026, 1, 31)
