"""``/events``: what a company's systems tell Cobro happened (subscriptions, charges,
banking notices, push subscriptions), with the types and checks of ``cobro event post``.

An event is recorded under its ``id`` (a redelivery has no second effect) and applied in
one transaction; the notices it causes are written to the outbox, which ``cobro dispatch
--watch`` (or the next ``cobro run``) sends, as ``cobro event post --no-send`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Row, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from cobro.intake.events import EVENT_TYPES, EventError, EventResult, post_event
from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import FieldError, Problem, not_found

router = APIRouter(prefix="/events", tags=["events"], route_class=IdempotentRoute)

TYPES_TEXT = ", ".join(f"`{name}`" for name in EVENT_TYPES)


class EventIn(Strict):
    """An event: its type and its object, as ``cobro event post TYPE --data FILE`` reads it
    (docs/events.md lists the fields of each type)."""

    type: str = Field(min_length=1, max_length=60, description=f"One of {TYPES_TEXT}.")
    data: dict[str, Any] = Field(
        description="The event, with your unique `id` and, optionally, `occurred_at`.",
        examples=[
            {
                "id": "evt-1001",
                "subscription": "S1",
                "charge": "ch_1001",
                "amount": "39.90",
            }
        ],
    )


class EventPosted(BaseModel):
    """What posting an event did."""

    id: str
    type: str
    duplicate: bool = Field(description="Already received: it had no second effect.")
    notices: list[str] = Field(description="The notices it wrote to the outbox.")
    notes: list[str] = Field(description="What was decided and why.")


class Event(BaseModel):
    """An event as received."""

    id: str
    type: str
    data: dict[str, Any]
    occurred_at: AwareDatetime
    received_at: AwareDatetime


def _problem_field(problem: str, fields: Mapping[str, str] | None) -> FieldError:
    """``"charge: Field required"`` as the field it names: of ``data`` for a posted event,
    else of the body as ``fields`` renames the event's fields (unnamed: as they are)."""
    if problem.startswith("unknown event type"):
        return FieldError(field="body.type", problem=problem)
    where = "body.data" if fields is None else "body"
    name, sep, text = problem.partition(": ")
    if not sep or name == "payload":
        return FieldError(field=where, problem=problem)
    head, dot, rest = name.partition(".")
    head = (fields or {}).get(head, head)
    return FieldError(field=f"{where}.{head}{dot}{rest}", problem=text)


def record_event(
    who: Caller,
    event_type: str,
    data: dict[str, Any],
    fields: Mapping[str, str] | None = None,
) -> EventResult:
    """Post one event for the caller's company; refused as 422 naming each field (of
    ``data``, or of the body as ``fields`` renames the event's fields)."""
    try:
        return post_event(who.state.ws, event_type, data, who.state.now())
    except EventError as exc:
        raise Problem(
            422,
            "invalid-event" if fields is None else "invalid-record",
            "the event was refused; nothing was changed",
            [_problem_field(p, fields) for p in exc.problems],
        ) from None


@router.post(
    "",
    response_model=EventPosted,
    status_code=201,
    summary="Post an event",
    responses={200: {"model": EventPosted, "description": "Already received: no effect"}},
)
async def post(who: Collector, body: EventIn) -> JSONResponse:
    result = await run_in_threadpool(record_event, who, body.type, body.data)
    posted = EventPosted(**result.to_json())
    status = 200 if result.duplicate else 201
    return JSONResponse(posted.model_dump(mode="json"), status_code=status)


def _out(row: Row[Any]) -> Event:
    return Event(
        id=row.external_id,
        type=row.type,
        data=dict(row.payload),
        occurred_at=row.occurred_at,
        received_at=row.received_at,
    )


@router.get("", response_model=Page[Event], summary="List received events")
def list_events(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    type: Annotated[str | None, Query(max_length=60, description="Only this type.")] = None,
    received_since: AwareDatetime | None = None,
    occurred_before: AwareDatetime | None = None,
    occurred_after: AwareDatetime | None = None,
) -> Page[Event]:
    e = t.events.c
    after = decode_cursor(cursor, (int,))
    query = select(t.events).where(e.company_id == who.company_id)
    if after:
        query = query.where(e.id > after[0])
    if type is not None:
        query = query.where(e.type == type)
    if received_since is not None:
        query = query.where(e.received_at >= received_since)
    if occurred_before is not None:
        query = query.where(e.occurred_at < occurred_before)
    if occurred_after is not None:
        query = query.where(e.occurred_at > occurred_after)
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query.order_by(e.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Event](
        data=[_out(row) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


@router.get("/{event_id}", response_model=Event, summary="One received event")
def get_event(who: Reader, event_id: str) -> Event:
    e = t.events.c
    with who.state.reader.connect() as conn:
        row = conn.execute(
            select(t.events).where(e.company_id == who.company_id, e.external_id == event_id)
        ).first()
    if row is None:
        raise not_found("event with this id")
    return _out(row)
