"""Commands that take a row's id refuse one no database can hold (PostgreSQL's integer
columns stop at 2**31 - 1) with one line and exit 2, before opening the database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .cli import run_cobro

pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_ids.py")

TOO_BIG = "99999999999"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ids") / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["disputes", "resolve", TOO_BIG, "--accept"],
        ["tasks", "done", TOO_BIG],
        ["resend", TOO_BIG],
        ["requeue", "--claim", TOO_BIG],
        ["webhooks", "redeliver", TOO_BIG],
        ["disputes", "resolve", "0", "--accept"],
    ],
)
def test_an_id_no_database_can_hold_is_refused_with_exit_2(ws: Path, args: list[str]) -> None:
    proc = run_cobro(ws, *args, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is not in the range 1<=x<=2147483647" in proc.stderr, proc.stderr
