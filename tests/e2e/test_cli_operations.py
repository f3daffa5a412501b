"""The command line as cron and scripts see it: exit codes, one-line errors that name the
debtor, output that stays whole when piped, history by send date, a private workspace."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from .cli import copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_operations.py")

CUSTOMERS = """\
external_id,name,kind,language,email
B1,Ferretería Norte S.L.,business,es,pagos@norte.example
B2,Atlantic Tools Ltd,business,en,
"""
RECEIVABLES = """\
external_id,customer,number,due_on,currency,amount
R1,B1,F-001,2026-03-01,EUR,1200.00
R2,B2,F-002,2026-03-01,EUR,300.50
"""
WIDTH_80 = {"COLUMNS": "80"}  # what a pipe or cron job gets when nothing says otherwise


def cobro(ws: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cobro(ws, *args, ok=ok, env=WIDTH_80)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a user gets: exit 2, a single `error:` line, never a traceback."""
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def closed_port() -> int:
    """A local port nobody listens on: an SMTP server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_smtp(ws: Path, host: str, port: int = 587) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    lines = [
        f"      host: {host}" if line.startswith("      host: ") else line
        for line in text.splitlines()
    ]
    lines = [f"      port: {port}" if line.startswith("      port: ") else line for line in lines]
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("cli-operations")
    root = parent / "acme"
    run_cobro(parent, "init", str(root))
    (root / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (root / "receivables.csv").write_text(RECEIVABLES, encoding="utf-8")
    cobro(root, "import", "customers", "customers.csv")
    cobro(root, "import", "receivables", "receivables.csv")
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


# -- exit codes ---------------------------------------------------------------------


def test_a_run_that_could_not_send_exits_1_and_names_each_debtor_it_failed(ws: Path) -> None:
    proc = cobro(ws, "run", "--date", "2026-02-22", ok=False)
    assert proc.returncode == 1, proc.stderr
    assert "sent 1, failed 1" in proc.stdout
    (failure,) = [line.strip() for line in proc.stderr.splitlines() if "B2" in line]
    assert failure.startswith("B2 Atlantic Tools Ltd: b2b/00 of 2026-02-22 not sent: ")
    assert "not sent: 1 failed" in proc.stderr

    as_json = cobro(ws, "run", "--date", "2026-02-22", "--json", ok=False)
    assert as_json.returncode == 0  # nothing was due any more: the failure is in the past
    assert json.loads(as_json.stdout)["failed"] == 0


def test_a_run_whose_messages_are_all_retrying_exits_1_and_so_does_dispatch(ws: Path) -> None:
    (ws / "customers.csv").write_text(
        CUSTOMERS.replace("Ltd,business,en,", "Ltd,business,en,ap@atlantic.example"),
        encoding="utf-8",
    )
    cobro(ws, "import", "customers", "customers.csv")
    set_smtp(ws, "127.0.0.1", closed_port())  # the mail server is down

    proc = cobro(ws, "run", "--date", "2026-02-22", "--json", ok=False)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["sent"], report["failed"], report["retrying"]) == (0, 0, 2)
    assert "2 to be retried" in proc.stderr

    # Dispatch runs on today's date: the run's day (2026-02-22) is long past its retry time
    # (72 hours), so the claims fail for good, each named, and dispatch exits 1 too.
    again = cobro(ws, "dispatch", ok=False)
    assert again.returncode == 1 and "failed 2" in again.stdout
    assert "not sent: 2 failed" in again.stderr and "Atlantic" in again.stderr


def test_an_event_whose_notices_cannot_go_out_is_recorded_and_exits_1(ws: Path) -> None:
    set_smtp(ws, "127.0.0.1", closed_port())
    event = {"id": "e1", "customer": "B1", "subscription": "S1", "plan": "Oro", "price": "20"}
    created = ("event", "post", "subscription.created", "--data", "-", "--json")
    run_cobro(ws, *created, stdin=json.dumps(event), env=WIDTH_80)  # nothing to send yet
    charge = {"id": "e2", "subscription": "S1", "charge": "CH1", "amount": "20"}
    args = ("event", "post", "charge.succeeded", "--data", "-", "--json")  # receipt + notice
    proc = run_cobro(ws, *args, stdin=json.dumps(charge), ok=False, env=WIDTH_80)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["sent"] == 0 and "to be retried" in proc.stderr
    again = run_cobro(ws, *args, stdin=json.dumps(charge), env=WIDTH_80)  # recorded: duplicate
    assert json.loads(again.stdout)["duplicate"] is True


def test_an_invalid_or_incomplete_configuration_stops_a_run_with_exit_2(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    good = cfg.read_text(encoding="utf-8")
    cfg.write_text(good.replace("email: cobros@demo.example", "email: nope"), encoding="utf-8")
    assert cobro(ws, "run", "--date", "2026-02-22", ok=False).returncode == 2

    no_sender = good.replace(
        "    email: cobros@demo.example\n    name: Cobros Distribuciones Demo\n", ""
    )
    cfg.write_text(no_sender.replace("  sender:", "  # sender:"), encoding="utf-8")
    proc = cobro(ws, "run", "--date", "2026-02-22", ok=False)
    assert proc.returncode == 2 and "messages stay in the outbox" in proc.stderr


# -- no traceback for a user's mistake ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("cobro.db", "is not a URL"),
        ("mysql://app:s3cret@localhost/cobro", "Cobro does not run on 'mysql'"),
        ("oracle+cx://app@db/x", "Cobro does not run on 'oracle+cx'"),
        ("postgresql://app:s3cret@127.0.0.1:{closed}/cobro", "cannot open the database"),
        ("postgresql://nobody:s3cret@127.0.0.1:5432/cobro", "cannot open the database"),
        ("postgresql://app@host.invalid/cobro", "cannot open the database"),
        ("sqlite:////nonexistent/dir/cobro.db", "cannot create the database file"),
    ],
)
def test_a_bad_database_url_is_one_line_exit_2_with_the_password_masked(
    ws: Path, url: str, says: str
) -> None:
    url = url.format(closed=closed_port())
    for how in (["--db", url], []):
        env = {} if how else {"COBRO_DATABASE_URL": url}
        proc = run_cobro(ws, *how, "contacts", "list", ok=False, env={**WIDTH_80, **env})
        line = one_line_error(proc)
        assert says in line
        assert "s3cret" not in proc.stderr


def test_a_missing_workspace_or_file_is_one_line_exit_2(ws: Path, tmp_path: Path) -> None:
    assert "cobro init" in one_line_error(cobro(tmp_path / "nowhere", "run", ok=False))
    assert "nope.csv" in one_line_error(cobro(ws, "import", "customers", "nope.csv", ok=False))
    posted = cobro(ws, "event", "post", "x", "--data", "nope.json", ok=False)
    assert "nope.json" in one_line_error(posted)
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    line = one_line_error(cobro(tmp_path, "init", str(tmp_path / "a-file" / "ws"), ok=False))
    assert "cannot create the workspace" in line


def test_a_database_from_a_newer_cobro_is_one_line_exit_2(ws: Path) -> None:
    with closing(sqlite3.connect(ws / "cobro.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    line = one_line_error(cobro(ws, "contacts", "list", ok=False))
    assert "schema cannot be brought up to date" in line and "9999" in line


# -- piped output ---------------------------------------------------------------------


def test_piped_output_keeps_long_lines_whole(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace(
            "    cost: 0.0005                 # per message, in the company currency\n",
            "    cost: 0.0005\n  push:\n    subject: mailto:cobros@demo.example\n",
        ),
        encoding="utf-8",
    )
    made = cobro(ws, "push", "keys").stdout.splitlines()
    key = json.loads(cobro(ws, "push", "keys", "--json").stdout)["public_key"]
    assert len(key) > 80 and made[-1] == key
    assert cobro(ws, "push", "keys").stdout.splitlines()[-1] == key

    long_id = "CUSTOMER-" + "X" * 90
    (ws / "bad.csv").write_text(
        f"external_id,customer,number,due_on,currency,amount\nR9,{long_id},F-9,2026-03-01,EUR,1\n",
        encoding="utf-8",
    )
    proc = cobro(ws, "import", "receivables", "bad.csv", ok=False)
    (problem,) = [line for line in proc.stderr.splitlines() if long_id in line]
    assert problem.startswith("bad.csv:2: customer: ")  # where, what and the id, on one line


# -- history by send date -------------------------------------------------------------


def test_history_selects_claims_by_the_day_they_went_out_and_shows_both_dates(
    ws: Path,
) -> None:
    set_smtp(ws, "127.0.0.1", closed_port())
    cobro(ws, "run", "--date", "2026-02-22", ok=False)  # B1's b2b/00 cannot go out today
    set_smtp(ws, "capture")
    cobro(ws, "run", "--date", "2026-02-25")  # ...and goes out three days later

    def history(*args: str) -> list[dict[str, object]]:
        found = json.loads(cobro(ws, "history", "--customer", "B1", "--json", *args).stdout)
        assert isinstance(found, list)
        return found

    (claim,) = history()
    assert (claim["date"], claim["sent_on"]) == ("2026-02-22", "2026-02-25")
    assert str(claim["sent_at"]).startswith("2026-02-25T08:00:00")  # 09:00 in Madrid
    assert history("--since", "2026-02-25", "--until", "2026-02-25") == [claim]
    assert history("--until", "2026-02-24") == []
    assert history("--since", "2026-02-26") == []

    table = cobro(ws, "history", "--customer", "B1").stdout
    assert "planned" in table and "sent" in table
    row = next(line for line in table.splitlines() if "B1" in line)
    assert row.index("2026-02-22") < row.index("2026-02-25")


# -- check ----------------------------------------------------------------------------


def test_check_suggests_the_nearest_key_and_reports_a_misspelt_one_once(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    good = cfg.read_text(encoding="utf-8")
    cfg.write_text(good.replace("  timezone: Europe", "  timezon: Europe"), encoding="utf-8")
    proc = cobro(ws, "check", "--json", ok=False)
    assert proc.returncode == 2
    (problem,) = json.loads(proc.stdout)["problems"]
    assert problem["field"] == "company.timezon"
    assert problem["problem"] == "unknown key; did you mean `timezone`?"

    # `name` is required: misspelt, it is one problem (the misspelling), not two
    cfg.write_text(good.replace("  name: Distribuciones", "  nmae: Distribuciones"), "utf-8")
    proc = cobro(ws, "check", ok=False)
    assert proc.stderr.splitlines()[0].endswith("company.nmae: unknown key; did you mean `name`?")
    assert "1 problem(s) found" in proc.stderr


# -- a private workspace --------------------------------------------------------------


def test_init_writes_a_gitignore_and_secrets_and_database_are_owner_only(ws: Path) -> None:
    ignored = (ws / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert {
        ".cobro-secret",
        ".cobro-evidence-key",
        "vapid_private.pem",
        "cobro.db*",
        "mail/",
    } <= set(ignored)
    for name in ("cobro.db", ".cobro-secret"):
        assert stat.S_IMODE((ws / name).stat().st_mode) == 0o600, name
