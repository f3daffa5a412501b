"""``/runs``: the company's daily runs (`cobro run`), one started for a date, and each one's
report.

A run of a big company takes minutes (planning, then sending thousands of messages), so
``POST /runs`` does not wait for it: it records the run, answers ``202 Accepted`` with the
run (status ``running``) and its address in ``Location``, and the server does the run
after the answer. ``GET /runs/{id}`` tells how it stands (the counts of its claims as they
are sent) and, once it has ended, its report or why it stopped. One run at a time per
company in a server: another ``POST /runs`` meanwhile gets 409 naming it. Starting a run
takes a ``collector`` key, the key of the systems that import what a run works on: a run
sends what the company's policies say is due that day, as its daily ``cobro run`` would.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Row, func, select
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse

from cobro.errors import ConfigError
from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import Day, Id, after_id, id_page, refused
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Money, Strict
from cobro.web.api.pagination import Cursor, Limit, Page
from cobro.web.api.problems import Problem, not_found

router = APIRouter(prefix="/runs", tags=["runs"], route_class=IdempotentRoute)

PREFIX = "/api/v1"
log = logging.getLogger("cobro.api")
RunStatus = Literal["running", "finished", "failed"]
LISTED = 1000  # errors and failures shown in a report (its counts cover them all)
CLAIM_STATUSES = ("planned", "sending", "sent", "failed", "cancelled")


class RunIn(Strict):
    date: Day | None = Field(
        default=None,
        description="The day to run (default: today, company time). Today's run acts as of "
        "now (messages whose send time has not come wait for it); a past day's acts as of "
        "that day's send time, as `cobro run --date` does. A later day is refused.",
    )


class Failure(BaseModel):
    claim: int
    customer: str
    customer_name: str
    reason: str


class RunReport(BaseModel):
    planned: int = Field(description="Claims and notices planned.")
    items: int = Field(description="Receivables they cover.")
    sent: int
    failed: int = Field(description="Failed for good (a staff task is opened for each).")
    skipped: int = Field(description="Cancelled: paid before they were sent.")
    retrying: int = Field(description="Temporary failures, tried again by `cobro dispatch`.")
    deliveries: int
    by_channel: dict[str, int]
    accounts_blocked: int
    accounts_released: int
    tasks: int
    cost: Money
    promises_kept: int
    promises_broken: int
    errors: list[str] = Field(description=f"What went wrong, one line each (the first {LISTED}).")
    failures: list[Failure] = Field(
        description=f"The claims that failed for good (the first {LISTED}; `failed` counts all)."
    )


class ClaimCounts(BaseModel):
    """The run's claims now, by status (they move on as they are sent or retried)."""

    planned: int
    sending: int
    sent: int
    failed: int
    cancelled: int


class Run(BaseModel):
    id: int
    date: dt.date
    status: RunStatus = Field(
        description="running; finished (see report); failed (see error). A run whose server "
        "stopped before it ended stays running: start it again (a repeated run plans "
        "nothing twice)."
    )
    as_of: AwareDatetime = Field(description="The instant the run acts as of.")
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    error: str | None
    claims: ClaimCounts
    report: RunReport | None = Field(description="Once finished (runs of this version on).")


def _report(data: dict[str, Any] | None, currency: str) -> RunReport | None:
    if not data:
        return None
    return RunReport(
        planned=data["planned"],
        items=data["items"],
        sent=data["sent"],
        failed=data["failed"],
        skipped=data["skipped"],
        retrying=data["retrying"],
        deliveries=data["deliveries"],
        by_channel=data["by_channel"],
        accounts_blocked=data["blocked"],
        accounts_released=data["unblocked"],
        tasks=data["tasks"],
        cost=Money(amount=Decimal(data["cost"]), currency=currency),
        promises_kept=data.get("promises_kept", 0),
        promises_broken=data.get("promises_broken", 0),
        errors=list(data["errors"][:LISTED]),
        failures=[
            Failure(
                claim=f["outbox_id"],
                customer=f["customer"],
                customer_name=f["customer_name"],
                reason=f["reason"],
            )
            for f in data["failures"][:LISTED]
        ],
    )


def _runs(conn: Connection, who: Caller, where: list[Any], limit: int) -> list[Run]:
    """Up to ``limit`` runs of the company matching ``where``, by id, with their claims
    counted by status (two queries)."""
    r, o = t.runs.c, t.outbox.c
    rows: list[Row[Any]] = list(
        conn.execute(
            select(t.runs).where(r.company_id == who.company_id, *where).order_by(r.id).limit(limit)
        )
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if rows:
        for run_id, status, n in conn.execute(
            select(o.run_id, o.status, func.count())
            .where(o.run_id.in_([x.id for x in rows]), o.company_id == who.company_id)
            .group_by(o.run_id, o.status)
        ):
            counts[run_id][status] = int(n)
    currency = who.state.ws.config.company.currency
    return [
        Run(
            id=x.id,
            date=x.run_on,
            status="running" if x.finished_at is None else "failed" if x.error else "finished",
            as_of=x.as_of,
            started_at=x.started_at,
            finished_at=x.finished_at,
            error=x.error,
            claims=ClaimCounts(**{s: counts[x.id].get(s, 0) for s in CLAIM_STATUSES}),
            report=_report(x.report, currency),
        )
        for x in rows
    ]


def find_run(who: Caller, run_id: int) -> Run:
    with who.state.reader.connect() as conn:
        found = _runs(conn, who, [t.runs.c.id == run_id], 1)
    if not found:
        raise not_found("run with this id")
    return found[0]


@router.get("", response_model=Page[Run], summary="List runs")
def list_runs(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    date_from: Annotated[
        Day | None, Query(alias="from", description="Runs for this day or later.")
    ] = None,
    date_to: Annotated[
        Day | None, Query(alias="to", description="Runs for this day or earlier.")
    ] = None,
) -> Page[Run]:
    r = t.runs.c
    where: list[Any] = []
    after = after_id(cursor)
    if after is not None:
        where.append(r.id > after)
    if date_from is not None:
        where.append(r.run_on >= date_from)
    if date_to is not None:
        where.append(r.run_on <= date_to)
    with who.state.reader.connect() as conn:
        found = _runs(conn, who, where, limit + 1)
    return id_page(found, limit, lambda x: x.id)


@router.get("/{run_id}", response_model=Run, summary="One run, with its report")
def get_run(who: Reader, run_id: Id) -> Run:
    return find_run(who, run_id)


_GUARD = threading.Lock()


def _in_progress(request: Request) -> dict[int, int]:
    """Company id -> the run this server is doing for it."""
    with _GUARD:
        found: dict[int, int] | None = getattr(request.app.state, "runs_in_progress", None)
        if found is None:
            found = request.app.state.runs_in_progress = {}
        return found


def _error(exc: Exception) -> str:
    """Why a run stopped, in one line for the company (no traceback, no SQL)."""
    if isinstance(exc, ConfigError):
        return "configuration error: " + "; ".join(str(p) for p in exc.problems)
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        first = str(exc.orig or exc).strip().splitlines()
        return f"database error: {first[0] if first else type(exc).__name__}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


def _execute(
    who: Caller, running: dict[int, int], run_id: int, run_on: dt.date, as_of: dt.datetime | None
) -> None:
    """Do the run recorded as ``run_id`` (after the answer), and record how it ended."""
    from cobro.engine.runs import end_run, run_day

    ws = who.state.ws
    try:
        run_day(ws, run_on, as_of, clock=who.state.clock, run_id=run_id)
        end_run(ws, run_id, who.state.now())
    except Exception as exc:
        log.exception("run %s of %s stopped", run_id, ws.config.company.id)
        end_run(ws, run_id, who.state.now(), _error(exc))
    finally:
        with _GUARD:
            running.pop(who.company_id, None)


@router.post(
    "",
    response_model=Run,
    status_code=202,
    summary="Start the daily run for a date",
    responses={409: {"description": "A run of the company is in progress on this server."}},
)
def start_run(who: Collector, request: Request, body: RunIn | None = None) -> JSONResponse:
    """Plans everything due on the date into the outbox, then sends what is due, as
    `cobro run` does, after answering: poll the run at `Location` until it is no longer
    `running`. Runs can be repeated: a second run of a day plans nothing new."""
    from cobro.engine.runs import end_run
    from cobro.engine.runs import start_run as record_run

    now = who.state.now()
    today = who.state.today()
    run_on = body.date if body is not None and body.date is not None else today
    if run_on > today:
        raise refused("body.date", f"{run_on} has not come yet (today is {today})")
    as_of = now if run_on == today else None
    running = _in_progress(request)
    with _GUARD:
        busy = running.get(who.company_id)
        if busy is not None:
            raise Problem(
                409,
                "run-in-progress",
                f"run {busy} of this company is in progress; wait until it ends "
                f"({PREFIX}/runs/{busy})",
                headers={"Location": f"{PREFIX}/runs/{busy}"},
            )
        running[who.company_id] = 0
    run_id = 0
    try:
        run_id = record_run(who.state.ws, run_on, as_of, at=now)
        with _GUARD:
            running[who.company_id] = run_id
        answer = find_run(who, run_id).model_dump(mode="json")
    except BaseException as exc:
        with _GUARD:
            running.pop(who.company_id, None)
        if run_id and isinstance(exc, Exception):
            end_run(who.state.ws, run_id, now, _error(exc))
        raise
    return JSONResponse(
        answer,
        status_code=202,
        headers={"Location": f"{PREFIX}/runs/{run_id}"},
        background=BackgroundTask(_execute, who, running, run_id, run_on, as_of),
    )
