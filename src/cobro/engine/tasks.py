"""Staff tasks created by scheduled actions: listing, completing, and a debtor's statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, exists, select, update

from cobro.domain.money import Money, totals_by_currency
from cobro.errors import CobroError
from cobro.store import tables as t


@dataclass(frozen=True)
class Task:
    id: int
    customer: str
    customer_name: str
    action: str
    created_on: date
    due_at: datetime
    message: str
    status: str
    done_at: datetime | None

    def to_json(self, tz: tzinfo) -> dict[str, Any]:
        """The task as JSON, its times in ``tz`` (the company's) with their UTC offset."""
        return {
            "id": self.id,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "action": self.action,
            "created_on": self.created_on.isoformat(),
            "due_at": self.due_at.astimezone(tz).isoformat(),
            "message": self.message,
            "status": self.status,
            "done_at": self.done_at.astimezone(tz).isoformat() if self.done_at else None,
        }


def list_tasks(
    conn: Connection,
    company_id: int,
    *,
    due_before: datetime | None = None,
    customer: str | None = None,
    open_only: bool = False,
    status: str | None = None,
    task_id: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Task]:
    """Tasks, soonest due first (``status``: those in it; ``task_id``: that one). With
    ``after`` or ``limit``, a page of them in the order of their ids: ``limit`` with an id
    above ``after``."""
    k, c = t.tasks.c, t.customers.c
    q = (
        select(
            k.id,
            c.external_id,
            c.name,
            k.action_key,
            k.created_on,
            k.due_at,
            k.message,
            k.status,
            k.done_at,
        )
        .join(t.customers, c.id == k.customer_id)
        .where(k.company_id == company_id)
    )
    if due_before is not None:
        q = q.where(k.due_at < due_before)
    if customer is not None:
        q = q.where(c.external_id == customer)
    if open_only:
        q = q.where(k.status == "open")
    if status is not None:
        q = q.where(k.status == status)
    if task_id is not None:
        q = q.where(k.id == task_id)
    if after is None and limit is None:
        q = q.order_by(k.due_at, k.id)
    else:
        q = q.order_by(k.id)
        if after is not None:
            q = q.where(k.id > after)
        if limit is not None:
            q = q.limit(limit)
    return [Task(*row) for row in conn.execute(q)]


def complete_task(conn: Connection, company_id: int, task_id: int, at: datetime) -> Task:
    """Mark a task done; an unknown id, or one of another company, is an error."""
    k = t.tasks.c
    res = conn.execute(
        update(t.tasks)
        .where(k.id == task_id, k.company_id == company_id, k.status == "open")
        .values(status="done", done_at=at)
    )
    if res.rowcount == 0:
        exists = conn.execute(
            select(k.status).where(k.id == task_id, k.company_id == company_id)
        ).scalar()
        if exists is None:
            raise CobroError(f"no task {task_id}")
        raise CobroError(f"task {task_id} is already done")
    return list_tasks(conn, company_id, task_id=task_id)[0]


@dataclass(frozen=True)
class StatementLine:
    number: str
    kind: str
    due_on: date
    amount: Money
    balance: Money
    days_overdue: int


def statement(conn: Connection, company_id: int, customer: str, on: date) -> list[StatementLine]:
    """Every open item of a debtor on ``on``; ``days_overdue`` > 0 marks overdue ones.

    Credit notes are listed too while they matter: with credit not applied yet (a
    negative balance, which lowers the total) or applied to an item still open.
    """
    r, c, ca = t.receivables.c, t.customers.c, t.credit_applications.c
    item = t.receivables.alias("item")
    applied_to_open = exists().where(
        ca.credit_note_id == r.id, item.c.id == ca.receivable_id, item.c.balance_minor > 0
    )
    rows = conn.execute(
        select(r.number, r.kind, r.due_on, r.currency, r.amount_minor, r.balance_minor)
        .join(t.customers, c.id == r.customer_id)
        .where(
            r.company_id == company_id,
            c.external_id == customer,
            (r.balance_minor > 0)
            | ((r.kind == "credit_note") & ((r.balance_minor < 0) | applied_to_open)),
        )
        .order_by(r.due_on, r.id)
    )
    return [
        StatementLine(
            row.number,
            row.kind,
            row.due_on,
            Money.from_minor(row.amount_minor, row.currency),
            Money.from_minor(row.balance_minor, row.currency),
            0 if row.kind == "credit_note" else (on - row.due_on).days,
        )
        for row in rows
    ]


def statement_totals(lines: list[StatementLine]) -> dict[str, Money]:
    return totals_by_currency([x.balance for x in lines])


STAFF_TASK = "staff"  # tasks.action_key of a task staff opened by hand: + /<random>


def open_task(
    conn: Connection,
    company_id: int,
    customer_id: int,
    message: str,
    due_at: datetime,
    at: datetime,
    created_on: date,
) -> int:
    """A task staff open by hand on a debtor's account, due at ``due_at``; its id."""
    import secrets

    from sqlalchemy import insert

    message = message.strip()
    if not message:
        raise CobroError("a task needs a message")
    if len(message) > 2000:
        raise CobroError("a task's message has at most 2000 characters")
    k = t.tasks.c
    return int(
        conn.execute(
            insert(t.tasks)
            .values(
                company_id=company_id,
                customer_id=customer_id,
                action_key=f"{STAFF_TASK}/{secrets.token_hex(6)}",
                created_on=created_on,
                due_at=due_at,
                message=message,
                status="open",
                created_at=at,
            )
            .returning(k.id)
        ).scalar_one()
    )
