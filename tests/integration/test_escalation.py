"""The debtor is told where they stand, once: debtor-level escalation through real runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta

from sqlalchemy import select

from cobro.engine.runs import run_day
from cobro.engine.simulate import simulate
from cobro.intake.importer import import_records
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import LOADED, business, captured, d, invoice, outbox, pay, plain

B2B_ORDER = ["00", "01", "02", "03", "04", "05"]
TWO_A_DAY = {"max_claims_per_debtor_per_day: 1": "max_claims_per_debtor_per_day: 2"}
RAMP = "  go_live: {days: 10, max_claims_per_day: 400}\n"


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_a_debtor_with_items_at_several_phases_gets_one_message_a_day_at_a_rising_phase(
    make_workspace: Callable[..., Workspace], db_url: str
) -> None:
    # The starter as shipped: its statement of account (debt notice) goes out on the
    # 20th and the last day of the month to debtors 30+ days overdue.
    ws = make_workspace("full", db_url=db_url)
    business(ws, "C1", "ap@acme.example")
    for n, due in enumerate(("2025-01-20", "2025-02-03", "2025-02-20", "2025-03-05", "2025-03-28")):
        invoice(ws, f"F-{n}", "C1", d(due), "400.00")
    for day in days(d("2025-02-01"), d("2025-04-30")):
        run_day(ws, day)
        if day == d("2025-03-15"):
            pay(ws, "P-1", "C1", "400.00", day, receivable="F-1")

    rows = [r for r in outbox(ws) if r.customer == "C1"]
    per_day: dict[date, list[str]] = defaultdict(list)
    for r in rows:
        per_day[r.occurrence_on].append(r.step)
    assert all(len(steps) == 1 for steps in per_day.values()), per_day
    phases = [r.step.removeprefix("b2b/") for r in rows if r.step.startswith("b2b/")]
    indexes = [B2B_ORDER.index(p) for p in phases]
    assert indexes == sorted(indexes), phases  # never down while F-0 stays unpaid
    assert phases[:3] == ["01", "02", "03"]
    # Statements still go out on their days when no claim goes out the same day.
    assert any(s.startswith("action/") for steps in per_day.values() for s in steps)


def test_a_debt_notice_due_on_the_day_of_a_claim_is_merged_into_the_claim(
    make_workspace: Callable[..., Workspace], db_url: str
) -> None:
    ws = make_workspace("full", db_url=db_url)
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", d("2025-02-18"), "900.00")  # 30 days overdue on 03-20: phase 03
    invoice(ws, "F-2", "C1", d("2025-01-19"), "100.00")
    for day in days(d("2025-02-25"), d("2025-03-20")):
        run_day(ws, day)
    on_the_20th = [r.step for r in outbox(ws) if r.occurrence_on == d("2025-03-20")]
    assert len(on_the_20th) == 1 and on_the_20th[0].startswith("b2b/")

    # A company that allows two collection messages a day gets both (its own SQLite file).
    ws2 = make_workspace("two", replace=TWO_A_DAY)
    business(ws2, "C1", "ap@acme.example")
    invoice(ws2, "F-1", "C1", d("2025-02-18"), "900.00")
    invoice(ws2, "F-2", "C1", d("2025-01-19"), "100.00")
    for day in days(d("2025-02-25"), d("2025-03-20")):
        run_day(ws2, day)
    steps = sorted(r.step for r in outbox(ws2) if r.occurrence_on == d("2025-03-20"))
    assert len(steps) == 2 and steps[0] == "action/statement"


def test_each_item_of_a_claim_shows_its_status_and_the_phase_it_reached(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-OLD", "C1", d("2025-01-01"), "300.00")  # 70 days overdue on 03-12
    invoice(ws, "F-NEW", "C1", d("2025-03-05"), "200.00")  # 7 days overdue
    invoice(ws, "F-NEXT", "C1", d("2025-03-20"), "100.00")  # not yet due
    run_day(ws, d("2025-03-12"))  # go-live: the first overdue phase, 01, listing all three

    [mail] = captured(ws)
    text = plain(mail)
    assert "- F-OLD " in text and "Vencido (70 días), fase 05" in text
    assert "- F-NEW " in text and "Vencido (7 días), fase 01" in text
    assert "- F-NEXT " in text and "Por vencer" in text
    assert [r.step for r in outbox(ws)] == ["b2b/01"]


def test_paying_all_the_old_debt_ends_the_escalation_and_later_debt_starts_again(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", d("2025-01-01"), "300.00")
    invoice(ws, "F-2", "C1", d("2025-03-25"), "200.00")
    for day in days(d("2025-02-15"), d("2025-04-10")):
        if day == d("2025-03-10"):
            pay(ws, "P-1", "C1", "300.00", day, receivable="F-1")
        run_day(ws, day)
    assert [(r.occurrence_on, r.step) for r in outbox(ws)] == [
        (d("2025-02-15"), "b2b/01"),  # go-live on 45-day-old debt
        (d("2025-02-23"), "b2b/02"),  # 03 would be due on 03-10, the day F-1 is paid
        (d("2025-03-18"), "b2b/00"),  # F-1 paid on 03-10: F-2 starts from the beginning
        (d("2025-04-01"), "b2b/01"),
        (d("2025-04-09"), "b2b/02"),
    ]


def go_live_portfolio(ws: Workspace, debtors: int) -> None:
    customers = [
        (
            n,
            {
                "external_id": f"D{n:04}",
                "name": f"Debtor {n}",
                "kind": "business",
                "email": f"d{n}@example.com",
            },
        )
        for n in range(debtors)
    ]
    import_records(ws, "customers", customers, LOADED, "go-live")
    receivables = [
        (
            n,
            {
                "external_id": f"R{n:04}",
                "customer": f"D{n:04}",
                "due_on": (d("2025-06-01") - timedelta(days=n % 150)).isoformat(),
                "amount": "250.00",
            },
        )
        for n in range(debtors)
    ]
    import_records(ws, "receivables", receivables, LOADED, "go-live")


def test_a_go_live_on_2000_debtors_blocks_nobody_on_day_one_and_keeps_to_the_ramp(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(replace={"  max_catch_up_days": RAMP + "  max_catch_up_days"})
    go_live_portfolio(ws, 2000)
    first = d("2025-06-01")

    with ws.engine.connect() as conn:
        trans = conn.begin()
        sim = simulate(conn, ws.config, ws.company_id, first, first + timedelta(days=4))
        predicted = [len(day) for day in sim]
        trans.rollback()

    reports = [run_day(ws, day) for day in days(first, first + timedelta(days=4))]
    assert [r.planned for r in reports] == predicted
    assert reports[0].planned == 400 and reports[0].sent == 400
    assert all(r.planned <= 400 for r in reports)
    assert sum(r.blocked for r in reports) == 0
    with ws.engine.connect() as conn:
        o = t.outbox.c
        steps = conn.execute(select(o.step).where(o.occurrence_on == first)).scalars().all()
    assert set(steps) <= {"b2b/00", "b2b/01"}  # everyone starts at the first phase that applies
    # The oldest debt goes first.
    first_day = [r.customer for r in outbox(ws) if r.occurrence_on == first]
    assert "D0149" in first_day and "D0010" not in first_day
