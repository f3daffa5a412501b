"""Importing receivables: invoices, instalments and credit notes, upserted by
``external_id`` with their balance kept consistent with what is already paid or credited
on them; credit notes are then applied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, union_all

from cobro.intake.columns import CREDIT_NOTE, RECEIVABLE_KINDS
from cobro.intake.credits import apply_credits
from cobro.intake.import_cells import Fields, column_max_len, fmt, to_minor
from cobro.intake.import_run import (
    Parsed,
    Run,
    bulk_update,
    customer_ids_of,
    existing_rows,
    no_customer,
)
from cobro.store import tables as t

_RECEIVABLE_COLS = (
    "customer_id",
    "kind",
    "number",
    "invoice_number",
    "issued_on",
    "due_on",
    "currency",
    "amount_minor",
    "balance_minor",
    "description",
)


def parse_receivable(f: Fields, run: Run) -> dict[str, Any]:
    r = t.receivables
    v: dict[str, Any] = {
        "external_id": f.text("external_id", column_max_len(r, "external_id"), required=True),
        "customer": f.text("customer", column_max_len(t.customers, "external_id"), required=True),
        "due_on": f.date("due_on", required=True),
        "amount": f.decimal("amount", required=True, positive=True, signed=True),
    }
    if f.has("kind"):
        v["kind"] = f.choice("kind", RECEIVABLE_KINDS, "invoice")
    if v["amount"] is not None and v["amount"] < 0:
        # A negative amount is a credit note, as accounting systems export them.
        if f.raw("kind") is not None and v.get("kind") != CREDIT_NOTE:
            f.fail("amount", f"{v['amount']} is negative: only a credit_note has a negative amount")
        v["kind"] = CREDIT_NOTE
        v["amount"] = -v["amount"]
    if f.has("number"):
        v["number"] = f.text("number", column_max_len(r, "number"))
    if f.has("invoice"):
        v["invoice_number"] = f.text("invoice", column_max_len(r, "invoice_number"))
    if f.has("issued_on"):
        v["issued_on"] = f.date("issued_on")
    if f.has("currency"):
        v["currency"] = f.currency("currency", run.currency)
    if f.has("description"):
        v["description"] = f.text("description", column_max_len(r, "description"))
    v["balance"] = f.decimal("balance")
    return v


def store_receivables(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    customer_ids = customer_ids_of(conn, run, (p.values["customer"] for p in batch))
    existing = existing_rows(conn, run, t.receivables, batch, lock=True)
    allocated: dict[int, int] = {}  # paid or credited on each receivable; applied of a credit
    if existing:
        a, ca = t.allocations, t.credit_applications
        ids = [r["id"] for r in existing.values()]
        taken = union_all(
            select(a.c.receivable_id.label("rid"), a.c.amount_minor).where(
                a.c.receivable_id.in_(ids)
            ),
            select(ca.c.receivable_id, ca.c.amount_minor).where(ca.c.receivable_id.in_(ids)),
            select(ca.c.credit_note_id, ca.c.amount_minor).where(ca.c.credit_note_id.in_(ids)),
        ).subquery()
        rows = conn.execute(
            select(taken.c.rid, func.sum(taken.c.amount_minor)).group_by(taken.c.rid)
        )
        allocated = {int(rid): int(total or 0) for rid, total in rows}
    defaults: dict[str, Any] = {
        "kind": "invoice",
        "number": None,
        "invoice_number": None,
        "issued_on": None,
        "currency": run.currency,
        "description": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in batch:
        f = Fields(p.line, p.fields.data)
        ref = p.values["customer"]
        if ref not in customer_ids:
            f.fail("customer", no_customer(ref))
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _RECEIVABLE_COLS}
        row.update({k: v for k, v in p.values.items() if k in row})
        row["customer_id"] = customer_ids.get(ref)
        row["number"] = row["number"] or p.external_id
        paid = allocated.get(old["id"], 0) if old is not None else 0
        cur = row["currency"]
        credit = row["kind"] == CREDIT_NOTE
        if old is not None and credit != (old["kind"] == CREDIT_NOTE):
            f.fail(
                "kind",
                f"{p.external_id} is stored as {old['kind']}: an invoice and a credit note "
                "are different documents, each with its own external_id",
            )
        if row["invoice_number"] and row["kind"] not in ("instalment", CREDIT_NOTE):
            f.fail(
                "invoice",
                "only an instalment or a credit note refers to an invoice "
                "(set kind to instalment or credit_note)",
            )
        if row["issued_on"] and row["issued_on"] > row["due_on"]:
            f.fail("issued_on", f"{row['issued_on']} is after due_on {row['due_on']}")
        if old is not None and paid and cur != old["currency"]:
            f.fail(
                "currency",
                f"cannot change {p.external_id} from {old['currency']} to {cur}: "
                "payments are already allocated to it",
            )
        if (
            old is not None
            and paid
            and ref in customer_ids
            and row["customer_id"] != old["customer_id"]
        ):
            f.fail(
                "customer",
                f"cannot move {p.external_id} to another customer: "
                "payments of its customer are already allocated to it",
            )
        amount = to_minor(f, "amount", p.values["amount"], cur)
        balance = to_minor(f, "balance", p.values["balance"], cur)
        if credit and balance is not None:
            f.fail(
                "balance", "a credit note has no balance: Cobro applies it to the debtor's items"
            )
        if amount is not None and credit:
            # Stored negative, with the credit not yet applied as a negative balance: the
            # planner only claims positive balances, and sums of balances net the credit.
            row["amount_minor"] = -amount
            row["balance_minor"] = -(amount - paid)
            if amount < paid:
                f.fail(
                    "amount",
                    f"{fmt(amount, cur)} is less than the {fmt(paid, cur)} of this credit note "
                    "already applied",
                )
        elif amount is not None:
            row["amount_minor"] = amount
            if balance is not None:
                if balance > amount:
                    f.fail("balance", f"{fmt(balance, cur)} is more than the amount")
                row["balance_minor"] = balance
            else:
                row["balance_minor"] = amount - paid
                if amount < paid:
                    f.fail(
                        "amount",
                        f"{fmt(amount, cur)} is less than the {fmt(paid, cur)} already paid on it",
                    )
        if f.problems:
            for col, problem in f.problems:
                run.reject(p.line, col, problem)
            continue
        if old is None:
            row.update(company_id=run.company_id, external_id=p.external_id, updated_at=run.now)
            inserts.append(row)
        elif any(row[c] != old[c] for c in _RECEIVABLE_COLS):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.receivables), inserts)
    bulk_update(conn, t.receivables, (*_RECEIVABLE_COLS, "updated_at"), updates)
    run.inserted += len(inserts)
    run.updated += len(updates)
    apply_credits(conn, sorted(set(customer_ids.values())), run.now)
