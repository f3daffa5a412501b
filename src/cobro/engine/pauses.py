"""Items dunning leaves alone: disputed or promised (paused), or voided by an accepted dispute.

* An item with an **open dispute** is paused until staff resolve it: ``rejected``, it
  is claimed again; ``accepted``, it is **void** (the debt is not owed and the company
  issues a credit note, which closes it) and stays out of every claim while it is open.
* An item in an **open promise** to pay is paused until ``promised_on + grace_days``
  (that day included). Each daily plan first settles the open promises
  (``settle_promises``): one whose items are all paid is ``kept``, at once, even
  before its date; one with an item still unpaid after the grace is ``broken`` (and
  emitted to the company's webhooks as ``promise.broken``), and its items are claimed
  again from the next claim on.

A paused item is left out of the claims (the planner's debt, the items a claim lists, the
items re-read at send time) but still holds its debtor's level (``cobro.domain.
escalation``), so dunning resumes where the debtor stood, one claim at a time. Pauses are
few: the planner loads them into a small temporary table once per run, and adds nothing
to its queries when there are none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    Table,
    false,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from cobro.engine.webhooks import Event, emit, money
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t
from cobro.store.db import temporary_table

PAUSING = ("open", "accepted")  # dispute statuses that keep an item out of claims


def _pause_rows(company_id: int, receivable_ids: Iterable[int] | None = None) -> Any:
    """(receivable_id, customer_id, void) of every open item under an open or accepted
    dispute, or in an open promise (one row per reason)."""
    d, p, pi, r = t.disputes.c, t.promises.c, t.promise_items.c, t.receivables.c
    disputed = (
        select(r.id.label("receivable_id"), r.customer_id, (d.status == "accepted").label("void"))
        .select_from(t.disputes)
        .join(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id, d.status.in_(PAUSING), r.balance_minor > 0)
    )
    promised = (
        select(r.id.label("receivable_id"), r.customer_id, false().label("void"))
        .select_from(t.promises)
        .join(t.promise_items, pi.promise_id == p.id)
        .join(t.receivables, r.id == pi.receivable_id)
        .where(p.company_id == company_id, p.status == "open", r.balance_minor > 0)
    )
    if receivable_ids is not None:
        ids = list(receivable_ids)
        disputed = disputed.where(d.receivable_id.in_(ids))
        promised = promised.where(pi.receivable_id.in_(ids))
    return union_all(disputed, promised)


def paused_items(
    conn: Connection, company_id: int, receivable_ids: Iterable[int] | None = None
) -> dict[int, tuple[int, bool]]:
    """Receivable id -> (debtor id, void) of the open items dunning leaves out now
    (of ``receivable_ids`` only, when given)."""
    found: dict[int, tuple[int, bool]] = {}
    for row in conn.execute(_pause_rows(company_id, receivable_ids)):
        before = found.get(row.receivable_id)
        found[row.receivable_id] = (
            int(row.customer_id),
            bool(row.void) or (before is not None and before[1]),
        )
    return found


def paused_table(conn: Connection, company_id: int) -> Table | None:
    """The items left out today, as the temporary table ``cobro_paused`` (receivable_id,
    customer_id, void); None when there are none. The caller drops it."""
    found = paused_items(conn, company_id)
    if not found:
        return None
    table = temporary_table(
        "cobro_paused",
        Column("receivable_id", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", Integer, nullable=False),
        Column("void", Boolean, nullable=False),
    )
    table.drop(conn, checkfirst=True)
    table.create(conn)
    conn.execute(
        table.insert(),
        [
            {"receivable_id": rid, "customer_id": cid, "void": void}
            for rid, (cid, void) in sorted(found.items())
        ],
    )
    return table


def not_left_out(
    receivable_id: ColumnElement[int], paused: Table | None
) -> ColumnElement[bool] | None:
    """A condition keeping only items that are not in ``paused`` (None: no condition)."""
    if paused is None:
        return None
    return receivable_id.not_in(select(paused.c.receivable_id))


@dataclass
class Settled:
    """Promises settled by a run."""

    kept: list[int] = field(default_factory=list)
    broken: list[int] = field(default_factory=list)
    customers: set[int] = field(default_factory=set)  # whose promise broke: claimed again


def pause_ends(promised_on: date, grace_days: int) -> date:
    """The last day a promise's items are paused."""
    return promised_on + timedelta(days=grace_days)


def settle_promises(conn: Connection, company_id: int, run_on: date, at: datetime) -> Settled:
    """Mark ``kept`` every open promise whose items are all paid, and ``broken`` every one
    still unpaid after ``promised_on + grace_days``; each with its evidence entry."""
    p, pi, r = t.promises.c, t.promise_items.c, t.receivables.c
    open_promises: dict[int, dict[str, Any]] = {}
    for row in conn.execute(
        select(
            p.id,
            p.customer_id,
            p.promised_on,
            p.grace_days,
            r.number,
            r.balance_minor,
            r.currency,
        )
        .join(t.promise_items, pi.promise_id == p.id)
        .join(t.receivables, r.id == pi.receivable_id)
        .where(p.company_id == company_id, p.status == "open")
        .order_by(p.id, r.due_on, r.id)
    ):
        promise = open_promises.setdefault(
            row.id,
            {
                "customer_id": int(row.customer_id),
                "promised_on": row.promised_on,
                "grace_days": int(row.grace_days),
                "unpaid": {},
                "currency": {},
            },
        )
        if row.balance_minor > 0:
            promise["unpaid"][row.number] = int(row.balance_minor)
            promise["currency"][row.number] = str(row.currency)
    done = Settled()
    evidence: list[EvidenceEntry] = []
    broken: list[Event] = []
    for pid, promise in open_promises.items():
        until = pause_ends(promise["promised_on"], promise["grace_days"])
        if not promise["unpaid"]:
            done.kept.append(pid)
            kind, payload = "promise.kept", {"promised_on": promise["promised_on"].isoformat()}
        elif run_on > until:
            done.broken.append(pid)
            done.customers.add(promise["customer_id"])
            kind = "promise.broken"
            payload = {
                "promised_on": promise["promised_on"].isoformat(),
                "paused_until": until.isoformat(),
                "unpaid": promise["unpaid"],
            }
            broken.append(
                Event(
                    "promise.broken",
                    str(pid),
                    promise["customer_id"],
                    at,
                    {
                        "promise": {
                            "id": pid,
                            "promised_on": promise["promised_on"].isoformat(),
                            "paused_until": until.isoformat(),
                            "unpaid": [
                                {
                                    "number": number,
                                    "balance": money(minor, promise["currency"][number]),
                                }
                                for number, minor in promise["unpaid"].items()
                            ],
                        }
                    },
                )
            )
        else:
            continue
        evidence.append(EvidenceEntry(kind, f"promise:{pid}", promise["customer_id"], at, payload))
    for status, ids in (("kept", done.kept), ("broken", done.broken)):
        if ids:
            conn.execute(
                update(t.promises)
                .where(p.id.in_(ids), p.status == "open")
                .values(status=status, settled_at=at)
            )
    append(conn, company_id, evidence)
    emit(conn, company_id, broken)
    return done
