"""The clock of the command-line shell and the servers: the real one, or the one
``COBRO_NOW`` sets, which runs on from the time given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cobro.errors import WorkspaceError
from cobro.workspace import clock_held, clock_start, hold_clock, utcnow


def test_without_the_variable_the_clock_is_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COBRO_NOW", raising=False)
    before = datetime.now(UTC)
    now = utcnow()
    assert before <= now <= datetime.now(UTC) and now.tzinfo is UTC


def test_the_clock_set_starts_at_the_time_given_and_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COBRO_NOW", "2031-05-06T09:15:00+02:00")
    first = utcnow()
    start = datetime(2031, 5, 6, 7, 15, tzinfo=UTC)
    assert start <= first < start + timedelta(seconds=5)
    assert utcnow() >= first  # it never goes back


def test_a_value_that_is_not_an_aware_time_is_one_line() -> None:
    with pytest.raises(WorkspaceError, match="'soon' is not a time"):
        clock_start("soon")
    with pytest.raises(WorkspaceError, match="has no UTC offset"):
        clock_start("2031-05-06 09:15")
    assert clock_start(" 2031-05-06T09:15:00Z ") == datetime(2031, 5, 6, 9, 15, tzinfo=UTC)


def test_a_process_started_later_by_another_goes_on_with_that_ones_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COBRO_NOW", raising=False)
    assert clock_held() is None  # the real clock: nothing to hand on
    pinned = "2031-05-06T09:16:00+02:00"  # a time no other test pins: its own clock
    monkeypatch.setenv("COBRO_NOW", pinned)
    start = datetime(2031, 5, 6, 7, 16, tzinfo=UTC)
    # The clock of a server process that started an hour ago, as it hands it on to a
    # worker (``cobro serve --workers``) it starts now.
    server = (pinned, start - (datetime.now(UTC) - timedelta(hours=1)))
    try:
        hold_clock(server)
        now = utcnow()
        assert clock_held() == server  # and on to the processes this one starts
    finally:
        hold_clock(None)
    an_hour_on = start + timedelta(hours=1)
    assert an_hour_on <= now < an_hour_on + timedelta(seconds=5)  # not 07:16 again
    assert utcnow() < start + timedelta(seconds=5)  # its own clock, once nothing is held
