"""Which policy a debtor follows, and the conditions and modes of its phases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from cobro.engine.runs import run_day
from cobro.workspace import Workspace

from .support import business, captured, d, invoice, load, outbox, person, plain

DUE = d("2025-03-10")


def test_debtors_get_their_explicit_policy_else_the_first_matching_rule_else_the_default(
    ws: Workspace,
) -> None:
    business(ws, "B1", "b1@acme.example")  # rule kind=business -> b2b
    person(ws, "P1", "p1@example.com")  # default -> consumer
    load(
        ws,
        "customers",
        {
            "external_id": "P2",
            "name": "P2",
            "kind": "person",
            "email": "p2@example.com",
            "policy": "b2b",
        },  # explicit wins
    )
    for c in ("B1", "P1", "P2"):
        invoice(ws, f"F-{c}", c, DUE, "100.00")
    run_day(ws, d("2025-03-10"))  # on due: only the consumer policy has a step today
    run_day(ws, d("2025-03-17"))  # 7 days after: b2b phase 01 (and P1's missed "after")
    assert sorted((r.customer, r.step) for r in outbox(ws)) == [
        ("B1", "b2b/01"),
        ("P1", "consumer/after"),
        ("P1", "consumer/due"),
        ("P2", "b2b/01"),
    ]


def test_changing_the_assignment_rules_reassigns_debtors_at_the_next_run(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(replace={"    where: {kind: business}": "    where: {kind: business, tag: b2b}"})
    business(ws, "B1", "b1@acme.example")  # no tag b2b: default policy (consumer)
    invoice(ws, "F-1", "B1", DUE, "100.00")
    run_day(ws, d("2025-03-10"))
    load(
        ws,
        "customers",
        {
            "external_id": "B1",
            "name": "B1",
            "kind": "business",
            "email": "b1@acme.example",
            "tags": "b2b",
        },
    )
    run_day(ws, d("2025-03-17"))
    assert [(r.customer, r.step) for r in outbox(ws)] == [("B1", "consumer/due"), ("B1", "b2b/01")]


def test_a_phase_with_a_minimum_balance_skips_smaller_debts(ws: Workspace) -> None:
    business(ws, "B1", "b1@acme.example")
    business(ws, "B2", "b2@acme.example")
    invoice(ws, "F-1", "B1", DUE, "49.99")  # phase 05 asks for at least 50.00
    invoice(ws, "F-2", "B2", DUE, "50.00")
    for offset in range(61):  # up to 60 days after due: phase 05
        run_day(ws, DUE + timedelta(days=offset))
    last = {r.customer: r.step for r in outbox(ws)}
    assert last == {"B1": "b2b/04", "B2": "b2b/05"}


def test_a_repeating_phase_repeats_every_k_days_until_paid(ws: Workspace) -> None:
    business(ws, "B1", "b1@acme.example")
    invoice(ws, "F-1", "B1", DUE, "500.00")
    for offset in range(90):
        run_day(ws, DUE + timedelta(days=offset))
    sent = [(r.occurrence_on, r.step) for r in outbox(ws) if r.step == "b2b/05"]
    assert sent == [
        (d("2025-05-09"), "b2b/05"),
        (d("2025-05-23"), "b2b/05"),
        (d("2025-06-06"), "b2b/05"),
    ]


def test_full_detail_lists_the_items_and_link_only_sends_the_portal_link(ws: Workspace) -> None:
    business(ws, "B1", "b1@acme.example")
    invoice(ws, "F-1", "B1", DUE, "500.00")
    day = d("2025-03-17")
    while day <= d("2025-04-24"):  # phase 01 (full) on 03-17 ... phase 04 (link only) on 04-24
        run_day(ws, day)
        day += timedelta(days=1)
    mails = captured(ws)
    assert len(mails) == 4
    full, link = plain(mails[0]), plain(mails[-1])
    assert "- F-1 " in full and "Pagar ahora: " in full
    assert (
        "- F-1 " not in link and "Consultar su cuenta: https://pagos.demo.example/portal/" in link
    )


def test_a_daily_repeat_on_very_old_debt_still_plans_and_simulates(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(
        replace={
            "        repeat_every_days: 10\n        max_repeats: 3\n": (
                "        repeat_every_days: 1\n"
            ),
        }
    )
    person(ws, "P1", "p1@example.com")
    invoice(ws, "F-old", "P1", d("2023-06-01"), "80.00")  # ~1,000 daily windows back
    invoice(ws, "F-new", "P1", d("2025-03-01"), "20.00")
    from cobro.engine.simulate import simulate

    with ws.engine.connect() as conn:
        trans = conn.begin()
        [day] = list(simulate(conn, ws.config, ws.company_id, d("2025-03-10"), d("2025-03-10")))
        trans.rollback()
    # Both repeat daily, so today's occurrence of each is due: one message, two items.
    assert [(m.step, m.items) for m in day] == [("consumer/after", 2)]
    report = run_day(ws, d("2025-03-10"))
    assert (report.planned, report.items) == (1, 2)
