"""Importing reversals: a returned payment undone, its allocations reversed, the balances it
paid reopened and the reversal appended to the evidence chain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from cobro.domain.money import Money
from cobro.evidence.chain import EvidenceEntry, append
from cobro.intake.import_cells import fmt
from cobro.intake.import_run import Parsed, Run, bulk_update, recorded_payments
from cobro.store import tables as t


def store_reversals(conn: Connection, run: Run, batch: list[Parsed]) -> None:
    """Undo payments (a returned direct debit): what they paid is owed again.

    A reversal is stored as a payment with negative amounts that names the payment it
    undoes; each allocation of that payment gets a negative twin, the receivables get
    their balances back (never above their amount), and the reversal is appended to the
    evidence chain. The planner sees the reopened balances: dunning resumes.
    """
    pay, alloc, rec, cus = t.payments, t.allocations, t.receivables, t.customers
    recorded = recorded_payments(conn, run, [p.external_id for p in batch])
    undone = pay.alias("undone")
    reversal = pay.alias("reversal")
    targets = {
        r.external_id: r
        for r in conn.execute(
            select(
                undone.c.id,
                undone.c.external_id,
                undone.c.customer_id,
                undone.c.receivable_id,
                undone.c.currency,
                undone.c.amount_minor,
                undone.c.unallocated_minor,
                undone.c.reverses_id,
                cus.c.external_id.label("customer"),
                reversal.c.external_id.label("reversed_by"),
            )
            .join(cus, cus.c.id == undone.c.customer_id)
            .outerjoin(reversal, reversal.c.reverses_id == undone.c.id)
            .where(
                undone.c.company_id == run.company_id,
                undone.c.external_id.in_(sorted({p.values["reverses"] for p in batch})),
            )
            .with_for_update(of=undone)
        )
    }
    paid: dict[int, list[tuple[int, int]]] = {}
    for a in conn.execute(
        select(alloc.c.payment_id, alloc.c.receivable_id, alloc.c.amount_minor)
        .where(alloc.c.payment_id.in_([int(x.id) for x in targets.values()]))
        .order_by(alloc.c.id)
    ):
        paid.setdefault(int(a.payment_id), []).append((int(a.receivable_id), int(a.amount_minor)))
    receivables = {
        int(r.id): r
        for r in conn.execute(
            select(rec.c.id, rec.c.external_id, rec.c.amount_minor, rec.c.balance_minor)
            .where(rec.c.id.in_(sorted({rid for parts in paid.values() for rid, _ in parts})))
            .with_for_update()
        )
    }
    balance = {rid: int(r.balance_minor) for rid, r in receivables.items()}

    reversals: list[dict[str, Any]] = []
    reopened: list[list[tuple[int, int]]] = []
    evidence: list[EvidenceEntry] = []
    reversed_now: dict[str, str] = {}
    for p in batch:
        v = p.values
        ref = v["reverses"]
        target = targets.get(ref)
        old = recorded.get(p.external_id)
        if old is not None:
            same = (
                old.reverses == ref
                and old.customer == v["customer"]
                and old.paid_on == v["paid_on"]
                and (not v["currency_given"] or old.currency == v["currency"])
                and v["amount_minor"] in (None, -int(old.amount_minor))
            )
            if same:
                run.unchanged += 1
            else:
                run.reject(
                    p.line,
                    "reverses",
                    f"{p.external_id} was already recorded "
                    + (f"as the reversal of {old.reverses}" if old.reverses else "as a payment")
                    + f" (customer {old.customer}, on {old.paid_on}, "
                    f"{fmt(abs(int(old.amount_minor)), old.currency)}); "
                    "a recorded payment cannot be changed",
                )
            continue
        problem = None
        if target is None:
            problem = f"no payment with external_id {ref!r}"
        elif target.customer != v["customer"]:
            problem = f"payment {ref} is of customer {target.customer}, not {v['customer']}"
        elif target.reverses_id is not None:
            problem = f"{ref} is itself a reversal"
        elif target.reversed_by or ref in reversed_now:
            problem = (
                f"payment {ref} was already reversed by {target.reversed_by or reversed_now[ref]}"
            )
        elif v["currency_given"] and v["currency"] != target.currency:
            problem = f"payment {ref} is in {target.currency}, not {v['currency']}"
        elif v["amount_minor"] not in (None, int(target.amount_minor)):
            problem = (
                f"a reversal returns the whole payment: {ref} was "
                f"{fmt(int(target.amount_minor), target.currency)}"
            )
        if problem is not None:
            run.reject(p.line, "reverses", problem)
            continue
        assert target is not None
        reversed_now[ref] = p.external_id
        back: list[tuple[int, int]] = []
        for rid, part in paid.get(int(target.id), []):
            restored = min(part, int(receivables[rid].amount_minor) - balance[rid])
            balance[rid] += restored
            back.append((rid, part))
        reopened.append(back)
        reversals.append(
            {
                "company_id": run.company_id,
                "customer_id": int(target.customer_id),
                "external_id": p.external_id,
                "receivable_id": target.receivable_id,
                "paid_on": v["paid_on"],
                "currency": target.currency,
                "amount_minor": -int(target.amount_minor),
                "unallocated_minor": -int(target.unallocated_minor),
                "reverses_id": int(target.id),
                "created_at": run.now,
            }
        )
        evidence.append(
            EvidenceEntry(
                "payment.reversed",
                f"payment:{int(target.id)}",
                int(target.customer_id),
                run.now,
                {
                    "payment": ref,
                    "reversal": p.external_id,
                    "returned_on": v["paid_on"].isoformat(),
                    "amount": str(Money.from_minor(int(target.amount_minor), target.currency)),
                    "reopened": [
                        {
                            "receivable": receivables[rid].external_id,
                            "amount": fmt(part, target.currency),
                        }
                        for rid, part in back
                    ],
                },
            )
        )

    if reversals:
        conn.execute(insert(pay), reversals)
        ids = {
            r.external_id: int(r.id)
            for r in conn.execute(
                select(pay.c.id, pay.c.external_id).where(
                    pay.c.company_id == run.company_id,
                    pay.c.external_id.in_([x["external_id"] for x in reversals]),
                )
            )
        }
        rows = [
            {"payment_id": ids[x["external_id"]], "receivable_id": rid, "amount_minor": -part}
            for x, back in zip(reversals, reopened, strict=True)
            for rid, part in back
        ]
        if rows:
            conn.execute(insert(alloc), rows)
        touched = sorted({rid for back in reopened for rid, _ in back})
        bulk_update(
            conn,
            rec,
            ("balance_minor", "updated_at"),
            [{"id": rid, "balance_minor": balance[rid], "updated_at": run.now} for rid in touched],
        )
        append(conn, run.company_id, evidence)
    run.inserted += len(reversals)
