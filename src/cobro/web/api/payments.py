"""``/payments``: money received from debtors, allocated to their receivables (the one
named first, then the oldest due), and reversals of payments (a returned direct debit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Row, Select, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from cobro.domain.money import Money
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
from cobro.web.api.models import Amount, DecimalText, ExternalId, Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/payments", tags=["payments"], route_class=IdempotentRoute)


class PaymentIn(Strict):
    """A payment, or (``reverses``) the reversal of one: the columns of the CSV import.
    A recorded payment cannot be changed: the same one again changes nothing, a different
    one under its ``external_id`` is refused."""

    external_id: ExternalId
    customer: ExternalId = Field(description="The debtor's external_id.")
    receivable: ExternalId | None = Field(
        default=None, description="The receivable it pays first; the oldest due after it."
    )
    paid_on: date
    amount: DecimalText | None = Field(
        default=None,
        description="Required for a payment; a reversal returns the whole payment "
        "(its amount may be left out, or given with either sign).",
    )
    currency: str | None = Field(
        default=None, max_length=3, description="ISO 4217; the company's if left out."
    )
    reverses: ExternalId | None = Field(
        default=None, description="The payment this one undoes (a returned direct debit)."
    )


class Allocation(BaseModel):
    receivable: str
    amount: Amount


class Payment(BaseModel):
    external_id: str
    customer: str
    receivable: str | None
    paid_on: date
    currency: str
    amount: Amount = Field(description="Negative for a reversal.")
    unallocated: Amount = Field(description="What no open receivable took (a credit).")
    reverses: str | None
    reversed_by: str | None
    allocations: list[Allocation]
    created_at: AwareDatetime


class PaymentBatch(Strict):
    rows: list[Annotated[Any, RowOf(PaymentIn)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} payments."
    )


def _query(company_id: int) -> Select[Any]:
    p, cu, r = t.payments.c, t.customers.c, t.receivables.c
    undone, reversal = t.payments.alias("undone"), t.payments.alias("reversal")
    return (
        select(
            t.payments,
            cu.external_id.label("customer"),
            r.external_id.label("receivable"),
            undone.c.external_id.label("reverses"),
            reversal.c.external_id.label("reversed_by"),
        )
        .join(t.customers, cu.id == p.customer_id)
        .outerjoin(t.receivables, r.id == p.receivable_id)
        .outerjoin(undone, undone.c.id == p.reverses_id)
        .outerjoin(reversal, reversal.c.reverses_id == p.id)
        .where(p.company_id == company_id)
    )


def _allocations(conn: Connection, ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    a, r = t.allocations.c, t.receivables.c
    found: dict[int, list[tuple[str, int]]] = {}
    if ids:
        for row in conn.execute(
            select(a.payment_id, r.external_id, a.amount_minor)
            .join(t.receivables, r.id == a.receivable_id)
            .where(a.payment_id.in_(ids))
            .order_by(a.id)
        ):
            found.setdefault(int(row.payment_id), []).append(
                (row.external_id, int(row.amount_minor))
            )
    return found


def _out(row: Row[Any], allocations: dict[int, list[tuple[str, int]]]) -> Payment:
    def money(minor: int) -> Any:
        return Money.from_minor(int(minor), row.currency).amount

    return Payment(
        external_id=row.external_id,
        customer=row.customer,
        receivable=row.receivable,
        paid_on=row.paid_on,
        currency=row.currency,
        amount=money(row.amount_minor),
        unallocated=money(row.unallocated_minor),
        reverses=row.reverses,
        reversed_by=row.reversed_by,
        allocations=[
            Allocation(receivable=ext, amount=money(minor))
            for ext, minor in allocations.get(int(row.id), [])
        ],
        created_at=row.created_at,
    )


@router.get("", response_model=Page[Payment], summary="List payments")
def list_payments(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer: Annotated[str | None, Query(max_length=100, description="A debtor's id.")] = None,
    receivable: Annotated[
        str | None, Query(max_length=100, description="Payments allocated to this receivable.")
    ] = None,
    paid_before: Annotated[date | None, Query(description="Paid before this date.")] = None,
    paid_after: Annotated[date | None, Query(description="Paid after this date.")] = None,
    currency: Annotated[str | None, Query(min_length=3, max_length=3)] = None,
    reversal: Annotated[
        bool | None, Query(description="Only reversals (true), or only payments (false).")
    ] = None,
) -> Page[Payment]:
    p, cu = t.payments.c, t.customers.c
    after = decode_cursor(cursor, (int,))
    query = _query(who.company_id)
    if after:
        query = query.where(p.id > after[0])
    if customer is not None:
        query = query.where(cu.external_id == customer)
    if receivable is not None:
        a, r = t.allocations.c, t.receivables.c
        query = query.where(
            p.id.in_(
                select(a.payment_id)
                .join(t.receivables, r.id == a.receivable_id)
                .where(r.company_id == who.company_id, r.external_id == receivable)
            )
        )
    if paid_before is not None:
        query = query.where(p.paid_on < paid_before)
    if paid_after is not None:
        query = query.where(p.paid_on > paid_after)
    if currency is not None:
        query = query.where(p.currency == currency.upper())
    if reversal is not None:
        query = query.where(p.reverses_id.is_not(None) if reversal else p.reverses_id.is_(None))
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query.order_by(p.id).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        allocations = _allocations(conn, [int(row.id) for row in rows])
    return Page[Payment](
        data=[_out(row, allocations) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


def find_payment(who: Caller, external_id: str) -> Payment:
    p = t.payments.c
    with who.state.reader.connect() as conn:
        row = conn.execute(_query(who.company_id).where(p.external_id == external_id)).first()
        if row is None:
            raise not_found("payment with this external_id")
        return _out(row, _allocations(conn, [int(row.id)]))


@router.get("/{external_id}", response_model=Payment, summary="One payment")
def get_payment(who: Reader, external_id: str) -> Payment:
    return find_payment(who, external_id)


@router.post(
    "",
    response_model=Payment,
    status_code=201,
    summary="Record a payment or a reversal",
    responses={200: {"model": Payment, "description": "The same payment, already recorded"}},
)
async def post_payment(who: Collector, body: PaymentIn) -> JSONResponse:
    report = await take_one(who, "payments", body)
    found = await run_in_threadpool(find_payment, who, body.external_id)
    return JSONResponse(found.model_dump(mode="json"), status_code=created_status(report))


@router.post(
    "/batch",
    response_model=BatchReport,
    summary="Record up to 10,000 payments",
    description="In the order given (a reversal may follow its payment). Each row is "
    "checked alone: a refused row is reported with its index, field and problem, every "
    f"other row is kept. More than {MAX_BATCH} rows: the whole request is refused (422).",
)
async def post_payments(who: Collector, body: PaymentBatch) -> BatchReport:
    return await take_rows(who, "payments", PaymentIn, body.rows)
