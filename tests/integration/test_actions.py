"""Segments, month-day scheduled actions and staff tasks, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

import documents
from cobro.engine.runs import run_day
from cobro.engine.segments import members
from cobro.engine.simulate import simulate
from cobro.engine.tasks import complete_task, list_tasks, open_task
from cobro.store import tables as t
from cobro.workspace import Workspace

from .conftest import STARTER_CONFIG, top_level_block
from .support import captured, invoice, load, outbox, plain

SEGMENTS_AND_ACTIONS = """default_policy: consumer
segments:
  nivel5_overdue:
    description: Students of group Nivel5 with overdue debt
    group: Nivel5
    overdue_amount: {min: 0.01}
  nivel5:
    group: Nivel5
  becados:
    tags: [becado]
    attributes: {campus: Norte}
  long_overdue:
    days_overdue: {min: 30, max: 90}
    open_amount: {min: 100}
actions:
  - key: notice
    description: Statement on the 20th and the last day
    type: debt_notice
    days: [20, last]
    segment: nivel5
    hide_pay_link: true
  - key: circular
    description: Circular with the school calendar
    type: message
    days: [3]
    segment: nivel5
    title: Calendario escolar
    text: Adjuntamos el calendario del curso.
    attachment: files/calendario.pdf
  - key: call
    description: Call the family
    type: task
    days: [5]
    segment: nivel5_overdue
    message: Call the family about the overdue fees
    due_day: 10
    due_time: "12:30"
"""


def student(ws: Workspace, ext: str, group: str, tags: str = "", campus: str | None = None) -> None:
    row: dict[str, str | None] = {
        "external_id": ext,
        "name": f"Alumno {ext}",
        "kind": "person",
        "group": group,
        "email": f"{ext.lower()}@familias.example",
        "tags": tags,
    }
    if campus:
        row["attr_campus"] = campus
    load(ws, "customers", row)


@pytest.fixture
def school(make_ws: Callable[..., Workspace]) -> Workspace:
    starter_segments = top_level_block(STARTER_CONFIG.read_text(encoding="utf-8"), "segments")
    assert starter_segments
    ws = make_ws(replace={starter_segments: "", "default_policy: consumer\n": SEGMENTS_AND_ACTIONS})
    (ws.root / "files").mkdir()
    # A small but real PDF, with bytes of every value so corruption would show.
    (ws.root / "files" / "calendario.pdf").write_bytes(documents.pdf(bytes(range(256)) * 40))
    student(ws, "A1", "Nivel5", tags="becado", campus="Norte")
    student(ws, "A2", "Nivel5")
    student(ws, "A3", "Nivel4", tags="becado", campus="Sur")
    invoice(ws, "C1", "A1", date(2027, 1, 10), "120.00")  # overdue from Jan 11
    invoice(ws, "C2", "A1", date(2027, 3, 10), "120.00")  # not yet due in February
    invoice(ws, "C3", "A2", date(2027, 3, 10), "120.00")
    invoice(ws, "C4", "A3", date(2026, 12, 1), "300.00")
    return ws


def test_segments_select_the_same_debtors_on_every_database(school: Workspace) -> None:
    on = date(2027, 2, 20)
    with school.engine.connect() as conn:

        def ids(name: str) -> list[str]:
            found = members(conn, school.company_id, school.config.segment(name), on, "EUR")
            return [m.external_id for m in found]

        assert ids("nivel5") == ["A1", "A2"]
        assert ids("nivel5_overdue") == ["A1"]
        assert ids("becados") == ["A1"]  # both tags, but only A1 is on campus Norte
        assert ids("long_overdue") == ["A1", "A3"]  # 41 and 81 days overdue
        a1 = members(conn, school.company_id, school.config.segment("nivel5"), on, "EUR")[0]
        assert (str(a1.open.amount), str(a1.overdue.amount), a1.days_overdue) == (
            "240.00",
            "120.00",
            41,
        )


def test_debt_notice_goes_on_the_20th_and_last_day_only_to_debtors_with_overdue_debt(
    school: Workspace,
) -> None:
    for day in range(15, 29):
        run_day(school, date(2027, 2, day))
    notices = [r for r in outbox(school) if r.step == "action/notice"]
    assert [(r.occurrence_on, r.customer) for r in notices] == [
        (date(2027, 2, 20), "A1"),
        (date(2027, 2, 28), "A1"),  # 'last' in February 2027; A2 owes nothing overdue
    ]
    mails = [m for m in captured(school) if m["To"].addresses[0].addr_spec == "a1@familias.example"]
    statements = [m for m in mails if "estado de cuenta" in m["Subject"]]
    assert len(statements) == 2
    text = plain(statements[0])
    assert "C1" in text and "C2" in text  # the whole statement, overdue items marked
    assert "Vencido" in text and "Por vencer" in text
    assert "Pagar ahora" not in text and "/portal/" not in text  # pay link hidden


def test_debt_notice_is_cancelled_when_the_overdue_debt_was_paid_before_sending(
    school: Workspace,
) -> None:
    from cobro.engine.runs import dispatch_due

    from .support import local, pay

    run_day(school, date(2027, 2, 19))  # A1's first claim (go-live) goes out the day before
    run_day(school, date(2027, 2, 20), as_of=local(school, date(2027, 2, 20), "07:00"))
    pay(school, "P1", "A1", "120.00", date(2027, 2, 20), receivable="C1")
    dispatch_due(school, local(school, date(2027, 2, 20), "09:00"))
    [notice] = [r for r in outbox(school) if r.step == "action/notice"]
    assert (notice.status, notice.reason) == ("cancelled", "no overdue debt left")


def test_message_attachment_arrives_intact(school: Workspace) -> None:
    run_day(school, date(2027, 3, 3))
    original = (school.root / "files" / "calendario.pdf").read_bytes()
    circulars = [m for m in captured(school) if m["Subject"] == "Calendario escolar"]
    assert sorted(m["To"].addresses[0].addr_spec for m in circulars) == [
        "a1@familias.example",
        "a2@familias.example",
    ]
    for msg in circulars:
        [part] = list(msg.iter_attachments())
        assert part.get_filename() == "calendario.pdf"
        assert part.get_content_type() == "application/pdf"
        data = part.get_content()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(original).hexdigest()
        assert "Adjuntamos el calendario del curso." in plain(msg)


def test_tasks_are_created_once_per_debtor_and_occurrence_even_when_the_run_repeats(
    school: Workspace,
) -> None:
    for _ in range(3):
        report = run_day(school, date(2027, 2, 5))
    assert report.tasks == 0
    run_day(school, date(2027, 3, 5))
    with school.engine.connect() as conn:
        tasks = list_tasks(conn, school.company_id)
    assert [(x.customer, x.created_on) for x in tasks] == [
        ("A1", date(2027, 2, 5)),
        ("A1", date(2027, 3, 5)),
    ]
    # due on the 10th at 12:30 Madrid time (11:30 UTC in winter)
    assert tasks[0].due_at == datetime(2027, 2, 10, 11, 30, tzinfo=UTC)
    assert tasks[0].message == "Call the family about the overdue fees"
    with school.engine.begin() as conn:
        complete_task(conn, school.company_id, tasks[0].id, datetime(2027, 2, 9, tzinfo=UTC))
    with school.engine.connect() as conn:
        open_tasks = list_tasks(conn, school.company_id, open_only=True)
    assert [x.created_on for x in open_tasks] == [date(2027, 3, 5)]


def test_scheduled_actions_appear_in_the_simulation_and_nothing_changes(school: Workspace) -> None:
    with school.engine.connect() as conn:
        trans = conn.begin()
        days = list(
            simulate(conn, school.config, school.company_id, date(2027, 2, 1), date(2027, 3, 5))
        )
        trans.rollback()
    planned = {(m.date, m.customer, m.step, m.channel) for day in days for m in day}
    assert (date(2027, 2, 20), "A1", "action/notice", "email") in planned
    assert (date(2027, 2, 28), "A1", "action/notice", "email") in planned
    assert (date(2027, 3, 3), "A2", "action/circular", "email") in planned
    assert (date(2027, 2, 5), "A1", "action/call", "task") in planned
    assert not any(m.customer == "A2" and m.step == "action/notice" for day in days for m in day)
    with school.engine.connect() as conn:
        assert conn.execute(select(t.tasks.c.id)).first() is None
        assert conn.execute(select(t.outbox.c.id)).first() is None


def test_a_missing_attachment_fails_the_message_with_the_reason(school: Workspace) -> None:
    Path(school.root / "files" / "calendario.pdf").unlink()
    run_day(school, date(2027, 3, 3))
    circulars = [r for r in outbox(school) if r.step == "action/circular"]
    assert {r.status for r in circulars} == {"failed"}
    assert all("calendario.pdf" in (r.reason or "") for r in circulars)


def test_a_symlinked_attachment_leading_outside_the_workspace_is_not_sent(
    school: Workspace, tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "payroll.pdf"
    secret.parent.mkdir()
    secret.write_bytes(documents.pdf(b"(salaries)"))
    attachment = school.root / "files" / "calendario.pdf"
    attachment.unlink()
    attachment.symlink_to(secret)
    run_day(school, date(2027, 3, 3))
    circulars = [r for r in outbox(school) if r.step == "action/circular"]
    assert circulars and {r.status for r in circulars} == {"failed"}
    assert all("leads outside the workspace" in (r.reason or "") for r in circulars)
    assert not [m for m in captured(school) if m["Subject"] == "Calendario escolar"]


def test_html_behind_a_pdf_header_is_not_sent_as_a_pdf(school: Workspace) -> None:
    (school.root / "files" / "calendario.pdf").write_bytes(
        b"%PDF-1.4\n<html><body><script>location='https://evil.example'</script></body></html>"
    )
    run_day(school, date(2027, 3, 3))
    circulars = [r for r in outbox(school) if r.step == "action/circular"]
    assert circulars and {r.status for r in circulars} == {"failed"}
    assert all("is not really a .pdf file" in (r.reason or "") for r in circulars)
    assert not [m for m in captured(school) if m["Subject"] == "Calendario escolar"]


def test_a_symlink_to_another_file_inside_the_workspace_is_attached(school: Workspace) -> None:
    real = school.root / "files" / "2027" / "calendario-real.pdf"
    real.parent.mkdir()
    (school.root / "files" / "calendario.pdf").rename(real)
    (school.root / "files" / "calendario.pdf").symlink_to(real)
    run_day(school, date(2027, 3, 3))
    circulars = [m for m in captured(school) if m["Subject"] == "Calendario escolar"]
    assert len(circulars) == 2
    [part] = list(circulars[0].iter_attachments())
    assert part.get_content() == real.read_bytes()


def test_the_simulation_lists_only_the_tasks_its_runs_create(school: Workspace) -> None:
    """Tasks already there (one staff opened today, one a real run created) are not the
    simulated runs' own: listed by none of its days, and the simulation does not fail."""
    run_day(school, date(2027, 2, 5))  # creates A1's task of action/call
    c = t.customers.c
    with school.engine.begin() as conn:
        customer = conn.execute(select(c.id).where(c.external_id == "A2")).scalar_one()
        open_task(
            conn,
            school.company_id,
            customer,
            "Call A2 back",
            datetime(2027, 2, 5, 15, 0, tzinfo=UTC),
            datetime(2027, 2, 5, 10, 0, tzinfo=UTC),
            date(2027, 2, 5),
        )
    with school.engine.connect() as conn:
        trans = conn.begin()
        days = list(
            simulate(conn, school.config, school.company_id, date(2027, 2, 5), date(2027, 3, 5))
        )
        trans.rollback()
    tasks = [(m.date, m.customer, m.step) for day in days for m in day if m.channel == "task"]
    assert tasks == [(date(2027, 3, 5), "A1", "action/call")]
