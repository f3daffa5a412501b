"""Calendars: send instants in the company's time zone, days of the month, the hours and
days each channel may write to a debtor, public holidays and business days."""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
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


# -- quiet hours, holidays and business days -----------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
_SEARCH_DAYS = 400  # how far ahead an opening is looked for (a window closed all year: none)


class Holidays(Protocol):
    def __contains__(self, day: object) -> bool: ...


NO_HOLIDAYS: frozenset[date] = frozenset()


@dataclass(frozen=True)
class Window:
    """When a channel may write to a debtor: from ``start`` to ``end`` (local time of the
    debtor) on ``days`` (0 = Monday)."""

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))


@dataclass(frozen=True)
class SendCalendar:
    """The company's sending calendar: public holidays (no message at all) and the window
    of each channel that has one (a channel without a window sends at any hour of a day
    that is not a holiday)."""

    holidays: Holidays = NO_HOLIDAYS
    windows: Mapping[str, Window] = field(default_factory=dict)
    closes_on_holidays: frozenset[str] = frozenset({"email", "sms", "push", "voice"})

    @property
    def restricts(self) -> bool:
        """Whether anything is ever held back (a company without holidays or windows)."""
        return bool(self.windows) or self.holidays is not NO_HOLIDAYS

    def _open_day(self, channel: str, day: date) -> bool:
        if channel in self.closes_on_holidays and day in self.holidays:
            return False
        window = self.windows.get(channel)
        return window is None or day.weekday() in window.days

    def opening(self, channel: str, at: datetime, timezone: str) -> datetime | None:
        """None when ``channel`` may send at ``at`` to a debtor in ``timezone``; else the UTC
        instant it opens next (an instant a window never reaches: ``datetime.max``)."""
        tz = ZoneInfo(timezone)
        local = at.astimezone(tz)
        window = self.windows.get(channel)
        for k in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=k)
            if not self._open_day(channel, day):
                continue
            if window is None:
                if k == 0:
                    return None
                return datetime.combine(day, time(0), tz).astimezone(UTC)
            opens = datetime.combine(day, window.start, tz)
            closes = datetime.combine(day, window.end, tz)
            if k == 0 and local >= closes:
                continue
            if local < opens:
                return opens.astimezone(UTC)
            return None
        return datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DueDates:
    """How due dates meet the calendar: with ``move`` a due date on a holiday or on a day
    that is not a business day counts as due on the next business day."""

    move: bool = False
    holidays: Holidays = NO_HOLIDAYS
    business_days: frozenset[int] = frozenset(range(5))

    @property
    def moves(self) -> bool:
        """Whether any due date counts as due on another day."""
        return self.move and bool(self.business_days)

    def business(self, day: date) -> bool:
        return day.weekday() in self.business_days and day not in self.holidays

    def effective(self, due: date) -> date:
        """The day ``due`` counts as due on."""
        if not self.move or not self.business_days:
            return due
        for _ in range(_SEARCH_DAYS):
            if self.business(due):
                return due
            due += timedelta(days=1)
        return due

    def due_by(self, day: date) -> date:
        """The latest stored due date that counts as due on or before ``day``."""
        if not self.move or not self.business_days:
            return day
        for _ in range(_SEARCH_DAYS):
            if self.business(day):
                return day
            day -= timedelta(days=1)
        return day

    def due_exactly(self, day: date) -> tuple[date, date] | None:
        """The stored due dates (first, last) that count as due exactly on ``day``; None
        when none does (``day`` is not a business day)."""
        if not self.move or not self.business_days:
            return day, day
        if not self.business(day):
            return None
        return self.due_by(day - timedelta(days=1)) + timedelta(days=1), day
