"""``/promises``: promises to pay; their items are paused until the promised date plus the
grace; one taken by phone recorded (what `cobro promises add` does)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from starlette.responses import JSONResponse

from cobro.engine.response_lists import Promise as PromiseRecord
from cobro.engine.response_lists import debtor_id, item_id, promisable_items
from cobro.engine.response_lists import list_promises as read_promises
from cobro.engine.responses import ResponseError
from cobro.engine.responses import add_promise as record_promise
from cobro.web.api.auth import Caller, Collector, Reader
from cobro.web.api.common import (
    NO_NUL,
    CustomerFilter,
    Day,
    Id,
    after_id,
    conflict,
    id_page,
    money,
    refused,
)
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Money, Strict
from cobro.web.api.pagination import Cursor, Limit, Page
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/promises", tags=["promises"], route_class=IdempotentRoute)

PREFIX = "/api/v1"
PromiseStatus = Literal["open", "kept", "broken"]


class PromisedItem(BaseModel):
    number: str
    external_id: str
    promised: Money = Field(description="The balance when it was promised.")
    balance: Money = Field(description="The balance now.")


class Promise(BaseModel):
    id: int
    customer: str = Field(description="The debtor's external_id.")
    customer_name: str
    promised_on: dt.date
    grace_days: int
    paused_until: dt.date = Field(description="Its items are left out of claims until then.")
    source: Literal["portal", "staff"]
    status: PromiseStatus = Field(
        description="open; kept (every item paid); broken (unpaid after the grace: dunning "
        "resumes with one claim)."
    )
    created_at: AwareDatetime
    claim: int | None = Field(description="The claim whose link it came from.")
    note: str | None
    settled_at: AwareDatetime | None
    items: list[PromisedItem]


class PromiseIn(Strict):
    """A promise taken by phone (source `staff`), as `cobro promises add` records it: give
    `items` or `all`."""

    customer: str = Field(
        min_length=1, max_length=100, pattern=NO_NUL, description="The debtor's external_id."
    )
    items: list[Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Item numbers or external_ids.",
    )
    all: bool = Field(default=False, description="Every open item not disputed or promised.")
    promised_on: Day = Field(
        description="The promised date: today at the earliest, at most "
        "portal.promise_max_days ahead."
    )
    note: str | None = Field(
        default=None, max_length=2000, pattern=NO_NUL, description="What was agreed."
    )

    @model_validator(mode="after")
    def _items_or_all(self) -> PromiseIn:
        if self.all == bool(self.items):
            raise ValueError("give either items or all: true")
        return self


def promise_out(x: PromiseRecord) -> Promise:
    return Promise(
        id=x.id,
        customer=x.customer,
        customer_name=x.customer_name,
        promised_on=x.promised_on,
        grace_days=x.grace_days,
        paused_until=x.paused_until,
        source=x.source,  # type: ignore[arg-type]
        status=x.status,  # type: ignore[arg-type]
        created_at=x.created_at,
        claim=x.claim,
        note=x.note,
        settled_at=x.settled_at,
        items=[
            PromisedItem(
                number=i.number,
                external_id=i.external_id,
                promised=money(i.promised),
                balance=money(i.balance),
            )
            for i in x.items
        ],
    )


def find_promise(who: Caller, promise_id: int) -> Promise:
    with who.state.reader.connect() as conn:
        found = read_promises(conn, who.company_id, promise_id=promise_id)
    if not found:
        raise not_found("promise with this id")
    return promise_out(found[0])


@router.get("", response_model=Page[Promise], summary="List promises to pay")
def list_promises(
    who: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: PromiseStatus | None = None,
    customer: CustomerFilter = None,
) -> Page[Promise]:
    with who.state.reader.connect() as conn:
        found = read_promises(
            conn,
            who.company_id,
            status=status,
            customer=customer,
            after=after_id(cursor),
            limit=limit + 1,
        )
    return id_page([promise_out(x) for x in found], limit, lambda x: x.id)


@router.get("/{promise_id}", response_model=Promise, summary="One promise to pay")
def get_promise(who: Reader, promise_id: Id) -> Promise:
    return find_promise(who, promise_id)


@router.post(
    "",
    response_model=Promise,
    status_code=201,
    summary="Record a promise to pay taken by phone",
)
def add_promise(who: Collector, body: PromiseIn) -> JSONResponse:
    """Its items are paused until the promised date plus portal.promise_grace_days; unpaid
    then, the promise is broken and dunning resumes with one claim. An item already
    promised, disputed or not open is refused (409)."""
    portal = who.state.ws.config.portal
    today = who.state.today()
    if body.promised_on < today:
        raise refused("body.promised_on", f"{body.promised_on} has passed (today is {today})")
    if (body.promised_on - today).days > portal.promise_max_days:
        raise refused(
            "body.promised_on",
            f"{body.promised_on} is more than {portal.promise_max_days} days ahead "
            "(portal.promise_max_days)",
        )
    with who.state.ws.engine.begin() as conn:
        try:
            cid = debtor_id(conn, who.company_id, body.customer)
        except ResponseError:
            raise refused("body.customer", "no debtor with this external_id") from None
        if body.all:
            ids = promisable_items(conn, who.company_id, cid)
            if not ids:
                raise conflict(f"{body.customer} has no open item that is not disputed or promised")
        else:
            ids = []
            for n, ref in enumerate(body.items or []):
                try:
                    ids.append(item_id(conn, who.company_id, cid, ref))
                except ResponseError as exc:
                    raise refused(f"body.items.{n}", str(exc)) from None
            ids = list(dict.fromkeys(ids))
        try:
            found = record_promise(
                conn,
                who.company_id,
                cid,
                ids,
                body.promised_on,
                portal.promise_grace_days,
                who.state.now(),
                today=today,
                max_days=portal.promise_max_days,
                source="staff",
                note=body.note,
            )
        except ResponseError as exc:
            raise conflict(str(exc)) from None
    return JSONResponse(
        find_promise(who, found).model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"{PREFIX}/promises/{found}"},
    )
