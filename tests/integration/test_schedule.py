"""When messages go out: send time and time zone, repeated, skipped and concurrent runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from cobro.engine.runs import RunReport, dispatch_due, run_day
from cobro.evidence.chain import verify_chain
from cobro.store import tables as t
from cobro.workspace import Workspace, open_workspace

from .conftest import SmtpServer
from .support import (
    business,
    captured,
    count,
    d,
    invoice,
    local,
    outbox,
    person,
    plain,
    rendezvous,
    sent,
)


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [(d("2025-01-15"), 8), (d("2025-07-15"), 7)],
    ids=["winter-CET", "summer-CEST"],
)
def test_messages_are_due_at_the_company_send_time_in_its_time_zone(
    ws: Workspace, day: date, utc_hour: int
) -> None:
    assert ws.config.company.timezone == "Europe/Madrid"
    assert ws.config.company.send_time.strftime("%H:%M") == "09:00"
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", day + timedelta(days=7), "100.00")
    due_at = datetime.combine(day, datetime.min.time(), UTC).replace(hour=utc_hour)
    just_before = due_at - timedelta(seconds=1)

    report = run_day(ws, day, as_of=just_before)

    assert report.planned == 1 and report.sent == 0
    (row,) = outbox(ws)
    assert row.status == "planned"
    assert row.due_at == due_at and row.next_attempt_at == due_at
    assert dispatch_due(ws, as_of=just_before).sent == 0
    assert captured(ws) == []

    assert dispatch_due(ws, as_of=due_at).sent == 1
    (mail,) = captured(ws)
    assert mail["Date"].datetime == due_at


def test_running_the_same_date_again_plans_and_sends_nothing_new(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    person(ws, "P1", "p1@example.com")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")
    invoice(ws, "F-2", "P1", d("2025-03-03"), "30.00")
    day = d("2025-03-03")

    first = run_day(ws, day)
    assert first.planned == 2 and first.sent == 2
    rows_before = [(r.id, r.status) for r in outbox(ws)]

    for as_of in (None, local(ws, day, "09:00"), local(ws, day, "18:30")):
        again = run_day(ws, day, as_of=as_of)
        assert (again.planned, again.sent, again.failed, again.deliveries) == (0, 0, 0, 0)

    assert [(r.id, r.status) for r in outbox(ws)] == rows_before
    assert count(ws, t.claim_items) == 2
    assert count(ws, t.deliveries) == 2
    assert len(captured(ws)) == 2
    with ws.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar_one() == 4


def run_concurrently(
    workspaces: list[Workspace], day: date
) -> tuple[list[RunReport], list[BaseException]]:
    """``run_day(day)`` on every workspace at once, one thread each."""
    start = threading.Barrier(len(workspaces), timeout=60)
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def run(w: Workspace) -> None:
        try:
            start.wait()
            reports.append(run_day(w, day))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workspaces]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a run did not finish"
    return reports, errors


def twelve_debtors(ws: Workspace) -> None:
    for i in range(12):
        business(ws, f"C{i}", f"ap{i}@acme.example")
        invoice(ws, f"F-{i}a", f"C{i}", d("2025-03-10"), "100.00")
        invoice(ws, f"F-{i}b", f"C{i}", d("2025-03-10"), "20.00")


def test_concurrent_runs_of_the_same_date_do_not_duplicate(
    smtp_ws: Workspace, smtp_server: SmtpServer, reopen: Callable[[Workspace], Workspace]
) -> None:
    twelve_debtors(smtp_ws)
    reports, _errors = run_concurrently([smtp_ws, reopen(smtp_ws)], d("2025-03-03"))
    assert reports, "neither run finished"
    # Between them the runs did the whole day: running it again sends nothing.
    assert run_day(smtp_ws, d("2025-03-03")).sent == 0

    rows = outbox(smtp_ws)
    assert len(rows) == 12 and {r.status for r in rows} == {"sent"}
    received = smtp_server.received
    assert len(received) == len(rows)
    assert len({m.message["Message-ID"] for m in received}) == 12
    assert sorted(m.rcpt_tos for m in received) == sorted(
        (f"ap{i}@acme.example",) for i in range(12)
    )
    assert count(smtp_ws, t.claim_items) == 24
    assert count(smtp_ws, t.deliveries) == 12
    o = t.outbox.c
    with smtp_ws.engine.connect() as conn:
        dupes = conn.execute(
            select(o.company_id, o.customer_id, o.step, o.occurrence_on)
            .group_by(o.company_id, o.customer_id, o.step, o.occurrence_on)
            .having(func.count() > 1)
        ).all()
        chain = verify_chain(conn, smtp_ws.company_id)
    assert dupes == []
    assert chain.ok and chain.entries == 24


def test_concurrent_runs_of_the_same_date_both_complete(
    smtp_ws: Workspace,
    smtp_server: SmtpServer,
    reopen: Callable[[Workspace], Workspace],
    is_postgres: bool,
    request: pytest.FixtureRequest,
) -> None:
    twelve_debtors(smtp_ws)
    workspaces = [smtp_ws, reopen(smtp_ws)]

    # Both runs reach the planner's company lock before either takes it.
    with rendezvous(
        [w.engine for w in workspaces] if is_postgres else [],
        2,
        lambda sql: "FROM companies" in sql and " FOR " in sql,
    ):
        reports, errors = run_concurrently(workspaces, d("2025-03-03"))

    assert [repr(e) for e in errors] == []
    assert sum(r.planned for r in reports) == 12
    assert sum(r.sent for r in reports) == 12
    assert len(smtp_server.received) == 12


def test_missed_after_due_step_is_sent_once_late(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")

    run_day(ws, d("2025-03-03"))  # phase 00
    run_day(ws, d("2025-03-16"))  # the day before phase 01 (7 days after due)
    # No run on 2025-03-17 and 2025-03-18.
    late = run_day(ws, d("2025-03-19"))
    assert late.planned == 1 and late.sent == 1
    for day in ("2025-03-19", "2025-03-20", "2025-03-21"):
        assert run_day(ws, d(day)).planned == 0

    assert sent(ws) == [
        (d("2025-03-03"), "C1", "b2b/00"),
        (d("2025-03-19"), "C1", "b2b/01"),
    ]
    mails = captured(ws)
    assert len(mails) == 2
    assert "Vencido (9 días)" in plain(mails[1])


def test_after_missed_days_the_debtor_gets_the_next_phase_once_never_a_jump(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")

    run_day(ws, d("2025-03-03"))
    # No runs while phases 01 (03-17) and 02 (03-25) were reached.
    run_day(ws, d("2025-03-26"))  # phase 01 is due, once: phases go step by step
    run_day(ws, d("2025-03-27"))
    run_day(ws, d("2025-04-03"))  # 02 is sent 8 days after 01, the gap between them

    assert sent(ws) == [
        (d("2025-03-03"), "C1", "b2b/00"),
        (d("2025-03-26"), "C1", "b2b/01"),
        (d("2025-04-03"), "C1", "b2b/02"),
    ]


def test_before_due_reminder_whose_moment_passed_is_not_sent(ws: Workspace) -> None:
    person(ws, "P1", "p1@example.com")
    invoice(ws, "F-1", "P1", d("2025-03-10"), "80.00")

    run_day(ws, d("2025-03-05"))  # "3 days before due" is 2025-03-07
    # No runs on 03-06 .. 03-08.
    assert run_day(ws, d("2025-03-09")).planned == 0
    assert run_day(ws, d("2025-03-10")).planned == 1  # "on due" is sent

    assert sent(ws) == [(d("2025-03-10"), "P1", "consumer/due")]
    assert len(captured(ws)) == 1


def test_reminder_for_a_receivable_imported_after_its_moment_is_not_sent(ws: Workspace) -> None:
    person(ws, "P1", "p1@example.com")
    run_day(ws, d("2025-03-07"))
    invoice(ws, "F-1", "P1", d("2025-03-10"), "80.00")  # "before" moment was 03-07

    assert run_day(ws, d("2025-03-08")).planned == 0
    assert run_day(ws, d("2025-03-10")).planned == 1
    assert sent(ws) == [(d("2025-03-10"), "P1", "consumer/due")]


def test_run_report_counts_the_receivables_claimed(
    ws: Workspace, is_postgres: bool, request: pytest.FixtureRequest
) -> None:
    business(ws, "C1", "ap@acme.example")
    for n in ("F-1", "F-2", "F-3"):
        invoice(ws, n, "C1", d("2025-03-10"), "10.00")

    report = run_day(ws, d("2025-03-03"))

    assert (report.planned, report.items) == (1, 3)


def test_workspaces_open_concurrently_on_the_same_database(
    ws: Workspace, is_postgres: bool, request: pytest.FixtureRequest
) -> None:
    url = ws.engine.url.render_as_string(hide_password=False)
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=60)

    def open_one() -> None:
        try:
            start.wait()
            open_workspace(ws.root, url).close()
        except BaseException as exc:
            errors.append(exc)

    # Both threads are inside the migration (reading alembic_version) at the same time.
    # SQLite serialises migrations with its write lock, so they never overlap there.
    with rendezvous(
        [Engine] if is_postgres else [], 2, lambda sql: "alembic_version" in sql, timeout=3
    ):
        threads = [threading.Thread(target=open_one) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    assert [repr(e) for e in errors] == []
