"""Credit notes: a receivable of kind ``credit_note`` lowers what its debtor owes.

A credit note is stored with a negative amount, and the part of it not applied yet as a
negative balance: the planner claims only positive balances, so it is never claimed, and
sums of balances net it. Applying it lowers other receivables' balances and is recorded in
``credit_applications``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from cobro.intake.columns import CREDIT_NOTE
from cobro.store import tables as t


def apply_credits(conn: Connection, customer_ids: list[int], now: datetime) -> None:
    """Apply these customers' unapplied credit notes to their open receivables.

    A credit note that names an invoice (``invoice`` column: its external_id or number, or
    the invoice number of its instalments) goes to it first, then, like a payment, to the
    customer's other open receivables in the same currency, oldest due first; a credit
    note naming an invoice not imported yet waits for it. What is left stays on the credit
    note. The import calls it after every receivables batch, so the order of the rows
    does not matter.
    """
    if not customer_ids:
        return
    r, ca = t.receivables.c, t.credit_applications
    credits = conn.execute(
        select(r.id, r.customer_id, r.currency, r.balance_minor, r.invoice_number)
        .where(r.customer_id.in_(customer_ids), r.kind == CREDIT_NOTE, r.balance_minor < 0)
        .order_by(r.due_on, r.id)
        .with_for_update()
    ).all()
    if not credits:
        return
    refs = sorted({c.invoice_number for c in credits if c.invoice_number})
    named = r.external_id.in_(refs) | r.number.in_(refs) | r.invoice_number.in_(refs)
    items = conn.execute(
        select(r.id, r.customer_id, r.currency, r.balance_minor, r.external_id, r.number)
        .add_columns(r.invoice_number)
        .where(
            r.customer_id.in_(sorted({int(c.customer_id) for c in credits})),
            r.kind != CREDIT_NOTE,
            (r.balance_minor > 0) | named if refs else r.balance_minor > 0,
        )
        .order_by(r.due_on, r.id)
        .with_for_update()
    ).all()
    balance = {int(i.id): int(i.balance_minor) for i in items}
    applications: list[dict[str, Any]] = []
    for c in credits:
        mine = [i for i in items if i.customer_id == c.customer_id and i.currency == c.currency]
        first: list[int] = []
        if c.invoice_number:
            ref = c.invoice_number
            first = [int(i.id) for i in mine if ref in (i.external_id, i.number, i.invoice_number)]
            if not first:
                continue  # its invoice is not imported yet
        left = -int(c.balance_minor)
        for rid in [*first, *(int(i.id) for i in mine if int(i.id) not in first)]:
            part = min(left, balance[rid])
            if part > 0:
                applications.append(
                    {"credit_note_id": int(c.id), "receivable_id": rid, "amount_minor": part}
                )
                balance[rid] -= part
                left -= part
            if left == 0:
                break
        balance[int(c.id)] = -left
    if not applications:
        return
    conn.execute(insert(ca), applications)
    touched = {a["receivable_id"] for a in applications} | {
        a["credit_note_id"] for a in applications
    }
    conn.execute(
        update(t.receivables)
        .where(r.id == bindparam("b_id"))
        .values(balance_minor=bindparam("b_balance"), updated_at=now),
        [{"b_id": rid, "b_balance": balance[rid]} for rid in sorted(touched)],
    )
