"""The weekly limit of calls: how many calls count around an instant, whether one more is
allowed, and when the next one is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cobro.engine.call_limit import WeeklyCalls, next_call

NOW = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def calls_at(*days: float) -> WeeklyCalls:
    calls = WeeklyCalls()
    for d in days:
        calls.made(1, NOW + d * DAY)
    return calls


def test_calls_count_within_7_days_on_either_side_of_the_instant() -> None:
    calls = calls_at(-7, -6.5, 0, 6.9, 7)
    assert calls.count(1, NOW) == 3  # exactly 7 days away counts no more
    assert calls.count(2, NOW) == 0


def test_a_call_is_refused_at_the_limit_and_says_how_many_calls_there_were() -> None:
    calls = calls_at(-3, -1)
    assert calls.refused(1, 3, NOW) is None
    assert calls.refused(1, 2, NOW) == "voice: 2 call(s) within 7 days (call.max_per_7_days)"
    calls.made(1, NOW)  # a call of the batch counts at once
    assert calls.refused(1, 3, NOW) == "voice: 3 call(s) within 7 days (call.max_per_7_days)"


def test_the_next_call_is_allowed_once_enough_of_the_oldest_calls_left_the_7_days() -> None:
    calls = calls_at(-5, -3, -1)
    assert calls.next_allowed(1, 4, NOW) == NOW  # allowed now
    assert calls.next_allowed(1, 3, NOW) == NOW + 2 * DAY  # the oldest has left
    assert calls.next_allowed(1, 2, NOW) == NOW + 4 * DAY  # the two oldest have left
    assert calls.next_allowed(1, 1, NOW) == NOW + 6 * DAY
    assert calls.count(1, calls.next_allowed(1, 2, NOW)) == 1
    # A call after the instant (a pass begun later): allowed once it is 7 days old.
    assert calls_at(1).next_allowed(1, 1, NOW) == NOW + 8 * DAY


def test_the_next_call_is_said_in_the_debtor_s_time_zone() -> None:
    assert next_call(NOW, "Europe/Madrid") == (
        "the next call is allowed from 2026-03-16 09:00 (Europe/Madrid)"
    )
