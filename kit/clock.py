"""Time: instants in UTC, calendar days and cutoffs in Europe/Paris."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def utcnow() -> datetime:
    return datetime.now(UTC)


def paris_day(instant: datetime) -> date:
    """The calendar day in Paris at `instant` (23:30 UTC on 31 January is 1 February)."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime")
    return instant.astimezone(PARIS).date()


def paris_today() -> date:
    return paris_day(utcnow())


def paris_midnight(day: date) -> datetime:
    """00:00 in Paris on `day`, as an aware UTC datetime."""
    return datetime.combine(day, time(0, 0), tzinfo=PARIS).astimezone(UTC)


def first_of_month_cutoff(now: datetime | None = None) -> datetime:
    """The default clearing cutoff: the first day of the current month, 00:00 Paris."""
    today = paris_day(now or utcnow())
    return paris_midnight(today.replace(day=1))


def end_of_year(day: date) -> date:
    return date(day.year, 12, 31)


def end_of_january_next(day: date) -> date:
    return date(day.year + 1, 1, 31)


__all__ = [
    "PARIS",
    "UTC",
    "end_of_january_next",
    "end_of_year",
    "first_of_month_cutoff",
    "paris_day",
    "paris_midnight",
    "paris_today",
    "timedelta",
    "utcnow",
]
