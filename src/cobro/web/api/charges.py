"""``/charges``: what a subscription was charged, succeeded or failed. One is recorded here
or with a ``charge.succeeded`` / ``charge.failed`` event, checked alike; a succeeded one
queues the receipt, a failed renewal the unpaid reminder."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Row, Select, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from cobro.domain.money import Money
from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.events import record_event
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Amount, DecimalText, ExternalId, Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import Problem, not_found
from cobro.web.api.subscriptions import find_subscription

router = APIRouter(tags=["charges"], route_class=IdempotentRoute)

ChargeStatus = Literal["succeeded", "failed"]


class ChargeIn(Strict):
    """A charge of a subscription: what a ``charge.succeeded`` or ``charge.failed`` event
    carries."""

    external_id: ExternalId
    subscription: ExternalId
    status: ChargeStatus
    amount: DecimalText
    currency: str | None = Field(
        default=None, max_length=3, description="ISO 4217; the subscription's if left out."
    )
    charged_at: AwareDatetime | None = Field(default=None, description="Now if left out.")
    next_charge_on: date | None = None
    first_purchase: bool | None = Field(
        default=None,
        description="Whether this is the member's first purchase of the plan (default: "
        "the subscription's first paid charge is).",
    )
    reason: str | None = Field(
        default=None, max_length=300, description="A failed charge's decline code."
    )


class Charge(BaseModel):
    external_id: str
    subscription: str
    customer: str
    status: str
    amount: Amount
    currency: str
    charged_at: AwareDatetime
    first_purchase: bool
    reason: str | None


def _query(company_id: int) -> Select[Any]:
    ch, s, cu = t.charges.c, t.subscriptions.c, t.customers.c
    return (
        select(
            t.charges,
            s.external_id.label("subscription"),
            cu.external_id.label("customer"),
        )
        .join(t.subscriptions, s.id == ch.subscription_id)
        .join(t.customers, cu.id == s.customer_id)
        .where(ch.company_id == company_id)
    )


def _out(row: Row[Any]) -> Charge:
    return Charge(
        external_id=row.external_id,
        subscription=row.subscription,
        customer=row.customer,
        status=row.status,
        amount=Money.from_minor(int(row.amount_minor), row.currency).amount,
        currency=row.currency,
        charged_at=row.charged_at,
        first_purchase=bool(row.first_purchase),
        reason=row.reason,
    )


def _page(who: Caller, limit: int, cursor: str | None, query: Select[Any]) -> Page[Charge]:
    ch = t.charges.c
    after = decode_cursor(cursor, (int,))
    if after:
        query = query.where(ch.id > after[0])
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query.order_by(ch.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Charge](
        data=[_out(row) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


@router.get("/charges", response_model=Page[Charge], summary="List charges")
def list_charges(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    subscription: Annotated[str | None, Query(max_length=100)] = None,
    customer: Annotated[str | None, Query(max_length=100, description="A member's id.")] = None,
    status: ChargeStatus | None = None,
    charged_before: AwareDatetime | None = None,
    charged_after: AwareDatetime | None = None,
) -> Page[Charge]:
    ch, s, cu = t.charges.c, t.subscriptions.c, t.customers.c
    query = _query(who.company_id)
    if subscription is not None:
        query = query.where(s.external_id == subscription)
    if customer is not None:
        query = query.where(cu.external_id == customer)
    if status is not None:
        query = query.where(ch.status == status)
    if charged_before is not None:
        query = query.where(ch.charged_at < charged_before)
    if charged_after is not None:
        query = query.where(ch.charged_at > charged_after)
    return _page(who, limit, cursor, query)


@router.get(
    "/subscriptions/{external_id}/charges",
    response_model=Page[Charge],
    summary="List a subscription's charges",
)
def list_subscription_charges(
    who: Reader, external_id: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[Charge]:
    sub = find_subscription(who, external_id)
    query = _query(who.company_id).where(t.charges.c.subscription_id == sub.id)
    return _page(who, limit, cursor, query)


def find_charge(who: Caller, external_id: str) -> Charge:
    ch = t.charges.c
    with who.state.reader.connect() as conn:
        row = conn.execute(_query(who.company_id).where(ch.external_id == external_id)).first()
    if row is None:
        raise not_found("charge with this external_id")
    return _out(row)


@router.get("/charges/{external_id}", response_model=Charge, summary="One charge")
def get_charge(who: Reader, external_id: str) -> Charge:
    return find_charge(who, external_id)


def _record(who: Caller, body: ChargeIn) -> Charge:
    ch = t.charges.c
    with who.state.reader.connect() as conn:
        taken = conn.execute(
            select(ch.id).where(ch.company_id == who.company_id, ch.external_id == body.external_id)
        ).first()
    if taken is not None:
        raise Problem(
            409,
            "already-exists",
            f"charge {body.external_id!r} was already recorded; a charge is not changed",
        )
    data = body.model_dump(mode="json", exclude_none=True, exclude={"external_id", "status"})
    data.update(id=f"api-{uuid.uuid4().hex}", charge=body.external_id)
    record_event(who, f"charge.{body.status}", data, {"charge": "external_id"})
    return find_charge(who, body.external_id)


@router.post(
    "/charges",
    response_model=Charge,
    status_code=201,
    summary="Record a charge",
    description="Posts a `charge.succeeded` or `charge.failed` event (checked as `cobro "
    "event post` checks it): a receipt, or for a failed renewal an unpaid reminder, is "
    "queued in the outbox. A charge recorded already: 409.",
)
async def post_charge(who: Collector, body: ChargeIn) -> JSONResponse:
    made = await run_in_threadpool(_record, who, body)
    return JSONResponse(made.model_dump(mode="json"), status_code=201)
