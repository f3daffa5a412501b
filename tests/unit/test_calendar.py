"""Send days of the month: day numbers beyond a month's length, 'last', leap years."""

from __future__ import annotations

from datetime import date

import pytest

from cobro.domain.actions import ActionType, ScheduledAction, due_occurrence
from cobro.domain.calendar import MonthDay, day_in_month, month_day_dates, next_month_day


@pytest.mark.parametrize(
    ("year", "month", "day", "expected"),
    [
        (2026, 4, 31, date(2026, 4, 30)),  # 31 in a 30-day month
        (2026, 4, 30, date(2026, 4, 30)),
        (2027, 2, "last", date(2027, 2, 28)),
        (2028, 2, "last", date(2028, 2, 29)),  # leap year
        (2027, 2, 29, date(2027, 2, 28)),
        (2028, 2, 29, date(2028, 2, 29)),
        (2027, 2, 30, date(2027, 2, 28)),
        (2026, 12, 31, date(2026, 12, 31)),
        (2026, 1, 1, date(2026, 1, 1)),
    ],
)
def test_send_day_falls_on_the_month_s_last_day_when_beyond_it(
    year: int, month: int, day: MonthDay, expected: date
) -> None:
    assert day_in_month(year, month, day) == expected


@pytest.mark.parametrize(
    ("days", "start", "end", "expected"),
    [
        ([20, "last"], date(2027, 2, 1), date(2027, 2, 28), [date(2027, 2, 20), date(2027, 2, 28)]),
        ([20, "last"], date(2028, 2, 1), date(2028, 2, 29), [date(2028, 2, 20), date(2028, 2, 29)]),
        (
            [1, 15, 28],  # three days in one month
            date(2026, 3, 1),
            date(2026, 3, 31),
            [date(2026, 3, 1), date(2026, 3, 15), date(2026, 3, 28)],
        ),
        ([31, "last"], date(2026, 4, 1), date(2026, 4, 30), [date(2026, 4, 30)]),  # one date
        (
            [30, 31],
            date(2027, 2, 1),
            date(2027, 3, 31),
            [date(2027, 2, 28), date(2027, 3, 30), date(2027, 3, 31)],
        ),
        ([5], date(2026, 12, 6), date(2027, 1, 5), [date(2027, 1, 5)]),  # across the year
    ],
)
def test_month_day_dates(
    days: list[MonthDay], start: date, end: date, expected: list[date]
) -> None:
    assert month_day_dates(days, start, end) == expected


def test_a_send_day_outside_1_to_31_is_refused() -> None:
    with pytest.raises(ValueError, match="1-31 or 'last'"):
        day_in_month(2026, 1, 32)


def test_task_due_day_is_the_next_such_day_of_the_month() -> None:
    assert next_month_day(date(2026, 1, 25), 10) == date(2026, 2, 10)
    assert next_month_day(date(2026, 1, 5), 10) == date(2026, 1, 10)
    assert next_month_day(date(2027, 2, 1), 31) == date(2027, 2, 28)


ACTION = ScheduledAction("a", "a", ActionType.MESSAGE, (20, "last"), "s", title="t", text="x")


def test_action_runs_on_its_day_and_not_again() -> None:
    assert due_occurrence(ACTION, date(2027, 2, 20), date(2027, 2, 19), 3) == date(2027, 2, 20)
    assert due_occurrence(ACTION, date(2027, 2, 21), date(2027, 2, 20), 3) is None
    assert due_occurrence(ACTION, date(2027, 2, 28), date(2027, 2, 27), 3) == date(2027, 2, 28)


def test_a_missed_send_day_is_done_late_once_within_the_limit() -> None:
    assert due_occurrence(ACTION, date(2027, 2, 22), date(2027, 2, 18), 3) == date(2027, 2, 20)
    assert due_occurrence(ACTION, date(2027, 2, 24), date(2027, 2, 18), 3) is None
