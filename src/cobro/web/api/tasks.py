"""``/tasks``: staff tasks, made by scheduled actions, by new disputes and by claims that
could not be delivered; one marked done (what `cobro tasks` does)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from cobro.engine.tasks import Task as TaskRecord
from cobro.engine.tasks import complete_task as finish_task
from cobro.engine.tasks import list_tasks as read_tasks
from cobro.errors import CobroError
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import CustomerFilter, Day, Id, after_id, conflict, day_start, id_page
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.pagination import Cursor, Limit, Page
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/tasks", tags=["tasks"], route_class=IdempotentRoute)

TaskStatus = Literal["open", "done"]


class Task(BaseModel):
    id: int
    customer: str = Field(description="The debtor's external_id.")
    customer_name: str
    action: str = Field(
        description="What made it: a scheduled action's key, `dispute/ID`, a failed claim's."
    )
    created_on: dt.date
    due_at: AwareDatetime
    message: str
    status: TaskStatus
    done_at: AwareDatetime | None
    assignee: str | None = Field(
        description="The staff user it is given to (an email; the dashboard's task board)."
    )


def task_out(x: TaskRecord) -> Task:
    return Task(
        id=x.id,
        customer=x.customer,
        customer_name=x.customer_name,
        action=x.action,
        created_on=x.created_on,
        due_at=x.due_at,
        message=x.message,
        status=x.status,  # type: ignore[arg-type]
        done_at=x.done_at,
        assignee=x.assignee,
    )


def find_task(who: Caller, task_id: int) -> Task:
    with who.state.reader.connect() as conn:
        found = read_tasks(conn, who.company_id, task_id=task_id)
    if not found:
        raise not_found("task with this id")
    return task_out(found[0])


@router.get("", response_model=Page[Task], summary="List staff tasks")
def list_tasks(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: TaskStatus | None = None,
    due_before: Annotated[
        Day | None,
        Query(description="Due before the start of this day (company time)."),
    ] = None,
    customer: CustomerFilter = None,
    assignee: Annotated[
        str | None,
        Query(
            max_length=320,
            description="Those given to this staff user (an email); empty: to nobody.",
        ),
    ] = None,
) -> Page[Task]:
    with who.state.reader.connect() as conn:
        found = read_tasks(
            conn,
            who.company_id,
            due_before=day_start(who, due_before) if due_before else None,
            customer=customer,
            status=status,
            assignee=assignee,
            after=after_id(cursor),
            limit=limit + 1,
        )
    return id_page([task_out(x) for x in found], limit, lambda x: x.id)


@router.get("/{task_id}", response_model=Task, summary="One staff task")
def get_task(who: Reader, task_id: Id) -> Task:
    return find_task(who, task_id)


@router.post("/{task_id}/done", response_model=Task, summary="Mark a task done")
def complete_task(who: Collector, task_id: Id) -> Task:
    """A task already done: 409."""
    find_task(who, task_id)
    with who.state.ws.engine.begin() as conn:
        try:
            task = finish_task(conn, who.company_id, task_id, who.state.now())
        except CobroError as exc:
            raise conflict(str(exc)) from None
    return task_out(task)
