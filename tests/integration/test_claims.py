"""What a claim contains: every open receivable of the debtor, balances as they are now."""

from __future__ import annotations

from cobro.engine.runs import dispatch_due, run_day
from cobro.evidence.history import claim_history
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import (
    business,
    captured,
    claimed_numbers,
    count,
    d,
    html,
    invoice,
    load,
    local,
    money,
    outbox,
    pay,
    plain,
)

DUE = d("2025-03-10")  # a Monday; phase 00 of b2b is 7 days before, on 2025-03-03


def totals(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Total pendiente:")]


def test_one_message_per_debtor_per_phase_lists_every_receivable(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example", "Acme Industrial")
    for n, amount in (("F-1", "100.00"), ("F-2", "200.00"), ("F-3", "300.00")):
        invoice(ws, n, "C1", DUE, amount)

    report = run_day(ws, d("2025-03-03"))

    rows = outbox(ws)
    assert [(r.customer, r.step, r.status) for r in rows] == [("C1", "b2b/00", "sent")]
    assert report.planned == 1 and report.sent == 1
    assert claimed_numbers(ws, rows[0].id) == ["F-1", "F-2", "F-3"]
    assert count(ws, t.claim_items) == 3
    mails = captured(ws)
    assert len(mails) == 1
    text = plain(mails[0])
    for number in ("F-1", "F-2", "F-3"):
        assert number in text
        assert f"<td>{number}</td>" in html(mails[0])
    assert totals(text) == [f"Total pendiente: {money('600.00')}"]


def test_amounts_in_different_currencies_are_never_summed(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-EUR", "C1", DUE, "100.00", "EUR")
    invoice(ws, "F-EUR2", "C1", DUE, "20.00", "EUR")
    invoice(ws, "F-USD", "C1", DUE, "50.00", "USD")

    run_day(ws, d("2025-03-03"))

    (mail,) = captured(ws)
    text = plain(mail)
    assert sorted(totals(text)) == sorted(
        [f"Total pendiente: {money('120.00', 'EUR')}", f"Total pendiente: {money('50.00', 'USD')}"]
    )
    for currency in ("EUR", "USD"):
        assert money("170.00", currency) not in text + html(mail)
    assert money("50.00", "USD") in html(mail) and money("120.00", "EUR") in html(mail)


def test_partial_payment_lowers_the_balance_shown(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", DUE, "1000.00")
    run_day(ws, d("2025-03-03"))
    pay(ws, "P-1", "C1", "400.00", d("2025-03-12"), receivable="F-1")

    run_day(ws, d("2025-03-17"))  # phase 01: 7 days after due

    first, second = captured(ws)
    assert totals(plain(first)) == [f"Total pendiente: {money('1000.00')}"]
    text = plain(second)
    assert totals(text) == [f"Total pendiente: {money('600.00')}"]
    line = next(ln for ln in text.splitlines() if ln.startswith("- F-1"))
    assert money("600.00") in line and money("1000.00") not in line
    # The HTML table shows the document amount and what is still open.
    assert money("1000.00") in html(second) and money("600.00") in html(second)
    with ws.engine.connect() as conn:
        snapshot = conn.execute(
            t.claim_items.select()
            .with_only_columns(t.claim_items.c.step, t.claim_items.c.balance_minor)
            .order_by(t.claim_items.c.id)
        ).all()
    assert [tuple(r) for r in snapshot] == [("b2b/00", 100000), ("b2b/01", 60000)]


def test_receivable_paid_in_full_leaves_dunning_at_once(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", DUE, "100.00")
    invoice(ws, "F-2", "C1", DUE, "200.00")
    run_day(ws, d("2025-03-03"))
    pay(ws, "P-1", "C1", "100.00", d("2025-03-05"), receivable="F-1")

    # Every later phase of the b2b policy: 01, 02, 03 claim only what is still open.
    for day in ("2025-03-17", "2025-03-25", "2025-04-09"):
        run_day(ws, d(day))
    rows = outbox(ws)
    assert [(r.step, r.status) for r in rows] == [
        ("b2b/00", "sent"),
        ("b2b/01", "sent"),
        ("b2b/02", "sent"),
        ("b2b/03", "sent"),
    ]
    assert claimed_numbers(ws, rows[0].id) == ["F-1", "F-2"]
    for row in rows[1:]:
        assert claimed_numbers(ws, row.id) == ["F-2"]
    for mail in captured(ws)[1:]:
        item_lines = [line for line in plain(mail).splitlines() if line.startswith("- ")]
        assert item_lines and not any(line.startswith("- F-1 ") for line in item_lines)

    # Once everything is paid, no later phase is planned at all.
    pay(ws, "P-2", "C1", "200.00", d("2025-04-10"))
    for day in ("2025-04-24", "2025-05-09", "2025-05-23"):
        report = run_day(ws, d(day))
        assert report.planned == 0 and report.sent == 0
    assert len(outbox(ws)) == 4
    assert len(captured(ws)) == 4


def test_message_whose_items_were_all_paid_after_planning_is_not_sent(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", DUE, "100.00")
    invoice(ws, "F-2", "C1", DUE, "50.00")
    day = d("2025-03-03")

    planned = run_day(ws, day, as_of=local(ws, day, "07:00"))
    assert planned.planned == 1 and planned.sent == 0
    assert [r.status for r in outbox(ws)] == ["planned"]

    pay(ws, "P-1", "C1", "150.00", day, now=local(ws, day, "08:00"))
    report = dispatch_due(ws, as_of=local(ws, day, "09:00"))

    assert report.sent == 0 and report.cancelled == 1 and report.deliveries == 0
    (row,) = outbox(ws)
    assert row.status == "cancelled"
    assert row.reason == "paid before sending"
    assert captured(ws) == []
    assert count(ws, t.deliveries) == 0
    # And nothing is sent later either.
    assert dispatch_due(ws, as_of=local(ws, day, "18:00")).sent == 0
    assert captured(ws) == []


def test_receivables_paid_after_planning_are_left_out_of_the_message(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example")
    invoice(ws, "F-1", "C1", DUE, "100.00")
    invoice(ws, "F-2", "C1", DUE, "50.00")
    day = d("2025-03-03")
    run_day(ws, day, as_of=local(ws, day, "07:00"))

    pay(ws, "P-1", "C1", "100.00", day, receivable="F-1", now=local(ws, day, "08:00"))
    report = dispatch_due(ws, as_of=local(ws, day, "09:00"))

    assert report.sent == 1
    (mail,) = captured(ws)
    text = plain(mail)
    items = [line.split(" ")[1] for line in text.splitlines() if line.startswith("- ")]
    assert items == ["F-2"]
    assert totals(text) == [f"Total pendiente: {money('50.00')}"]


def test_history_lists_claims_with_their_receivables_and_deliveries(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example", "Acme Industrial")
    business(ws, "C2", "ap@other.example")
    load(
        ws,
        "contacts",
        {
            "external_id": "K-1",
            "customer": "C1",
            "name": "Rita Rep",
            "email": "rita@demo.example",
            "roles": "sales_rep",
        },
    )
    invoice(ws, "F-1", "C1", DUE, "100.00")
    invoice(ws, "F-2", "C1", DUE, "250.00")
    invoice(ws, "G-1", "C2", DUE, "10.00")
    run_day(ws, d("2025-03-03"))
    pay(ws, "P-1", "C1", "40.00", d("2025-03-12"), receivable="F-1")
    run_day(ws, d("2025-03-17"))

    with ws.engine.connect() as conn:
        claims = claim_history(conn, ws.config, ws.company_id, "C1")
        everyone = claim_history(conn, ws.config, ws.company_id)
        later = claim_history(conn, ws.config, ws.company_id, since=d("2025-03-10"))

    assert len(everyone) == 4
    assert {c.customer for c in later} == {"C1", "C2"}
    assert all(c.occurrence_on == d("2025-03-17") for c in later)
    assert [(c.occurrence_on, c.step, c.status) for c in claims] == [
        (d("2025-03-03"), "b2b/00", "sent"),
        (d("2025-03-17"), "b2b/01", "sent"),
    ]
    first, second = claims
    assert first.customer_name == "Acme Industrial"
    assert first.phase_name == "Debt due in the next 7 days"
    assert [(i.number, str(i.balance_at_send), str(i.balance_now)) for i in first.items] == [
        ("F-1", "100.00 EUR", "60.00 EUR"),
        ("F-2", "250.00 EUR", "250.00 EUR"),
    ]
    assert [(i.number, str(i.balance_at_send)) for i in second.items] == [
        ("F-1", "60.00 EUR"),
        ("F-2", "250.00 EUR"),
    ]
    assert [(x.recipient, x.role, x.status) for x in first.deliveries] == [
        ("ap@acme.example", "debtor", "sent")
    ]
    assert sorted((x.recipient, x.role, x.status) for x in second.deliveries) == [
        ("ap@acme.example", "debtor", "sent"),
        ("rita@demo.example", "sales_rep", "sent"),
    ]
    message_ids = {x.message_id for c in claims for x in c.deliveries}
    assert len(message_ids) == 3 and None not in message_ids
    assert {m["Message-ID"] for m in captured(ws)} >= message_ids
    as_json = second.to_json()
    assert as_json["phase"] == "b2b/01" and len(as_json["deliveries"]) == 2
