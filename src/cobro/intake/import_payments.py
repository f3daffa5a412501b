"""Importing payments: each recorded once, allocated to the receivable it names, then to the
customer's oldest open ones in its currency; a row that reverses a payment goes to
``import_reversals``, in the file's order."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select

from cobro.intake.columns import CREDIT_NOTE
from cobro.intake.import_cells import Fields, column_max_len, fmt, same_amount, to_minor
from cobro.intake.import_reversals import store_reversals
from cobro.intake.import_run import (
    Parsed,
    Run,
    bulk_update,
    customer_ids_of,
    no_customer,
    recorded_payments,
)
from cobro.store import tables as t


def parse_payment(f: Fields, run: Run) -> dict[str, Any]:
    p = t.payments
    v: dict[str, Any] = {
        "external_id": f.text("external_id", column_max_len(p, "external_id"), required=True),
        "customer": f.text("customer", column_max_len(t.customers, "external_id"), required=True),
        "receivable": f.text("receivable", column_max_len(t.receivables, "external_id")),
        "paid_on": f.date("paid_on", required=True),
        "currency": f.currency("currency", run.currency),
        "reverses": f.text("reverses", column_max_len(p, "external_id")),
    }
    if v["reverses"] is None:
        amount = f.decimal("amount", required=True, positive=True)
    else:
        # A reversal returns a whole payment: its amount may be left empty or given with
        # either sign, as bank statements write a returned debit.
        amount = f.decimal("amount", positive=True, signed=True)
        v["currency_given"] = f.raw("currency") is not None
        if v["receivable"] is not None:
            f.fail("receivable", "a reversal names only the payment it reverses (reverses)")
    v["amount_minor"] = to_minor(f, "amount", abs(amount) if amount else amount, v["currency"])
    return v


@dataclass
class _Open:
    """A customer's open receivables in one currency, oldest due first."""

    ids: list[int] = field(default_factory=list)
    next: int = 0  # the ones before this index are paid in full


def _allocate(
    amount: int, target: int | None, queue: _Open | None, balance: dict[int, int]
) -> tuple[list[tuple[int, int]], int]:
    """Allocate ``amount`` to ``target`` first, then oldest due first; lowers ``balance``.

    Returns the ``(receivable_id, minor)`` allocations and what is left unallocated.
    """
    left = amount
    allocs: list[tuple[int, int]] = []

    def take(rid: int) -> None:
        nonlocal left
        part = min(left, balance.get(rid, 0))
        if part > 0:
            allocs.append((rid, part))
            balance[rid] -= part
            left -= part

    if target is not None:
        take(target)
    if queue is not None:
        while left > 0 and queue.next < len(queue.ids):
            rid = queue.ids[queue.next]
            take(rid)
            if balance[rid] == 0:
                queue.next += 1
    return allocs, left


def store_payments(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    """Payments and reversals, in the order of the file (a reversal may follow its payment)."""
    for reversals, rows in itertools.groupby(batch, key=lambda p: p.values["reverses"] is not None):
        store = store_reversals if reversals else _store_new_payments
        store(conn, run, list(rows))


def _store_new_payments(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    pay, rec, cus = t.payments, t.receivables, t.customers
    customer_ids = customer_ids_of(conn, run, (p.values["customer"] for p in batch))
    recorded = recorded_payments(conn, run, [p.external_id for p in batch])

    named_refs = sorted({p.values["receivable"] for p in batch if p.values["receivable"]})
    named: dict[str, Any] = {}
    if named_refs:
        named = {
            r.external_id: r
            for r in conn.execute(
                select(
                    rec.c.id,
                    rec.c.external_id,
                    rec.c.customer_id,
                    rec.c.currency,
                    rec.c.kind,
                    cus.c.external_id.label("customer"),
                )
                .join(cus, cus.c.id == rec.c.customer_id)
                .where(rec.c.company_id == run.company_id, rec.c.external_id.in_(named_refs))
            )
        }

    # Every open receivable of the batch's customers, locked while we allocate. The
    # customer ids are this company's, so filtering on them alone lets the database
    # use the customer_id index rather than scan the company's open receivables.
    balance: dict[int, int] = {}
    open_by: dict[tuple[int, str], _Open] = {}
    wanted = sorted(
        {customer_ids[p.values["customer"]] for p in batch if p.values["customer"] in customer_ids}
    )
    if wanted:
        for r in conn.execute(
            select(rec.c.id, rec.c.customer_id, rec.c.currency, rec.c.balance_minor)
            .where(rec.c.customer_id.in_(wanted), rec.c.balance_minor > 0)
            .order_by(rec.c.due_on, rec.c.id)
            .with_for_update()
        ):
            balance[int(r.id)] = int(r.balance_minor)
            open_by.setdefault((int(r.customer_id), r.currency), _Open()).ids.append(int(r.id))

    new_payments: list[dict[str, Any]] = []
    new_allocations: list[list[tuple[int, int]]] = []
    touched: set[int] = set()
    for p in batch:
        v = p.values
        cur, amount = v["currency"], v["amount_minor"]
        old = recorded.get(p.external_id)
        if old is not None:
            differences = [
                (col, was, given)
                for col, was, given in (
                    ("customer", old.customer, v["customer"]),
                    ("reverses", old.reverses, None),
                    ("receivable", old.receivable, v["receivable"]),
                    ("paid_on", old.paid_on, v["paid_on"]),
                    ("currency", old.currency, cur),
                    ("amount", fmt(old.amount_minor, old.currency), fmt(amount, cur)),
                )
                if was != given
                and not (
                    col == "amount" and same_amount(old.amount_minor, old.currency, amount, cur)
                )
            ]
            if not differences:
                run.unchanged += 1
                continue
            detail = "; ".join(
                f"{col} {was or '(none)'}, now {given or '(none)'}"
                for col, was, given in differences
            )
            run.reject(
                p.line,
                differences[0][0],
                f"payment {p.external_id} was already recorded with a different "
                f"{'/'.join(d[0] for d in differences)} ({detail}); "
                "a recorded payment cannot be changed",
            )
            continue

        ref = v["customer"]
        if ref not in customer_ids:
            run.reject(p.line, "customer", no_customer(ref))
            continue
        customer_id = customer_ids[ref]
        target = None
        if v["receivable"]:
            target = named.get(v["receivable"])
            problem = None
            if target is None:
                problem = f"no receivable with external_id {v['receivable']!r}"
            elif target.customer_id != customer_id:
                problem = f"{v['receivable']} belongs to customer {target.customer}, not {ref}"
            elif target.currency != cur:
                problem = f"{v['receivable']} is in {target.currency} but the payment is in {cur}"
            elif target.kind == CREDIT_NOTE:
                problem = f"{v['receivable']} is a credit note: it is owed to the customer"
            if problem:
                run.reject(p.line, "receivable", problem)
                continue

        allocs, left = _allocate(
            amount,
            int(target.id) if target is not None else None,
            open_by.get((customer_id, cur)),
            balance,
        )
        touched.update(rid for rid, _ in allocs)
        new_payments.append(
            {
                "company_id": run.company_id,
                "customer_id": customer_id,
                "external_id": p.external_id,
                "receivable_id": int(target.id) if target is not None else None,
                "paid_on": v["paid_on"],
                "currency": cur,
                "amount_minor": amount,
                "unallocated_minor": left,
                "created_at": run.now,
            }
        )
        new_allocations.append(allocs)

    if new_payments:
        conn.execute(insert(pay), new_payments)
        ext_ids = [np["external_id"] for np in new_payments]
        ids = {
            r.external_id: int(r.id)
            for r in conn.execute(
                select(pay.c.id, pay.c.external_id).where(
                    pay.c.company_id == run.company_id, pay.c.external_id.in_(ext_ids)
                )
            )
        }
        rows = [
            {"payment_id": ids[ext], "receivable_id": rid, "amount_minor": part}
            for ext, allocs in zip(ext_ids, new_allocations, strict=True)
            for rid, part in allocs
        ]
        if rows:
            conn.execute(insert(t.allocations), rows)
    bulk_update(
        conn,
        rec,
        ("balance_minor", "updated_at"),
        [
            {"id": rid, "balance_minor": balance[rid], "updated_at": run.now}
            for rid in sorted(touched)
        ],
    )
    run.inserted += len(new_payments)
