"""``COBRO_NOW`` sets the clock of a command: a day is rehearsed (or a test dated) without
waiting for it; a value that is not a time with an offset is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .cli import run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_clock.py")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clock") / "demo"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    return root


def test_a_run_without_a_date_runs_the_company_day_of_the_clock_set(ws: Path) -> None:
    # 23:30 UTC is half past midnight of the next day in Madrid (the company's time zone).
    shown = run_cobro(ws, "run", env={"COBRO_NOW": "2027-03-01T23:30:00+00:00"}).stdout
    assert "2027-03-02: planned" in shown
    shown = run_cobro(ws, "run", env={"COBRO_NOW": "2027-03-01T22:30:00+00:00"}).stdout
    assert "2027-03-01: planned" in shown


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tomorrow", "COBRO_NOW: 'tomorrow' is not a time; give one like 2026-12-04T10:00"),
        ("2027-03-01T10:00", "COBRO_NOW: '2027-03-01T10:00' has no UTC offset"),
    ],
)
def test_a_clock_that_is_not_a_time_with_an_offset_is_refused(
    ws: Path, value: str, problem: str
) -> None:
    proc = run_cobro(ws, "run", ok=False, env={"COBRO_NOW": value})
    assert proc.returncode == 2 and problem in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "planned" not in proc.stdout
