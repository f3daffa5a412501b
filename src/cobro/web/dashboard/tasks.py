"""The task board (seed 002's "Tablero" and "Tareas"): open tasks, those due today, those
overdue, the done ones, of everyone or of one assignee, with how many each assignee has;
a collector marks a task done (``cobro tasks done``) or gives it to a staff user."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from cobro.engine.apikeys import allows
from cobro.engine.tasks import (
    BOARD_VIEWS,
    AssignError,
    assign_task,
    board_counts,
    complete_task,
    task_board,
    task_of,
)
from cobro.engine.users import list_users
from cobro.web.dashboard.helpers import back_to, day_bounds, field, one_of, read, with_query, write
from cobro.web.dashboard.session import PREFIX, Refused, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
NOBODY = "none"  # the assignee filter's value for tasks given to nobody


@router.get("/tasks", name="dashboard_tasks")
def tasks(
    request: Request,
    who: StaffDep,
    view: str = "open",
    assignee: str | None = None,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    state = who.state
    day = day_bounds(state.today(), state.ws.config.company.timezone)

    def work(conn: Connection) -> tuple[Any, Any, list[str]]:
        users = [u.email for u in list_users(conn, who.company_id) if allows(u.role, "collector")]
        chosen_assignee = assignee if assignee == NOBODY or assignee in users else None
        page = task_board(
            conn,
            who.company_id,
            chosen_view,  # type: ignore[arg-type]
            day,
            assignee="" if chosen_assignee == NOBODY else chosen_assignee,
            cursor=cursor,
        )
        return page, board_counts(conn, who.company_id, day), users

    chosen_view = one_of(view, BOARD_VIEWS) or "open"
    page, counts, users = read(who, work)
    chosen = {
        "view": chosen_view,
        "assignee": assignee if assignee == NOBODY or assignee in users else None,
    }
    kept = {k: v for k, v in chosen.items() if v and not (k == "view" and v == "open")}
    here = f"{PREFIX}/tasks" + (f"?{urlencode(kept)}" if kept else "")
    if cursor:
        here = with_query(here, cursor=cursor)

    def link(**changes: str | None) -> str:
        merged = {**kept, **changes}
        query = {k: v for k, v in merged.items() if v and not (k == "view" and v == "open")}
        return f"{PREFIX}/tasks" + (f"?{urlencode(query)}" if query else "")

    totals = {
        "open": sum(c.open for c in counts),
        "today": sum(c.today for c in counts),
        "overdue": sum(c.overdue for c in counts),
    }
    return render(
        who,
        request,
        "tasks.j2",
        {
            "page": page,
            "chosen": chosen,
            "views": BOARD_VIEWS,
            "counts": counts,
            "totals": totals,
            "users": users,
            "nobody": NOBODY,
            "link": link,
            "here": here,
            "start": day[0],
            "done": done if done in ("done", "assigned") else None,
            "paged": cursor is not None,
            "first_url": link(),
            "next_url": with_query(link(), cursor=page.next_cursor) if page.next_cursor else None,
        },
        screen="tasks",
    )


async def _task_form(request: Request, who: Staff, task_id: int) -> tuple[str, str]:
    """The POST's form (403 unless a collector's with its token), once the task is found
    to be the company's (404 otherwise): (where to go back to, the assignee field)."""
    found = await run_in_threadpool(read, who, lambda conn: task_of(conn, who.company_id, task_id))
    if found is None:
        raise not_found()
    form = await posted(request, who, "collector")
    return back_to(field(form, "back"), "tasks"), field(form, "assignee")


@router.post("/tasks/{task_id}/done", name="dashboard_task_done")
async def task_done(request: Request, task_id: int, who: StaffDep) -> Response:
    """Mark the task done (``cobro tasks done``)."""
    from cobro.errors import CobroError

    back, _ = await _task_form(request, who, task_id)
    try:
        await run_in_threadpool(
            write, who, lambda conn: complete_task(conn, who.company_id, task_id, who.state.now())
        )
    except CobroError:
        raise Refused(409, "task_already_done") from None
    return RedirectResponse(with_query(back, done="done"), status_code=303)


@router.post("/tasks/{task_id}/assign", name="dashboard_task_assign")
async def task_assign(request: Request, task_id: int, who: StaffDep) -> Response:
    """Give the task to a collector or an admin of the company, or to nobody."""
    back, assignee = await _task_form(request, who, task_id)
    try:
        await run_in_threadpool(
            write,
            who,
            lambda conn: assign_task(conn, who.company_id, task_id, assignee or None),
        )
    except AssignError as exc:
        raise Refused(422, "task_not_assigned", why=str(exc)) from None
    return RedirectResponse(with_query(back, done="assigned"), status_code=303)
