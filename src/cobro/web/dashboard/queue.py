"""The queue of what debtors answered: open disputes, the longest waiting first, which a
collector accepts or rejects with a note (``cobro disputes resolve``); promises to pay that
are due, still ahead, or broken (``cobro.engine.work_queue``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from cobro.engine.responses import ResponseError, resolve_dispute
from cobro.engine.work_queue import PROMISE_VIEWS, dispute_of, open_disputes, promises
from cobro.web.dashboard.helpers import back_to, field, one_of, read, with_query, write
from cobro.web.dashboard.session import PREFIX, Refused, StaffDep, not_found, posted
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
DECISIONS = ("accept", "reject")
MAX_NOTE = 2000


@router.get("/disputes", name="dashboard_queue")
def queue(
    request: Request,
    who: StaffDep,
    promised: str = "due",
    dcursor: str | None = None,
    pcursor: str | None = None,
    done: str | None = None,
) -> Response:
    state = who.state
    today = state.today()
    view = one_of(promised, PROMISE_VIEWS) or "due"

    def work(conn: Connection) -> tuple[Any, Any]:
        return (
            open_disputes(conn, who.company_id, dcursor),
            promises(conn, who.company_id, view, today, pcursor),  # type: ignore[arg-type]
        )

    disputes, promised_page = read(who, work)
    base: dict[str, str] = {} if view == "due" else {"promised": view}
    here = f"{PREFIX}/disputes" + (f"?{urlencode(base)}" if base else "")
    for key, value in (("dcursor", dcursor), ("pcursor", pcursor)):
        if value:
            here = with_query(here, **{key: value})
    return render(
        who,
        request,
        "queue.j2",
        {
            "disputes": disputes,
            "promised": promised_page,
            "view": view,
            "views": PROMISE_VIEWS,
            "today": today,
            "here": here,
            "done": done if done in ("accepted", "rejected") else None,
            "disputes_next": with_query(here, dcursor=disputes.next_cursor)
            if disputes.next_cursor
            else None,
            "promises_next": with_query(here, pcursor=promised_page.next_cursor)
            if promised_page.next_cursor
            else None,
            "view_url": lambda v: f"{PREFIX}/disputes" + ("" if v == "due" else f"?promised={v}"),
            "max_note": MAX_NOTE,
        },
        screen="queue",
    )


@router.post("/disputes/{dispute_id}/resolve", name="dashboard_dispute_resolve")
async def resolve(request: Request, dispute_id: int, who: StaffDep) -> Response:
    """Accept (the item stays out of every claim: issue a credit note) or reject (it is
    claimed again from the next run) an open dispute, with a note."""
    found = await run_in_threadpool(
        read, who, lambda conn: dispute_of(conn, who.company_id, dispute_id)
    )
    if found is None:
        raise not_found()
    form = await posted(request, who, "collector")
    decision = field(form, "decision")
    if decision not in DECISIONS:
        raise Refused(422, "err_decision")
    note = field(form, "note")[:MAX_NOTE] or None
    back = back_to(field(form, "back"), "disputes")

    def work(conn: Connection) -> None:
        resolve_dispute(
            conn, who.company_id, dispute_id, decision == "accept", note, who.state.now()
        )

    try:
        await run_in_threadpool(write, who, work)
    except ResponseError:
        raise Refused(409, "dispute_resolved_already") from None
    outcome = "accepted" if decision == "accept" else "rejected"
    return RedirectResponse(with_query(back, done=outcome), status_code=303)
