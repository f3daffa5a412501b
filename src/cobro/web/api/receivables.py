"""``/receivables``: what debtors owe (invoices, instalments) and what is owed to them
(credit notes), with their balances."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Integer, Row, Select, and_, bindparam, not_, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cobro.domain.money import Money
from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import customer_id
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
from cobro.web.api.reading import answer, read

router = APIRouter(prefix="/receivables", tags=["receivables"], route_class=IdempotentRoute)

ReceivableKind = Literal["invoice", "instalment", "credit_note"]


class ReceivableIn(Strict):
    """A receivable, created or (same ``external_id``) updated: the columns of the CSV
    import. A field left out keeps its stored value. A credit note is ``kind:
    credit_note`` (or a negative ``amount``); Cobro applies it to the debtor's items."""

    external_id: ExternalId
    customer: ExternalId = Field(description="The debtor's external_id.")
    kind: ReceivableKind | None = None
    number: str | None = Field(
        default=None, max_length=100, description="As printed; the external_id if left out."
    )
    invoice: str | None = Field(
        default=None,
        max_length=100,
        description="The invoice an instalment or credit note belongs to.",
    )
    issued_on: date | None = None
    due_on: date
    currency: str | None = Field(
        default=None, max_length=3, description="ISO 4217; the company's if left out."
    )
    amount: DecimalText
    balance: DecimalText | None = Field(
        default=None,
        description="What is still owed, when the source system knows it; otherwise the "
        "amount less what Cobro has recorded as paid.",
    )
    description: str | None = Field(default=None, max_length=500)


class Receivable(BaseModel):
    external_id: str
    customer: str
    kind: str
    number: str
    invoice: str | None
    issued_on: date | None
    due_on: date
    currency: str
    amount: Amount = Field(description="Negative for a credit note.")
    balance: Amount = Field(
        description="Still owed; for a credit note, the credit not yet applied (negative)."
    )
    description: str | None
    status: Literal["open", "paid"] = Field(
        description="open while the balance is not zero (a credit note: credit left to "
        "apply), paid once it is (a credit note: applied in full)."
    )
    overdue: bool = Field(description="Owed and past its due date (company time).")
    updated_at: AwareDatetime


class ReceivableBatch(Strict):
    rows: list[Annotated[Any, RowOf(ReceivableIn)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} receivables."
    )


def _query(company_id: int) -> Select[Any]:
    r, cu = t.receivables.c, t.customers.c
    return (
        select(t.receivables, cu.external_id.label("customer"))
        .join(t.customers, cu.id == r.customer_id)
        .where(r.company_id == company_id)
    )


def _one_debtors_page() -> Select[Any]:
    """A page of one debtor's items (the list's most asked-for filter), built once: a
    statement built per request costs more than the indexed read it makes."""
    r, cu = t.receivables.c, t.customers.c
    return (
        select(t.receivables, cu.external_id.label("customer"))
        .join(t.customers, cu.id == r.customer_id)
        .where(
            r.company_id == bindparam("company"),
            r.customer_id == bindparam("debtor"),
            r.id > bindparam("after"),
        )
        .order_by(r.id)
        .limit(bindparam("rows", type_=Integer))
    )


_ONE_DEBTORS_PAGE = _one_debtors_page()


def _out(row: Row[Any], today: date) -> Receivable:
    def money(minor: int) -> Any:
        return Money.from_minor(int(minor), row.currency).amount

    return Receivable(
        external_id=row.external_id,
        customer=row.customer,
        kind=row.kind,
        number=row.number,
        invoice=row.invoice_number,
        issued_on=row.issued_on,
        due_on=row.due_on,
        currency=row.currency,
        amount=money(row.amount_minor),
        balance=money(row.balance_minor),
        description=row.description,
        status="open" if row.balance_minor != 0 else "paid",
        overdue=row.balance_minor > 0 and row.due_on < today,
        updated_at=row.updated_at,
    )


def _filtered(
    company_id: int,
    today: date,
    after: list[Any] | None,
    status: str | None,
    overdue: bool | None,
    due_before: date | None,
    due_after: date | None,
    currency: str | None,
    kind: str | None,
    updated_since: datetime | None,
) -> Select[Any]:
    """The company's items as the list's filters select them (by debtor: added by the route)."""
    r = t.receivables.c
    query = _query(company_id)
    if after:
        query = query.where(r.id > after[0])
    if status == "open":
        query = query.where(r.balance_minor != 0)
    elif status == "paid":
        query = query.where(r.balance_minor == 0)
    late = and_(r.balance_minor > 0, r.due_on < today)
    if overdue is not None:
        query = query.where(late if overdue else not_(late))
    if due_before is not None:
        query = query.where(r.due_on < due_before)
    if due_after is not None:
        query = query.where(r.due_on > due_after)
    if currency is not None:
        query = query.where(r.currency == currency.upper())
    if kind is not None:
        query = query.where(r.kind == kind)
    if updated_since is not None:
        query = query.where(r.updated_at >= updated_since)

    return query


@router.get("", response_model=Page[Receivable], summary="List receivables")
async def list_receivables(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer: Annotated[str | None, Query(max_length=100, description="A debtor's id.")] = None,
    status: Literal["open", "paid"] | None = None,
    overdue: Annotated[
        bool | None, Query(description="Owed and past due (true), or not (false).")
    ] = None,
    due_before: Annotated[date | None, Query(description="Due before this date.")] = None,
    due_after: Annotated[date | None, Query(description="Due after this date.")] = None,
    currency: Annotated[str | None, Query(min_length=3, max_length=3)] = None,
    kind: ReceivableKind | None = None,
    updated_since: AwareDatetime | None = None,
) -> Response:
    r = t.receivables.c
    after = decode_cursor(cursor, (int,))
    today = who.state.today()
    filters = (status, overdue, due_before, due_after, currency, kind, updated_since)
    only_debtor = customer is not None and all(f is None for f in filters)
    query = None if only_debtor else _filtered(who.company_id, today, after, *filters)

    def work(conn: Connection) -> Page[Receivable]:
        debtor = None
        if customer is not None:
            # The debtor's id first: its items are then read by
            # ``ix_receivables_customer_id`` (joined by external id, SQLite walked every
            # item of the company).
            debtor = customer_id(conn, who, customer)
            if debtor is None:
                return Page[Receivable](data=[])
        if query is None:  # only a debtor (and a cursor): the statement built once
            page = {"company": who.company_id, "debtor": debtor, "rows": limit + 1}
            rows = list(
                conn.execute(_ONE_DEBTORS_PAGE, {**page, "after": after[0] if after else 0})
            )
        else:
            found = query if debtor is None else query.where(r.customer_id == debtor)
            rows = list(conn.execute(found.order_by(r.id).limit(limit + 1)))
        return _page(rows, limit, today)

    # One debtor's items are read by its index; without a debtor, filters may walk many
    # of the company's items before a page is full.
    return answer(await read(who.state, work, short=customer is not None))


def _page(rows: list[Row[Any]], limit: int, today: date) -> Page[Receivable]:
    """The first ``limit`` of ``rows`` (read one more, to know whether a next page exists)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Receivable](
        data=[_out(row, today) for row in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


def _find_receivable(conn: Connection, who: Caller, external_id: str) -> Receivable:
    r = t.receivables.c
    row = conn.execute(_query(who.company_id).where(r.external_id == external_id)).first()
    if row is None:
        raise not_found("receivable with this external_id")
    return _out(row, who.state.today())


def find_receivable(who: Caller, external_id: str) -> Receivable:
    with who.state.reader.connect() as conn:
        return _find_receivable(conn, who, external_id)


@router.get("/{external_id}", response_model=Receivable, summary="One receivable")
async def get_receivable(who: Reader, external_id: str) -> Response:
    return answer(await read(who.state, lambda conn: _find_receivable(conn, who, external_id)))


@router.post(
    "",
    response_model=Receivable,
    status_code=201,
    summary="Create or update a receivable",
    responses={200: {"model": Receivable, "description": "An existing receivable, updated"}},
)
async def put_receivable(who: Collector, body: ReceivableIn) -> JSONResponse:
    report = await take_one(who, "receivables", body)
    found = await run_in_threadpool(find_receivable, who, body.external_id)
    return JSONResponse(found.model_dump(mode="json"), status_code=created_status(report))


@router.post(
    "/batch",
    response_model=BatchReport,
    summary="Create or update up to 10,000 receivables",
    description="Each row is checked alone: a refused row is reported with its index, "
    "field and problem, and every other row is kept (upsert by `external_id`). More "
    f"than {MAX_BATCH} rows: the whole request is refused (422), nothing kept.",
)
async def put_receivables(who: Collector, body: ReceivableBatch) -> BatchReport:
    return await take_rows(who, "receivables", ReceivableIn, body.rows)
