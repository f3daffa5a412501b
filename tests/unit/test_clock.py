"""The clock of the command-line shell and the servers: the real one, or the one
``COBRO_NOW`` sets, which runs on from the time given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cobro.errors import WorkspaceError
from cobro.workspace import clock_start, utcnow


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
