"""The audit log: who changed what from the dashboard, and when.

Every change of the configuration (each value's path, before and after), of the banking
contacts, and everything staff record on a debtor's account (a claim resent, a promise,
a dispute, a note, a task) is one entry, written in the same transaction as what it
records where there is one. The author is kept as their email and role at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select

from cobro.store import tables as t

PAGE = 100


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    subject: str | None
    customer_id: int | None
    customer: str | None  # the debtor's external id
    customer_name: str | None
    changes: list[dict[str, Any]]


def record(
    conn: Connection,
    company_id: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    changes: list[dict[str, Any]],
    *,
    subject: str | None = None,
    customer_id: int | None = None,
) -> int:
    """Write one entry; its id."""
    result = conn.execute(
        insert(t.audit_log).values(
            company_id=company_id,
            at=at,
            actor=actor,
            role=role,
            action=action,
            subject=subject[:300] if subject else None,
            customer_id=customer_id,
            changes=changes,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def entries(
    conn: Connection,
    company_id: int,
    *,
    before: tuple[datetime, int] | None = None,
    action: str | None = None,
    limit: int = PAGE,
) -> list[Entry]:
    """The company's entries, newest first; ``before`` (at, id) continues a page."""
    a, c = t.audit_log.c, t.customers.c
    query = (
        select(
            a.id,
            a.at,
            a.actor,
            a.role,
            a.action,
            a.subject,
            a.customer_id,
            c.external_id,
            c.name,
            a.changes,
        )
        .select_from(t.audit_log.outerjoin(t.customers, c.id == a.customer_id))
        .where(a.company_id == company_id)
        .order_by(a.at.desc(), a.id.desc())
        .limit(limit)
    )
    if action:
        query = query.where(or_(a.action == action, a.action.startswith(action + ".")))
    if before is not None:
        at, id_ = before
        query = query.where(or_(a.at < at, and_(a.at == at, a.id < id_)))
    return [
        Entry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            role=row.role,
            action=row.action,
            subject=row.subject,
            customer_id=row.customer_id,
            customer=row.external_id,
            customer_name=row.name,
            changes=list(row.changes or []),
        )
        for row in conn.execute(query)
    ]
