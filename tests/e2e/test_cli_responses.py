"""Disputes and promises to pay through the command line: recorded by staff, listed,
resolved, and what the next runs then send; bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from .cli import clock_set_to, copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_responses.py")

TODAY = date.today()  # `promises add` checks the promised date against the clock


@pytest.fixture(scope="module", autouse=True)
def clock() -> Iterator[None]:
    """The program's clock reads TODAY, as the data does."""
    with clock_set_to(TODAY):
        yield


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def cobro(ws: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cobro(ws, *args, ok=ok)


def as_json(ws: Path, *args: str) -> Any:
    return json.loads(cobro(ws, *args, "--json").stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """B1 owes F-001 (20 days overdue) and F-002 (10 days overdue); B2 owes G-001."""
    root = tmp_path_factory.mktemp("cli-responses") / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    (root / "customers.csv").write_text(
        "external_id,name,kind,language,email\n"
        "B1,Ferretería Norte S.L.,business,es,pagos@norte.example\n"
        "B2,Atlantic Tools Ltd,business,en,ap@atlantic.example\n",
        encoding="utf-8",
    )
    (root / "receivables.csv").write_text(
        "external_id,customer,number,due_on,currency,amount\n"
        f"R1,B1,F-001,{day(-20)},EUR,1200.00\n"
        f"R2,B1,F-002,{day(-10)},EUR,300.50\n"
        f"R3,B2,G-001,{day(-10)},EUR,99.00\n",
        encoding="utf-8",
    )
    cobro(root, "import", "customers", "customers.csv")
    cobro(root, "import", "receivables", "receivables.csv")
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A copy of ``built`` for the test."""
    return copy_workspace(built, tmp_path / "acme")


def claims(ws: Path, customer: str) -> list[tuple[str, list[str]]]:
    """(phase, items listed) of the debtor's claims that went out."""
    found = as_json(ws, "history", "--customer", customer)
    return [(c["phase"], [i["number"] for i in c["items"]]) for c in found if c["status"] == "sent"]


def test_a_dispute_taken_by_phone_opens_a_task_and_its_item_is_left_out_until_rejected(
    ws: Path,
) -> None:
    shown = cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "Goods never arrived")
    assert "dispute 1 opened" in shown.stdout
    [task] = as_json(ws, "tasks", "list")
    assert (
        task["customer"] == "B1" and task["message"] == "Item F-001 disputed: Goods never arrived"
    )
    [listed] = as_json(ws, "disputes", "list", "--open")
    assert (listed["id"], listed["item"], listed["status"], listed["source"]) == (
        1,
        "F-001",
        "open",
        "staff",
    )
    assert "Goods never arrived" in cobro(ws, "disputes", "list").stdout

    cobro(ws, "run", "--date", day(0))
    assert claims(ws, "B1") == [("b2b/01", ["F-002"])]  # F-001 left out
    statement = cobro(ws, "account", "B1").stdout.splitlines()
    assert any("F-001" in line and "overdue 20 d, disputed" in line for line in statement)

    shown = cobro(ws, "disputes", "resolve", "1", "--reject", "--note", "delivery note signed")
    assert "claimed again" in shown.stdout
    assert as_json(ws, "disputes", "list", "--open") == []
    [resolved] = as_json(ws, "disputes", "list", "--customer", "B1")
    assert (resolved["status"], resolved["resolution"]) == ("rejected", "delivery note signed")
    cobro(ws, "run", "--date", day(8))  # phase 02 a full gap after 01
    assert claims(ws, "B1")[-1] == ("b2b/02", ["F-001", "F-002"])


def test_an_accepted_dispute_keeps_its_item_out_and_an_attachment_is_kept(ws: Path) -> None:
    (ws / "albaran.pdf").write_bytes(b"%PDF-1.4 delivery note")
    cobro(ws, "disputes", "open", "B1", "R1", "--reason", "Wrong price", "--attach", "albaran.pdf")
    [listed] = as_json(ws, "disputes", "list")
    assert listed["item"] == "F-001" and listed["attachment"] == "albaran.pdf"
    assert "accepted" in cobro(ws, "disputes", "resolve", "1", "--accept").stdout
    cobro(ws, "run", "--date", day(0))
    cobro(ws, "run", "--date", day(8))
    assert [items for _, items in claims(ws, "B1")] == [["F-002"], ["F-002"]]
    account = as_json(ws, "account", "B1")
    paused = {x["number"]: x["paused"] for x in account["statement"]}
    assert paused == {"F-001": "dispute accepted", "F-002": None}


def test_a_promise_taken_by_phone_pauses_its_items_until_the_grace_then_breaks(
    ws: Path,
) -> None:
    shown = cobro(ws, "promises", "add", "B1", "--all", "--by", day(5), "--note", "by transfer")
    assert f"paused until {day(8)}" in shown.stdout  # the starter's grace: 3 days
    [made] = as_json(ws, "promises", "list", "--open")
    assert [i["number"] for i in made["items"]] == ["F-001", "F-002"]
    assert (made["promised_on"], made["paused_until"], made["note"]) == (
        day(5),
        day(8),
        "by transfer",
    )
    assert "promised for" in cobro(ws, "account", "B1").stdout

    cobro(ws, "run", "--date", day(0))
    assert claims(ws, "B1") == []  # everything B1 owes is promised
    assert [c[0] for c in claims(ws, "B2")] == ["b2b/01"]  # others are claimed as usual
    cobro(ws, "run", "--date", day(8))  # the last day of the grace
    assert claims(ws, "B1") == []
    assert "promises broken 1" in cobro(ws, "run", "--date", day(9)).stdout
    assert claims(ws, "B1") == [("b2b/01", ["F-001", "F-002"])]  # one claim
    assert as_json(ws, "promises", "list", "--open") == []
    [broken] = as_json(ws, "promises", "list", "--customer", "B1")
    assert broken["status"] == "broken"

    history = as_json(ws, "history", "--customer", "B2")
    assert [e["kind"] for e in history[0]["events"]] == ["delivery"]


def test_history_shows_the_disputes_and_promises_that_followed_a_claim(ws: Path) -> None:
    cobro(ws, "run", "--date", day(-1))
    cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "Not ordered")
    cobro(ws, "promises", "add", "B1", "--items", "F-002", "--by", day(3))
    [claim] = as_json(ws, "history", "--customer", "B1")
    kinds = [e["kind"] for e in claim["events"]]
    assert kinds == ["delivery", "dispute", "promise"]
    assert claim["events"][1]["item"] == "F-001" and claim["events"][2]["items"] == ["F-002"]
    table = cobro(ws, "history", "--customer", "B1").stdout
    assert "dispute #1 of F-001 (staff): Not ordered" in table
    assert f"promise #1 (staff) to pay F-002 by {day(3)}" in table
    account = cobro(ws, "account", "B1").stdout
    assert "dispute #1 of F-001" in account and "Promises to pay (1)" in account


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["disputes", "open", "B9", "F-001", "--reason", "x"], "no debtor 'B9'"),
        (["disputes", "open", "B1", "F-999", "--reason", "x"], "the debtor has no item 'F-999'"),
        (["disputes", "open", "B1", "G-001", "--reason", "x"], "the debtor has no item 'G-001'"),
        (["disputes", "open", "B1", "F-001", "--reason", "  "], "--reason: a dispute needs a"),
        (["disputes", "open", "B1", "F-001", "--reason", "x", "--attach", "no.pdf"], "no.pdf"),
        (["disputes", "resolve", "1"], "give one of --accept or --reject"),
        (["disputes", "resolve", "1", "--accept", "--reject"], "give one of --accept or"),
        (["disputes", "resolve", "7", "--reject"], "no dispute 7"),
        (["promises", "add", "B1", "--by", day(3)], "give either --items N1,N2 or --all"),
        (["promises", "add", "B1", "--all", "--items", "F-001", "--by", day(3)], "either"),
        (["promises", "add", "B1", "--all", "--by", "soon"], "--by: 'soon' is not a date"),
        (["promises", "add", "B1", "--all", "--by", day(-1)], f"--by: {day(-1)} has passed"),
        (["promises", "add", "B1", "--all", "--by", day(31)], "more than 30 days ahead"),
        (["promises", "add", "B1", "--items", "F-001,F-9", "--by", day(3)], "no item 'F-9'"),
        (["promises", "add", "B9", "--all", "--by", day(3)], "no debtor 'B9'"),
    ],
)
def test_bad_input_is_one_line_naming_what_and_exit_2(
    ws: Path, args: list[str], problem: str
) -> None:
    proc = cobro(ws, *args, ok=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert problem in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_what_cannot_be_disputed_or_promised_twice_is_refused(ws: Path) -> None:
    cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "x")
    again = cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "y", ok=False)
    assert again.returncode == 2 and "item F-001 is already disputed" in again.stderr
    cobro(ws, "disputes", "resolve", "1", "--reject")
    twice = cobro(ws, "disputes", "resolve", "1", "--accept", ok=False)
    assert twice.returncode == 2 and "dispute 1 is already rejected" in twice.stderr
    cobro(ws, "promises", "add", "B1", "--items", "F-002", "--by", day(3))
    dup = cobro(ws, "promises", "add", "B1", "--items", "F-002", "--by", day(4), ok=False)
    assert dup.returncode == 2 and f"item F-002 is already promised for {day(3)}" in dup.stderr
    rest = cobro(ws, "promises", "add", "B1", "--all", "--by", day(4))  # F-001 only
    assert "1 item(s)" in rest.stdout
    none = cobro(ws, "promises", "add", "B1", "--all", "--by", day(4), ok=False)
    assert none.returncode == 2 and "no open item that is not disputed or promised" in none.stderr
