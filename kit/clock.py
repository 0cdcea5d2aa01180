"""Time: instants in UTC, calendar days and cutoffs in Europe/Paris."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

from kit.errors import InvalidInput

PARIS = ZoneInfo("Europe/Paris")

# The bounds of every date and instant the service accepts from outside (API, pages, CLI): no
# cheque, programme or redemption predates the scheme, and nothing is planned more than
# FUTURE_MARGIN ahead. A value outside is refused with `date_out_of_range` (422), so an
# operator's typo (0001-01-01, 9999-12-31) never reaches a computation that overflows or a
# column that stores -infinity.
EARLIEST_DAY = date(2000, 1, 1)
FUTURE_MARGIN = timedelta(days=20 * 365 + 5)  # twenty years


class DateOutOfRange(InvalidInput):
    code = "date_out_of_range"
    message = "La date doit être comprise entre le 1er janvier 2000 et dans vingt ans au plus."


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
    """00:00 in Paris on `day`, as an aware UTC datetime (DateOutOfRange at the ends of the
    calendar, where the instant has no UTC representation)."""
    try:
        return datetime.combine(day, time(0, 0), tzinfo=PARIS).astimezone(UTC)
    except OverflowError as exc:
        raise DateOutOfRange(value=day.isoformat()) from exc


def latest_day(now: datetime | None = None) -> date:
    return paris_day(now or utcnow()) + FUTURE_MARGIN


def check_day(day: date, *, now: datetime | None = None) -> date:
    """`day` if it lies within the accepted bounds, else DateOutOfRange."""
    if not EARLIEST_DAY <= day <= latest_day(now):
        raise DateOutOfRange(value=day.isoformat())
    return day


def as_aware(instant: datetime) -> datetime:
    """A naive instant is read as Paris time (the scheme's clock)."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=PARIS)


def check_instant(instant: datetime, *, now: datetime | None = None) -> datetime:
    """`instant` if it lies within the accepted bounds (read as Paris time when naive), else
    DateOutOfRange. Compared as aware values: no conversion that could overflow."""
    aware = as_aware(instant)
    earliest = datetime.combine(EARLIEST_DAY, time(0, 0), tzinfo=PARIS)
    latest = datetime.combine(latest_day(now), time(0, 0), tzinfo=PARIS)
    if not earliest <= aware <= latest:
        raise DateOutOfRange(value=instant.isoformat())
    return instant


# The one bounded type of every calendar day and instant accepted from outside.
Day = Annotated[date, AfterValidator(check_day)]
Instant = Annotated[datetime, AfterValidator(check_instant)]


def first_of_month_cutoff(now: datetime | None = None) -> datetime:
    """The default clearing cutoff: the first day of the current month, 00:00 Paris."""
    today = paris_day(now or utcnow())
    return paris_midnight(today.replace(day=1))


def end_of_year(day: date) -> date:
    return date(day.year, 12, 31)


def end_of_january_next(day: date) -> date:
    return date(day.year + 1, 1, 31)


__all__ = [
    "EARLIEST_DAY",
    "FUTURE_MARGIN",
    "PARIS",
    "DateOutOfRange",
    "Day",
    "Instant",
    "as_aware",
    "check_day",
    "check_instant",
    "latest_day",
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
