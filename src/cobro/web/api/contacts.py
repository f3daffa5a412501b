"""``/contacts``: the people of a debtor that messages go to (billing, primary, sales rep,
account manager, banking & funds transfer), and ``/customers/{external_id}/contacts``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import Connection, Row, Select, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from cobro.store import tables as t
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.customers import find_customer
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.intake import (
    MAX_BATCH,
    BatchReport,
    RowOf,
    created_status,
    take_one,
    take_rows,
)
from cobro.web.api.models import ExternalId, Strict
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import not_found

router = APIRouter(tags=["contacts"], route_class=IdempotentRoute)

# The roles of ``cobro.intake.columns.CONTACT_ROLES``; ``banking`` is the "banking & funds
# transfer" role, the only one banking notices may be assigned to.
ContactRole = Literal["billing", "primary", "sales_rep", "account_manager", "banking"]


class ContactIn(Strict):
    """A contact of a debtor, created or (same ``external_id``) updated. A field left out
    keeps its stored value; ``null`` clears it."""

    external_id: ExternalId
    customer: ExternalId = Field(description="The debtor's external_id.")
    name: str = Field(min_length=1, max_length=300)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40, examples=["+34600000000"])
    roles: list[ContactRole] | None = Field(default=None, max_length=5)
    language: str | None = Field(default=None, max_length=10, examples=["es"])


class Contact(BaseModel):
    external_id: str
    customer: str
    name: str
    email: str | None
    phone: str | None
    roles: list[str]
    language: str | None
    banking: list[str] = Field(description="The banking notices assigned to the contact.")
    updated_at: AwareDatetime


class ContactBatch(Strict):
    rows: list[Annotated[Any, RowOf(ContactIn)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} contacts."
    )


def _query(company_id: int) -> Select[Any]:
    c, cu = t.contacts.c, t.customers.c
    return (
        select(
            c.id,
            c.external_id,
            cu.external_id.label("customer"),
            c.name,
            c.email,
            c.phone,
            c.roles,
            c.language,
            c.updated_at,
        )
        .join(t.customers, cu.id == c.customer_id)
        .where(c.company_id == company_id)
    )


def _banking(conn: Connection, company_id: int, ids: Sequence[int]) -> dict[int, list[str]]:
    ba = t.banking_assignments.c
    held: dict[int, list[str]] = {}
    if ids:
        for r in conn.execute(
            select(ba.contact_id, ba.notice_type)
            .where(ba.company_id == company_id, ba.contact_id.in_(ids))
            .order_by(ba.notice_type)
        ):
            held.setdefault(int(r.contact_id), []).append(r.notice_type)
    return held


def _out(r: Row[Any], banking: dict[int, list[str]]) -> Contact:
    return Contact(
        external_id=r.external_id,
        customer=r.customer,
        name=r.name,
        email=r.email,
        phone=r.phone,
        roles=[role for role in r.roles.split(",") if role],
        language=r.language,
        banking=banking.get(int(r.id), []),
        updated_at=r.updated_at,
    )


def _page(
    who: Caller,
    limit: int,
    cursor: str | None,
    *,
    customer_id: int | None = None,
    customer: str | None = None,
    role: str | None = None,
    updated_since: datetime | None = None,
) -> Page[Contact]:
    c, cu = t.contacts.c, t.customers.c
    after = decode_cursor(cursor, (int,))
    query = _query(who.company_id)
    if after:
        query = query.where(c.id > after[0])
    if customer_id is not None:
        query = query.where(c.customer_id == customer_id)
    if customer is not None:
        query = query.where(cu.external_id == customer)
    if role is not None:
        query = query.where(c.roles.contains(f",{role},", autoescape=True))
    if updated_since is not None:
        query = query.where(c.updated_at >= updated_since)
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query.order_by(c.id).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        banking = _banking(conn, who.company_id, [int(r.id) for r in rows])
    return Page[Contact](
        data=[_out(r, banking) for r in rows],
        next_cursor=encode_cursor([rows[-1].id]) if more else None,
    )


@router.get("/contacts", response_model=Page[Contact], summary="List contacts")
def list_contacts(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer: Annotated[str | None, Query(max_length=100, description="A debtor's id.")] = None,
    role: ContactRole | None = None,
    updated_since: AwareDatetime | None = None,
) -> Page[Contact]:
    return _page(who, limit, cursor, customer=customer, role=role, updated_since=updated_since)


@router.get(
    "/customers/{external_id}/contacts",
    response_model=Page[Contact],
    summary="List a debtor's contacts",
)
def list_customer_contacts(
    who: Reader,
    external_id: str,
    limit: Limit = 50,
    cursor: Cursor = None,
    role: ContactRole | None = None,
) -> Page[Contact]:
    debtor = find_customer(who, external_id)
    return _page(who, limit, cursor, customer_id=int(debtor.id), role=role)


def find_contact(who: Caller, external_id: str) -> Contact:
    c = t.contacts.c
    with who.state.reader.connect() as conn:
        row = conn.execute(_query(who.company_id).where(c.external_id == external_id)).first()
        if row is None:
            raise not_found("contact with this external_id")
        return _out(row, _banking(conn, who.company_id, [int(row.id)]))


@router.get("/contacts/{external_id}", response_model=Contact, summary="One contact")
def get_contact(who: Reader, external_id: str) -> Contact:
    return find_contact(who, external_id)


@router.post(
    "/contacts",
    response_model=Contact,
    status_code=201,
    summary="Create or update a contact",
    responses={200: {"model": Contact, "description": "An existing contact, updated"}},
)
async def put_contact(who: Collector, body: ContactIn) -> JSONResponse:
    report = await take_one(who, "contacts", body)
    contact = await run_in_threadpool(find_contact, who, body.external_id)
    return JSONResponse(contact.model_dump(mode="json"), status_code=created_status(report))


@router.post("/contacts/batch", response_model=BatchReport, summary="Create or update contacts")
async def put_contacts(who: Collector, body: ContactBatch) -> BatchReport:
    return await take_rows(who, "contacts", ContactIn, body.rows)
