"""Calendars: send instants in the company's time zone and days of the month."""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def send_instant(on: date, send_time: time, timezone: str) -> datetime:
    """The UTC instant of ``send_time`` on ``on`` in the company's ``timezone``."""
    local = datetime.combine(on, send_time, tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date of ``instant`` in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone)).date()


MonthDay = int | str  # 1..31, or "last"


def day_in_month(year: int, month: int, day: MonthDay) -> date:
    """The date of ``day`` in a month; a day beyond the month's length falls on its last day."""
    last = monthrange(year, month)[1]
    if day == "last":
        return date(year, month, last)
    if not isinstance(day, int) or not 1 <= day <= 31:
        raise ValueError(f"a send day is 1-31 or 'last', not {day!r}")
    return date(year, month, min(day, last))


def month_day_dates(days: Iterable[MonthDay], start: date, end: date) -> list[date]:
    """Every date from ``start`` to ``end`` (inclusive) that is one of ``days`` of its month.

    Two send days that fall on the same date (31 and ``last`` in April) give one date.
    """
    out: set[date] = set()
    year, month = start.year, start.month
    days = list(days)
    while (year, month) <= (end.year, end.month):
        for d in days:
            on = day_in_month(year, month, d)
            if start <= on <= end:
                out.add(on)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted(out)


def next_month_day(after: date, day: MonthDay) -> date:
    """The first date on or after ``after`` that is ``day`` of its month."""
    year, month = after.year, after.month
    for _ in range(13):
        on = day_in_month(year, month, day)
        if on >= after:
            return on
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise AssertionError("unreachable: every month has the day")  # pragma: no cover
