"""A simulation changes nothing, and predicts what the daily runs then send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from cobro.engine.runs import run_day
from cobro.engine.simulate import SIMULATION_CACHE_KIB, SimulatedMessage, simulate
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import business, count, d, invoice, load, person

FIRST, LAST = d("2025-03-01"), d("2025-05-10")


def portfolio(ws: Workspace) -> None:
    """Debtors of both policies at every stage around the simulated period."""
    business(ws, "B1", "ap@b1.example")
    business(ws, "B2", "ap@b2.example")
    business(ws, "B3", "ap@b3.example")
    person(ws, "P1", "p1@example.com")
    person(ws, "P2", "p2@example.com")
    invoice(ws, "B1-1", "B1", d("2025-03-10"), "1200.00")
    invoice(ws, "B1-2", "B1", d("2025-03-20"), "300.00")
    invoice(ws, "B1-3", "B1", d("2025-03-20"), "45.00", "USD")
    invoice(ws, "B2-1", "B2", d("2025-01-05"), "30.00")  # below phase 05's minimum
    invoice(ws, "B2-2", "B2", d("2025-01-20"), "900.00")
    invoice(ws, "B3-1", "B3", d("2025-02-14"), "75.00")
    invoice(ws, "P1-1", "P1", d("2025-03-12"), "60.00")
    invoice(ws, "P2-1", "P2", d("2025-02-25"), "25.00")
    invoice(ws, "P2-2", "P2", d("2025-04-02"), "40.00")


def sent_by_run(ws: Workspace) -> list[tuple[date, str, str]]:
    """(day of the run that planned it, debtor, step) of every message sent."""
    o, c, r = t.outbox.c, t.customers.c, t.runs.c
    with ws.engine.connect() as conn:
        return sorted(
            (row.run_on, row.external_id, row.step)
            for row in conn.execute(
                select(r.run_on, c.external_id, o.step)
                .join(t.customers, c.id == o.customer_id)
                .join(t.runs, r.id == o.run_id)
                .where(o.status == "sent")
            )
        )


def simulated(ws: Workspace, start: date, end: date) -> list[SimulatedMessage]:
    """Run the simulation as ``cobro simulate`` does: in a transaction that is rolled back."""
    with ws.engine.connect() as conn:
        trans = conn.begin()
        try:
            return [m for day in simulate(conn, ws.config, ws.company_id, start, end) for m in day]
        finally:
            trans.rollback()


def test_simulation_changes_nothing_and_predicts_the_runs(ws: Workspace) -> None:
    portfolio(ws)
    with ws.engine.connect() as conn:
        company_before = conn.execute(select(t.companies)).one()

    messages = simulated(ws, FIRST, LAST)

    assert count(ws, t.outbox) == 0
    assert count(ws, t.claim_items) == 0
    assert count(ws, t.runs) == 0
    assert count(ws, t.evidence) == 0
    with ws.engine.connect() as conn:
        assert conn.execute(select(t.companies)).one() == company_before
    assert {m.channel for m in messages} == {"email"}
    predicted = sorted((m.date, m.customer, m.step) for m in messages)
    assert len(predicted) == len(set(predicted))
    # The period covers before-due, after-due, repeated and go-live phases.
    steps = {step for _, _, step in predicted}
    assert {"b2b/00", "b2b/01", "b2b/02", "b2b/05", "consumer/before", "consumer/after"} <= steps

    day = FIRST
    while day <= LAST:
        run_day(ws, day)
        day += timedelta(days=1)

    assert sent_by_run(ws) == predicted
    assert listed_by_run(ws) == listed_by_simulation(messages)


Listed = dict[tuple[date, str, str], tuple[int, dict[str, Decimal]]]


def listed_by_run(ws: Workspace) -> Listed:
    """Per message the runs sent (day, debtor, step): its items and their total by currency."""
    o, ci, c, r = t.outbox.c, t.claim_items.c, t.customers.c, t.receivables.c
    out: Listed = {}
    with ws.engine.connect() as conn:
        for row in conn.execute(
            select(
                o.occurrence_on,
                c.external_id,
                o.step,
                r.currency,
                func.count(ci.id).label("n"),
                func.sum(r.balance_minor).label("minor"),
            )
            .join(t.customers, c.id == o.customer_id)
            .join(t.claim_items, ci.outbox_id == o.id)
            .join(t.receivables, r.id == ci.receivable_id)
            .group_by(o.occurrence_on, c.external_id, o.step, r.currency)
        ):
            n, totals = out.setdefault((row.occurrence_on, row.external_id, row.step), (0, {}))
            totals[row.currency] = Decimal(row.minor) / 100
            out[row.occurrence_on, row.external_id, row.step] = (n + row.n, totals)
    return out


def listed_by_simulation(messages: list[SimulatedMessage]) -> Listed:
    return {
        (m.planned_on or m.date, m.customer, m.step): (m.items, m.totals)
        for m in messages
        if m.items
    }


def test_simulation_predicts_the_runs_with_the_starter_scheduled_actions(
    make_workspace: Callable[..., Workspace], db_url: str
) -> None:
    ws = make_workspace("full", db_url=db_url)  # the starter as shipped, actions included
    assert ws.config.actions
    portfolio(ws)

    messages = simulated(ws, FIRST, LAST)
    assert count(ws, t.outbox) == 0
    predicted = sorted((m.date, m.customer, m.step) for m in messages if m.channel == "email")
    assert any(step.startswith("action/") for _, _, step in predicted)

    day = FIRST
    while day <= LAST:
        run_day(ws, day)
        day += timedelta(days=1)

    assert sent_by_run(ws) == predicted
    listed = listed_by_simulation(messages)
    assert any(step.startswith("action/") for _, _, step in listed)  # a debt notice's items
    assert listed_by_run(ws) == listed


def test_simulation_names_the_first_channel_that_reaches_each_debtor_and_its_cost(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(
        replace={
            "    cost: 0.0005                 # per message, in the company currency\n": (
                "    cost: 0.0005\n"
                "  sms:\n"
                "    account_sid: AC0123456789abcdef0123456789abcdef\n"
                '    sender: "+34910000000"\n'
                "    cost_per_segment: 0.07\n"
            ),
            "        template: reminder_due\n": "        template: reminder_due\n"
            "        channels: [sms, email]\n",
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "P1", "name": "Ana", "kind": "person", "phone": "+34612345678"},
        {"external_id": "P2", "name": "Bea", "kind": "person", "email": "bea@example.com"},
        {"external_id": "P3", "name": "Cai", "kind": "person"},
    )
    for who in ("P1", "P2", "P3"):
        invoice(ws, f"{who}-1", who, d("2025-03-12"), "60.00")
    due_day = [
        (m.customer, m.channel, m.cost) for m in simulated(ws, d("2025-03-12"), d("2025-03-12"))
    ]
    assert due_day == [
        ("P1", "sms", Decimal("0.07")),
        ("P2", "email", Decimal("0.0005")),
        ("P3", "none", Decimal(0)),
    ]


def test_the_simulation_has_its_larger_page_cache_until_it_ends_or_is_left(ws: Workspace) -> None:
    portfolio(ws)
    if ws.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's page cache (PostgreSQL's buffers are the server's)")
    with ws.engine.connect() as conn:

        def size() -> int:
            return int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

        before = size()
        conn.rollback()
        trans = conn.begin()
        days = simulate(conn, ws.config, ws.company_id, FIRST, LAST)
        next(days)
        assert size() == -SIMULATION_CACHE_KIB
        days.close()  # left after its first day
        assert size() == before
        trans.rollback()
