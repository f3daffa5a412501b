"""Staff tasks created by scheduled actions, by undeliverable claims and by staff: listing,
completing, giving them to a staff user, the dashboard's task board; and a debtor's
statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Literal

from sqlalchemy import Connection, and_, case, exists, func, or_, select, update

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
    assignee: str | None = None  # the staff user's email, or None

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
            "assignee": self.assignee,
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
    assignee: str | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Task]:
    """Tasks, soonest due first (``status``: those in it; ``task_id``: that one;
    ``assignee``: those given to that staff user, an email, or ``""`` to nobody). With
    ``after`` or ``limit``, a page of them in the order of their ids: ``limit`` with an id
    above ``after``."""
    k, c = t.tasks.c, t.customers.c
    q = (
        select(*_task_columns())
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
    if assignee == "":
        q = q.where(k.assignee.is_(None))
    elif assignee is not None:
        q = q.where(k.assignee == assignee.strip().lower())
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
    found = task_of(conn, company_id, task_id)
    assert found is not None
    return found


def _task_columns() -> tuple[Any, ...]:
    k, c = t.tasks.c, t.customers.c
    return (
        k.id,
        c.external_id,
        c.name,
        k.action_key,
        k.created_on,
        k.due_at,
        k.message,
        k.status,
        k.done_at,
        k.assignee,
    )


def task_of(conn: Connection, company_id: int, task_id: int) -> Task | None:
    """The company's task ``task_id``, or None (unknown, or another company's)."""
    k, c = t.tasks.c, t.customers.c
    row = conn.execute(
        select(*_task_columns())
        .join(t.customers, c.id == k.customer_id)
        .where(k.id == task_id, k.company_id == company_id)
    ).first()
    return None if row is None else Task(*row)


class AssignError(CobroError):
    """A task that cannot be given to the user named."""


def assign_task(conn: Connection, company_id: int, task_id: int, assignee: str | None) -> Task:
    """Give the company's task ``task_id`` to the staff user ``assignee`` (an email of a
    collector or an admin of the company), or to nobody (None). ``AssignError`` for an
    unknown task or a user who is not the company's or cannot act on tasks."""
    k, u = t.tasks.c, t.staff_users.c
    email = assignee.strip().lower() if assignee else None
    if email is not None:
        role = conn.execute(
            select(u.role).where(u.company_id == company_id, u.email == email)
        ).scalar()
        if role is None:
            raise AssignError(f"{email} is not a staff user of the company")
        if role == "read-only":
            raise AssignError(f"{email} reads only: a task can be given to a collector or an admin")
    done = conn.execute(
        update(t.tasks).where(k.id == task_id, k.company_id == company_id).values(assignee=email)
    )
    if done.rowcount == 0:
        raise AssignError(f"no task {task_id}")
    found = task_of(conn, company_id, task_id)
    assert found is not None
    return found


BoardView = Literal["open", "today", "overdue", "done"]
BOARD_VIEWS: tuple[BoardView, ...] = ("open", "today", "overdue", "done")
BOARD_PAGE = 50


@dataclass(frozen=True)
class BoardTask:
    """A task on the board, with its debtor's id (the account it links to)."""

    task: Task
    customer_id: int


@dataclass
class TaskPage:
    rows: list[BoardTask] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True)
class AssigneeCount:
    """Open tasks of one assignee (None: given to nobody): all, due today, overdue."""

    assignee: str | None
    open: int
    today: int
    overdue: int


def task_board(
    conn: Connection,
    company_id: int,
    view: BoardView,
    day: tuple[datetime, datetime],
    *,
    assignee: str | None = None,
    cursor: str | None = None,
    limit: int = BOARD_PAGE,
) -> TaskPage:
    """A page of the board's ``view``: open tasks (soonest due first), those due in ``day``
    ([start, end) of today, company time), those overdue (due before it), or the done ones
    (last done first). ``assignee``: only that user's (an email), or ``""`` for the tasks
    given to nobody. Keyset pages: each continues after the last row of the one before."""
    from cobro.engine.debtor_search import decode_cursor, encode_cursor

    k, c = t.tasks.c, t.customers.c
    start, end = day
    q = (
        select(*_task_columns(), k.customer_id)
        .join(t.customers, c.id == k.customer_id)
        .where(k.company_id == company_id)
    )
    if assignee == "":
        q = q.where(k.assignee.is_(None))
    elif assignee is not None:
        q = q.where(k.assignee == assignee.lower())
    newest_first = view == "done"
    key = func.coalesce(k.done_at, k.due_at) if newest_first else k.due_at
    if view == "done":
        q = q.where(k.status == "done")
    else:
        q = q.where(k.status == "open")
        if view == "today":
            q = q.where(k.due_at >= start, k.due_at < end)
        elif view == "overdue":
            q = q.where(k.due_at < start)
    after = decode_cursor(cursor)
    if after is not None and isinstance(after[0], str):
        try:
            at = datetime.fromisoformat(after[0])
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            if newest_first:
                q = q.where(or_(key < at, and_(key == at, k.id < after[1])))
            else:
                q = q.where(or_(key > at, and_(key == at, k.id > after[1])))
    q = q.order_by(key.desc(), k.id.desc()) if newest_first else q.order_by(key, k.id)
    found = conn.execute(q.limit(limit + 1)).all()
    rows = [BoardTask(Task(*row[:10]), int(row.customer_id)) for row in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = rows[-1].task
        value = (last.done_at or last.due_at) if newest_first else last.due_at
        next_cursor = encode_cursor([value.isoformat(), last.id])
    return TaskPage(rows, next_cursor)


def board_counts(
    conn: Connection, company_id: int, day: tuple[datetime, datetime]
) -> list[AssigneeCount]:
    """Per assignee (nobody last), the open tasks: all, due in ``day``, overdue."""
    k = t.tasks.c
    start, end = day

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    rows = conn.execute(
        select(
            k.assignee,
            func.count(),
            count(and_(k.due_at >= start, k.due_at < end)),
            count(k.due_at < start),
        )
        .where(k.company_id == company_id, k.status == "open")
        .group_by(k.assignee)
    ).all()
    found = [AssigneeCount(row[0], int(row[1]), int(row[2]), int(row[3])) for row in rows]
    return sorted(found, key=lambda x: (x.assignee is None, x.assignee or ""))


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
