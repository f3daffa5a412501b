"""``/subscriptions``: members' plans and passes (seed 003). One is created here or with a
``subscription.created`` event; it changes with the other subscription events
(``POST /events``: cycle changed, paused, resumed, cancel requested, expired), all
checked as ``cobro event post`` checks them."""

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

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"], route_class=IdempotentRoute)

SubscriptionStatus = Literal["active", "unpaid", "cancel_requested", "expired"]


class SubscriptionIn(Strict):
    """A new subscription: what a ``subscription.created`` event carries."""

    external_id: ExternalId
    customer: ExternalId = Field(description="The member's (debtor's) external_id.")
    plan: str = Field(min_length=1, max_length=200)
    kind: Literal["plan", "pass"] = "plan"
    price: DecimalText
    currency: str | None = Field(
        default=None, max_length=3, description="ISO 4217; the company's if left out."
    )
    cycle: str = Field(
        default="monthly",
        max_length=20,
        description="weekly, monthly, quarterly, yearly or 'N days'.",
    )
    next_charge_on: date | None = None
    ends_on: date | None = None


class Subscription(BaseModel):
    external_id: str
    customer: str
    plan: str
    kind: str
    price: Amount
    currency: str
    cycle: str
    next_charge_on: date | None
    status: str = Field(description="active, unpaid, cancel_requested or expired.")
    pause_from: date | None
    pause_until: date | None
    ends_on: date | None
    paid_charges: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


def _query(company_id: int) -> Select[Any]:
    s, cu = t.subscriptions.c, t.customers.c
    return (
        select(t.subscriptions, cu.external_id.label("customer"))
        .join(t.customers, cu.id == s.customer_id)
        .where(s.company_id == company_id)
    )


def _out(row: Row[Any]) -> Subscription:
    return Subscription(
        external_id=row.external_id,
        customer=row.customer,
        plan=row.plan,
        kind=row.kind,
        price=Money.from_minor(int(row.price_minor), row.currency).amount,
        currency=row.currency,
        cycle=row.cycle,
        next_charge_on=row.next_charge_on,
        status=row.status,
        pause_from=row.pause_from,
        pause_until=row.pause_until,
        ends_on=row.ends_on,
        paid_charges=row.paid_charges,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("", response_model=Page[Subscription], summary="List subscriptions")
def list_subscriptions(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer: Annotated[str | None, Query(max_length=100, description="A member's id.")] = None,
    status: SubscriptionStatus | None = None,
    kind: Literal["plan", "pass"] | None = None,
    next_charge_before: Annotated[
        date | None, Query(description="Next charge before this date.")
    ] = None,
) -> Page[Subscription]:
    s, cu = t.subscriptions.c, t.customers.c
    after = decode_cursor(cursor, (int,))
    query = _query(who.company_id)
    if after:
        query = query.where(s.id > after[0])
    if customer is not None:
        query = query.where(cu.external_id == customer)
    if status is not None:
        query = query.where(s.status == status)
    if kind is not None:
        query = query.where(s.kind == kind)
    if next_charge_before is not None:
        query = query.where(s.next_charge_on < next_charge_before)
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query.order_by(s.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Subscription](
        data=[_out(row) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


def find_subscription(who: Caller, external_id: str) -> Row[Any]:
    s = t.subscriptions.c
    with who.state.reader.connect() as conn:
        row = conn.execute(_query(who.company_id).where(s.external_id == external_id)).first()
    if row is None:
        raise not_found("subscription with this external_id")
    return row


@router.get("/{external_id}", response_model=Subscription, summary="One subscription")
def get_subscription(who: Reader, external_id: str) -> Subscription:
    return _out(find_subscription(who, external_id))


def _create(who: Caller, body: SubscriptionIn) -> Subscription:
    s = t.subscriptions.c
    with who.state.reader.connect() as conn:
        taken = conn.execute(
            select(s.id).where(s.company_id == who.company_id, s.external_id == body.external_id)
        ).first()
    if taken is not None:
        raise Problem(
            409,
            "already-exists",
            f"subscription {body.external_id!r} already exists; change it with events "
            "(POST /events: subscription.cycle_changed, .paused, .resumed, "
            ".cancel_requested, .expired)",
        )
    data = body.model_dump(mode="json", exclude_none=True, exclude={"external_id"})
    data.update(id=f"api-{uuid.uuid4().hex}", subscription=body.external_id)
    # The event names the price "amount" when it refuses it.
    fields = {"subscription": "external_id", "amount": "price"}
    record_event(who, "subscription.created", data, fields)
    return _out(find_subscription(who, body.external_id))


@router.post(
    "",
    response_model=Subscription,
    status_code=201,
    summary="Create a subscription",
    description="Posts a `subscription.created` event (checked as `cobro event post` "
    "checks it). A subscription that exists already: 409.",
)
async def post_subscription(who: Collector, body: SubscriptionIn) -> JSONResponse:
    made = await run_in_threadpool(_create, who, body)
    return JSONResponse(made.model_dump(mode="json"), status_code=201)
