"""``/customers``: the company's debtors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Row, Select, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.intake import (
    MAX_BATCH,
    BatchReport,
    RowOf,
    created_status,
    take_one,
    take_rows,
)
from cobro.web.api.models import Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import not_found
from cobro.web.api.reading import answer, read

router = APIRouter(prefix="/customers", tags=["customers"], route_class=IdempotentRoute)

ExternalId = Annotated[str, Field(min_length=1, max_length=100)]


class CustomerIn(Strict):
    """A debtor, created or (same ``external_id``) updated."""

    external_id: ExternalId
    name: str = Field(min_length=1, max_length=300)
    kind: Literal["person", "business"] | None = None
    group: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=10, examples=["es"])
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40, examples=["+34600000000"])
    tags: list[Annotated[str, Field(max_length=50)]] | None = Field(default=None, max_length=20)
    policy: str | None = Field(default=None, max_length=40)
    attributes: dict[str, str | int | bool] | None = Field(
        default=None, description="Custom attributes (the CSV's attr_NAME columns)."
    )


class Customer(BaseModel):
    external_id: str
    name: str
    kind: str
    group: str | None
    language: str | None
    email: str | None
    phone: str | None
    tags: list[str]
    policy: str | None = Field(description="The policy in force (assigned or given).")
    blocked: bool
    attributes: dict[str, Any]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class CustomerBatch(Strict):
    rows: list[Annotated[Any, RowOf(CustomerIn)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} debtors."
    )


def customer_out(r: Row[Any]) -> Customer:
    return Customer(
        external_id=r.external_id,
        name=r.name,
        kind=r.kind,
        group=r.group_name,
        language=r.language,
        email=r.email,
        phone=r.phone,
        tags=[tag for tag in r.tags.split(",") if tag] if r.tags else [],
        policy=r.effective_policy,
        blocked=bool(r.blocked),
        attributes=dict(r.attributes or {}),
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def customers_page(
    company_id: int,
    after: int | None,
    blocked: bool | None,
    policy: str | None,
    updated_since: datetime | None,
    limit: int,
) -> Select[Any]:
    """The company's debtors after the id ``after``, in the order of their ids, filtered;
    one more than ``limit`` (whether there is a next page)."""
    c = t.customers.c
    query = select(t.customers).where(c.company_id == company_id)
    if after is not None:
        query = query.where(c.id > after)
    if blocked is not None:
        query = query.where(c.blocked == blocked)
    if policy is not None:
        query = query.where(c.effective_policy == policy)
    if updated_since is not None:
        query = query.where(c.updated_at >= updated_since)
    return query.order_by(c.id).limit(limit + 1)


@router.get("", response_model=Page[Customer], summary="List debtors")
async def list_customers(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    blocked: bool | None = None,
    policy: Annotated[str | None, Query(max_length=40)] = None,
    updated_since: AwareDatetime | None = None,
) -> Response:
    after = decode_cursor(cursor, (int,))
    query = customers_page(
        who.company_id, after[0] if after else None, blocked, policy, updated_since, limit
    )

    def work(conn: Connection) -> Page[Customer]:
        rows = list(conn.execute(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page[Customer](
            data=[customer_out(r) for r in rows],
            next_cursor=encode_cursor([rows[-1].id]) if more else None,
        )

    # A page of one policy's debtors (the index on the policy) or of the blocked ones (the
    # partial index) is one index walk in id order: short. With any other filter, or none,
    # a page may read many debtors.
    one_index = (policy is not None) + (blocked is True) == 1
    short = one_index and blocked is not False and updated_since is None
    return answer(await read(who.state, work, short=short))


def _find_customer(conn: Connection, who: Caller, external_id: str) -> Row[Any]:
    c = t.customers.c
    row = conn.execute(
        select(t.customers).where(c.company_id == who.company_id, c.external_id == external_id)
    ).first()
    if row is None:
        raise not_found("customer with this external_id")
    return row


def find_customer(who: Caller, external_id: str) -> Row[Any]:
    with who.state.reader.connect() as conn:
        return _find_customer(conn, who, external_id)


@router.get("/{external_id}", response_model=Customer, summary="One debtor")
async def get_customer(who: Reader, external_id: str) -> Response:
    row = await read(who.state, lambda conn: _find_customer(conn, who, external_id))
    return answer(customer_out(row))


@router.post(
    "",
    response_model=Customer,
    status_code=201,
    summary="Create or update a debtor",
    responses={200: {"model": Customer, "description": "An existing debtor, updated"}},
)
async def put_customer(who: Collector, body: CustomerIn) -> JSONResponse:
    report = await take_one(who, "customers", body)
    row = await run_in_threadpool(find_customer, who, body.external_id)
    return JSONResponse(
        customer_out(row).model_dump(mode="json"), status_code=created_status(report)
    )


@router.post("/batch", response_model=BatchReport, summary="Create or update many debtors")
async def put_customers(who: Collector, body: CustomerBatch) -> BatchReport:
    return await take_rows(who, "customers", CustomerIn, body.rows)
