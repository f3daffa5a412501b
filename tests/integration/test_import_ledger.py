"""Credit notes and reversed payments on every database: balances, evidence, claims."""

from __future__ import annotations

from sqlalchemy import select

from cobro.engine.runs import run_day
from cobro.evidence.chain import verify_chain
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import business, d, invoice, load, outbox, pay


def balances(ws: Workspace) -> dict[str, int]:
    r = t.receivables.c
    with ws.engine.connect() as conn:
        return {e: int(b) for e, b in conn.execute(select(r.external_id, r.balance_minor))}


def test_a_credit_note_and_a_reversal_move_balances_and_claims(ws: Workspace) -> None:
    business(ws, "C1", "ap@one.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "100.00")
    invoice(ws, "F-2", "C1", d("2025-03-01"), "60.00")
    load(
        ws,
        "receivables",
        {
            "external_id": "AB-1",
            "customer": "C1",
            "invoice": "F-2",
            "due_on": "2025-02-20",
            "amount": "-60.00",
        },
    )
    pay(ws, "P1", "C1", "100.00", d("2025-02-25"), receivable="F-1")
    assert balances(ws) == {"F-1": 0, "F-2": 0, "AB-1": 0}
    run_day(ws, d("2025-03-08"))
    assert outbox(ws) == []  # nothing owed: neither the invoices nor the credit note is claimed

    load(
        ws,
        "payments",
        {
            "external_id": "DEV-1",
            "customer": "C1",
            "paid_on": "2025-03-10",
            "amount": "-100.00",
            "reverses": "P1",
        },
    )
    assert balances(ws) == {"F-1": 10000, "F-2": 0, "AB-1": 0}
    run_day(ws, d("2025-03-16"))  # dunning resumes at the first overdue phase

    [row] = outbox(ws)
    assert row.step == "b2b/01"
    with ws.engine.connect() as conn:
        assert verify_chain(conn, ws.company_id).ok
        kinds = conn.execute(select(t.evidence.c.kind).order_by(t.evidence.c.seq)).scalars()
        assert "payment.reversed" in list(kinds)
