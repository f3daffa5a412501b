"""The command line in a temporary workspace: init, check, import, run, simulate, history."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from .cli import copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli.py")


def cobro(ws: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cobro(ws, *args, ok=ok)


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def caught(ws: Path) -> list[EmailMessage]:
    msgs = []
    for f in sorted((ws / "mail").rglob("*.eml")):
        msg = message_from_bytes(f.read_bytes(), policy=default)
        assert isinstance(msg, EmailMessage)
        msgs.append(msg)
    return msgs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    write(
        root / "customers.csv",
        """
external_id,name,kind,language,email
B1,Ferretería Norte S.L.,business,es,pagos@norte.example
B2,Atlantic Tools Ltd,business,en,ap@atlantic.example
P1,Ana Pérez,person,es,ana@example.com
""",
    )
    write(
        root / "receivables.csv",
        """
external_id,customer,number,due_on,currency,amount
R1,B1,F-001,2026-03-01,EUR,1200.00
R2,B1,F-002,2026-03-01,EUR,300.50
R3,B2,F-003,2026-03-01,USD,99.99
R4,P1,EC-03,2026-03-10,EUR,80.00
""",
    )
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


def test_init_creates_a_valid_commented_workspace(ws: Path) -> None:
    text = (ws / "cobro.yaml").read_text(encoding="utf-8")
    assert text.count("#") > 10
    assert (ws / "templates" / "b2b_01.es.j2").exists()
    assert "OK" in cobro(ws, "check").stdout


def test_check_prints_every_problem_as_file_line_field_problem(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace("when: 15 days after due", "when: soon")
    cfg.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "when: soon" in s)
    proc = cobro(ws, "check", ok=False)
    assert proc.returncode == 2
    assert (
        f"{cfg.resolve()}:{line}: policies.b2b.phases.2.when: 'soon' is not a moment" in proc.stderr
    )


def test_check_reports_a_broken_template_with_its_field(ws: Path) -> None:
    (ws / "templates" / "b2b_02.en.j2").write_text("{% block subject %}{{ oops", encoding="utf-8")
    proc = cobro(ws, "check", ok=False)
    assert "policies.b2b.phases.2.template" in proc.stderr and "b2b_02.en.j2" in proc.stderr


def test_import_reports_bad_rows_with_line_numbers_and_keeps_good_ones(ws: Path) -> None:
    cobro(ws, "import", "customers", "customers.csv")
    bad = write(
        ws / "bad.csv",
        """
external_id,customer,number,due_on,currency,amount
X1,B1,F-100,2026-02-30,EUR,10
X2,B1,F-101,2026-03-05,EUR,10
X3,NOPE,F-102,2026-03-05,EUR,10
""",
    )
    proc = cobro(ws, "import", "receivables", str(bad), "--json", ok=False)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["inserted"] == 1
    lines = sorted(p["line"] for p in summary["rejected"])
    assert lines == [2, 4]


def test_run_history_and_caught_emails_end_to_end(ws: Path) -> None:
    cobro(ws, "import", "customers", "customers.csv")
    cobro(ws, "import", "receivables", "receivables.csv")

    first = json.loads(cobro(ws, "run", "--date", "2026-02-22", "--json").stdout)
    assert {"date", "planned", "sent", "failed", "skipped"} <= first.keys()
    assert (first["planned"], first["sent"]) == (2, 2)  # b2b 00 for B1 and B2

    again = json.loads(cobro(ws, "run", "--date", "2026-02-22", "--json").stdout)
    assert (again["planned"], again["sent"]) == (0, 0)

    write(
        ws / "payments.csv",
        """
external_id,customer,receivable,paid_on,amount,currency
PAY1,B1,R1,2026-03-02,1200.00,EUR
""",
    )
    cobro(ws, "import", "payments", "payments.csv")
    # No run from 02-23 to 03-09: the 7-days-after step of 03-08 is caught up on 03-10,
    # and P1's "3 days before" reminder of 03-07 is not sent late.
    late = json.loads(cobro(ws, "run", "--date", "2026-03-10", "--json").stdout)
    assert (late["planned"], late["sent"]) == (3, 3)  # b2b 01 for B1 and B2, on-due for P1

    history = json.loads(cobro(ws, "history", "--customer", "B1", "--json").stdout)
    assert [c["phase"] for c in history] == ["b2b/00", "b2b/01"]
    assert [i["number"] for i in history[0]["items"]] == ["F-001", "F-002"]
    assert [i["number"] for i in history[1]["items"]] == ["F-002"]  # F-001 was paid
    assert history[1]["deliveries"][0]["recipient"] == "pagos@norte.example"
    assert history[1]["date"] == "2026-03-10"

    mails = caught(ws)
    assert len(mails) == 5
    to_b1 = [m for m in mails if m["To"].addresses[0].addr_spec == "pagos@norte.example"]
    assert [m["Subject"] for m in to_b1] == [
        "Distribuciones Demo S.L.: vencimientos en los próximos 7 días",
        "Distribuciones Demo S.L.: pago vencido",
    ]
    body = to_b1[1].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert [line.split(" ")[1] for line in text.splitlines() if line.startswith("- ")] == ["F-002"]
    assert "300,50\xa0€" in text
    en = next(m for m in mails if m["To"].addresses[0].addr_spec == "ap@atlantic.example")
    en_body = en.get_body(("plain",))
    assert en_body is not None and "$99.99" in en_body.get_content()


def test_simulate_shows_what_would_be_sent_and_changes_nothing(ws: Path) -> None:
    cobro(ws, "import", "customers", "customers.csv")
    cobro(ws, "import", "receivables", "receivables.csv")
    sim = json.loads(
        cobro(ws, "simulate", "--from", "2026-02-20", "--to", "2026-03-20", "--json").stdout
    )
    sent = [(m["date"], m["customer"], m["phase"]) for d in sim["days"] for m in d["messages"]]
    assert ("2026-02-22", "B1", "b2b/00") in sent
    assert ("2026-03-07", "P1", "consumer/before") in sent
    assert all(
        m["channel"] == "email" and m["cost"] != "0" for d in sim["days"] for m in d["messages"]
    )
    assert json.loads(cobro(ws, "history", "--json").stdout) == []
    assert not (ws / "mail").exists()


def test_bad_date_gets_a_clear_error(ws: Path) -> None:
    proc = cobro(ws, "run", "--date", "2026-13-01", ok=False)
    assert proc.returncode == 2
    assert "--date: '2026-13-01' is not a date (YYYY-MM-DD)" in proc.stderr


def test_a_directory_without_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    proc = cobro(tmp_path, "run", ok=False)
    assert "cobro init" in proc.stderr


def test_segments_tasks_and_account_from_the_command_line(ws: Path) -> None:
    cobro(ws, "import", "customers", "customers.csv")
    cobro(ws, "import", "receivables", "receivables.csv")
    seg = json.loads(
        cobro(ws, "segments", "show", "large_b2b_debt", "--date", "2026-04-05", "--json").stdout
    )
    assert seg["members"] == []  # F-001 + F-002 = 1,500.50 EUR overdue: under 5,000
    write(
        ws / "big.csv",
        """
external_id,customer,number,due_on,currency,amount
R9,B1,F-009,2026-03-15,EUR,9000.00
""",
    )
    cobro(ws, "import", "receivables", "big.csv")
    seg = json.loads(
        cobro(ws, "segments", "show", "large_b2b_debt", "--date", "2026-04-05", "--json").stdout
    )
    assert [(m["customer"], m["overdue"]) for m in seg["members"]] == [("B1", "10500.50")]

    cobro(ws, "run", "--date", "2026-04-05")
    tasks = json.loads(cobro(ws, "tasks", "list", "--open", "--json").stdout)
    assert [(x["customer"], x["created_on"]) for x in tasks] == [("B1", "2026-04-05")]
    assert tasks[0]["assignee"] is None  # given to nobody (the dashboard's task board assigns)
    with sqlite3.connect(ws / "cobro.db") as db:
        db.execute("UPDATE tasks SET assignee = 'ana@demo.example'")
    assert "ana@demo.example" in cobro(ws, "tasks", "list").stdout
    assert "done" in cobro(ws, "tasks", "done", str(tasks[0]["id"])).stdout
    assert json.loads(cobro(ws, "tasks", "list", "--open", "--json").stdout) == []
    again = cobro(ws, "tasks", "done", str(tasks[0]["id"]), ok=False)
    assert "already done" in again.stderr

    account = json.loads(cobro(ws, "account", "B1", "--date", "2026-04-05", "--json").stdout)
    assert [x["number"] for x in account["statement"]] == ["F-001", "F-002", "F-009"]
    assert all(x["overdue"] for x in account["statement"])
    assert account["totals"] == {"EUR": "10500.50"}
    assert [x["status"] for x in account["tasks"]] == ["done"]
    assert account["claims"] and account["claims"][0]["customer"] == "B1"
    assert "no debtor" in cobro(ws, "account", "NOPE", ok=False).stderr


def test_check_reports_a_bad_attachment_and_a_bad_send_day(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace(
        "    # attachment: files/condiciones.pdf", "    attachment: files/condiciones.pdf"
    )
    (ws / "files").mkdir()
    (ws / "files" / "condiciones.pdf").write_bytes(b"MZ\x90\x00 not a pdf")
    cfg.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "attachment: files/" in s)
    proc = cobro(ws, "check", ok=False)
    assert (
        f":{line}: actions.2.attachment: attachment 'files/condiciones.pdf' is not really a "
        ".pdf file" in proc.stderr
    )

    cfg.write_text(text.replace("days: [20, last]", "days: [20, 32]"), encoding="utf-8")
    proc = cobro(ws, "check", ok=False)
    assert "actions.0.days.1" in proc.stderr


def test_data_that_looks_like_markup_is_shown_as_it_is(ws: Path) -> None:
    write(
        ws / "odd.csv",
        'external_id,name,kind,email\nX1,"Acme [/] [red]Ltd",business,x1@example.com\n',
    )
    cobro(ws, "import", "customers", "odd.csv")
    assert "Acme [/] [red]Ltd" in cobro(ws, "account", "X1").stdout
    cobro(ws, "segments", "show", "large_b2b_debt")  # renders without a markup error
    shown = cobro(ws, "history").stdout
    assert "No claims recorded" in shown


def test_check_reports_sms_without_its_token_and_push_without_its_key(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace(
        "    cost: 0.0005                 # per message, in the company currency\n",
        "    cost: 0.0005\n"
        "  sms:\n"
        "    account_sid: AC0123456789abcdef0123456789abcdef\n"
        '    sender: "+34910000000"\n'
        "    auth_token_env: GYM_TWILIO_TOKEN\n"
        "  push:\n"
        "    subject: mailto:cobros@demo.example\n",
    )
    cfg.write_text(text, encoding="utf-8")
    proc = cobro(ws, "check", ok=False)
    assert proc.returncode != 0
    assert "channels.sms.auth_token_env: the environment variable GYM_TWILIO_TOKEN" in proc.stderr
    assert "channels.push.private_key_file: no usable VAPID private key" in proc.stderr
    cobro(ws, "push", "keys")
    proc = cobro(ws, "check", ok=False)
    assert "channels.push" not in proc.stderr and "GYM_TWILIO_TOKEN" in proc.stderr


def test_staff_read_action_descriptions_and_task_times_in_company_time(ws: Path) -> None:
    cobro(ws, "import", "customers", "customers.csv")
    cobro(ws, "import", "receivables", "receivables.csv")
    write(
        ws / "big.csv",
        "external_id,customer,number,due_on,currency,amount\nR9,B1,F-9,2026-03-15,EUR,9000\n",
    )
    cobro(ws, "import", "receivables", "big.csv")
    cobro(ws, "run", "--date", "2026-04-05")  # the task: due 2 days later at 13:00, Madrid
    cobro(ws, "run", "--date", "2026-04-13")  # B1's next phase, so none falls on the 20th
    cobro(ws, "run", "--date", "2026-04-20")  # the statement of account (action "statement")

    [task] = json.loads(cobro(ws, "tasks", "list", "--json").stdout)
    assert task["due_at"] == "2026-04-07T13:00:00+02:00"  # company time, offset explicit
    assert "2026-04-07 13:00" in cobro(ws, "tasks", "list").stdout
    account = cobro(ws, "account", "B1", "--date", "2026-04-20").stdout
    assert "2026-04-07 13:00" in account and "11:00" not in account
    as_json = json.loads(cobro(ws, "account", "B1", "--date", "2026-04-20", "--json").stdout)
    assert [x["due_at"] for x in as_json["tasks"]] == ["2026-04-07T13:00:00+02:00"]

    description = "Statement of account on the 20th and the last day of the month"
    claims = json.loads(cobro(ws, "history", "--customer", "B1", "--json").stdout)
    assert [c["phase_name"] for c in claims if c["phase"] == "action/statement"] == [description]
    assert account.count("action/statement") == 1
    assert description.split()[0] in account.split("action/statement", 1)[1]
    shown = cobro(ws, "history", "--customer", "B1").stdout
    assert "action/statement" in shown and "Statement of" in shown


def test_check_reports_a_missing_or_non_image_logo_file_with_its_line(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace(
        "  branding:\n",
        "  branding:\n    logo_url: https://demo.example/logo.png\n    logo_file: brand/logo.png\n",
    )
    cfg.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "logo_file:" in s)
    where = f"{cfg.resolve()}:{line}: company.branding.logo_file: logo 'brand/logo.png'"

    missing = cobro(ws, "check", ok=False)
    assert f"{where} cannot be read" in missing.stderr

    (ws / "brand").mkdir()
    (ws / "brand" / "logo.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    not_png = cobro(ws, "check", ok=False)
    assert f"{where} is not an image of its type (png)" in not_png.stderr

    (ws / "brand" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    assert "OK" in cobro(ws, "check").stdout

    cfg.write_text(text.replace("brand/logo.png", "../logo.svg"), encoding="utf-8")
    outside = cobro(ws, "check", ok=False)
    assert f":{line}: company.branding.logo_file: " in outside.stderr
    assert "inside the workspace" in outside.stderr


def test_check_reports_a_workspace_receipt_template_that_fails(ws: Path) -> None:
    (ws / "templates" / "receipt_pdf.j2").write_text("<p>{{ notice.chrage }}</p>")
    proc = cobro(ws, "check", ok=False)
    assert "subscriptions.receipts: receipt PDF: receipt_pdf.j2:" in proc.stderr
    assert "chrage" in proc.stderr


def test_check_reports_a_workspace_statement_template_that_fails_where_it_is_used(
    ws: Path,
) -> None:
    (ws / "templates" / "statement_pdf.j2").write_text("<p>{{ customer.nmae }}</p>")
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    line = next(
        i for i, x in enumerate(text.splitlines(), 1) if x.strip().startswith("attach_statement:")
    )
    proc = cobro(ws, "check", ok=False)
    assert f"cobro.yaml:{line}: actions.0.attach_statement: statement PDF:" in proc.stderr
    assert "nmae" in proc.stderr

    # No phase or notice attaches it: the portal's download still uses the template.
    cfg.write_text(text.replace("attach_statement: true", "attach_statement: false"), "utf-8")
    proc = cobro(ws, "check", ok=False)
    assert "portal: statement PDF: statement_pdf.j2:" in proc.stderr and "nmae" in proc.stderr
