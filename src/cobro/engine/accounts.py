"""Account blocking: a phase may block the debtor's account; paying the overdue debt releases it.

Both are recorded as evidence and emitted to the company's webhooks (``account.blocked``,
``account.unblocked``) in the caller's transaction."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, exists, select, true, update
from sqlalchemy.sql.dml import UpdateBase

from cobro.engine.webhooks import Event, emit, instant_ref
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t


def blocking(company_id: int, customer_ids: set[int], at: datetime) -> UpdateBase:
    """The statement blocking those of ``customer_ids`` not blocked yet, returning their ids."""
    c = t.customers.c
    return (
        update(t.customers)
        # By id (``+ 0``: SQLite would read an index of all the company's debtors).
        .where(c.company_id + 0 == company_id, c.id.in_(customer_ids), c.blocked.is_(False))
        .values(blocked=True, updated_at=at)
        .returning(c.id)
    )


def block_accounts(
    conn: Connection, company_id: int, customer_ids: set[int], step_of: dict[int, str], at: datetime
) -> int:
    """Block these debtors' accounts (those not blocked yet) and record it as evidence."""
    if not customer_ids:
        return 0
    blocked = [row.id for row in conn.execute(blocking(company_id, customer_ids, at))]
    append(
        conn,
        company_id,
        [
            EvidenceEntry("account.blocked", f"customer:{cid}", cid, at, {"by": step_of[cid]})
            for cid in sorted(blocked)
        ],
    )
    emit(
        conn,
        company_id,
        [
            Event("account.blocked", instant_ref(at), cid, at, {"by": {"step": step_of[cid]}})
            for cid in sorted(blocked)
        ],
    )
    return len(blocked)


def releasing(company_id: int, on: date, at: datetime) -> UpdateBase:
    """The update unblocking every blocked debtor without overdue debt on ``on`` (found in
    the partial index of blocked debtors), returning their ids."""
    c, r = t.customers.c, t.receivables.c
    overdue = exists().where(r.customer_id == c.id, r.balance_minor > 0, r.due_on < on)
    return (
        update(t.customers)
        .where(c.company_id == company_id, c.blocked == true(), ~overdue)
        .values(blocked=False, updated_at=at)
        .returning(c.id)
    )


def release_paid_blocks(conn: Connection, company_id: int, on: date, at: datetime) -> int:
    """Unblock every blocked debtor who no longer has overdue debt on ``on``."""
    released = [row.id for row in conn.execute(releasing(company_id, on, at))]
    append(
        conn,
        company_id,
        [
            EvidenceEntry("account.unblocked", f"customer:{cid}", cid, at, {"reason": "paid"})
            for cid in sorted(released)
        ],
    )
    emit(
        conn,
        company_id,
        [
            Event("account.unblocked", instant_ref(at), cid, at, {"reason": "paid"})
            for cid in sorted(released)
        ],
    )
    return len(released)


def blocked_accounts(conn: Connection, company_id: int) -> list[str]:
    c = t.customers.c
    return sorted(  # sorted here: SQLite would read the company's debtors in that order
        conn.execute(
            select(c.external_id).where(c.company_id == company_id, c.blocked == true())
        ).scalars()
    )
