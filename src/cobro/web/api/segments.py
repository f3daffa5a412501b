"""``/segments``: the named filters over debtors of the company's configuration, and who is
in each on a date (what `cobro segments` shows)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from cobro.config.actions import SegmentConfig
from cobro.domain.money import Money as DomainMoney
from cobro.engine.segments import members_page_select, members_select
from cobro.web.api.auth import Caller, Reader
from cobro.web.api.common import Day, money
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Amount, Money
from cobro.web.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import not_found

router = APIRouter(prefix="/segments", tags=["segments"], route_class=IdempotentRoute)

OnDate = Annotated[
    Day | None,
    Query(alias="date", description="Evaluate on this day (default: today, company time)."),
]


class AmountRange(BaseModel):
    min: Amount | None
    max: Amount | None


class DayRange(BaseModel):
    min: int | None
    max: int | None


class Criteria(BaseModel):
    """Debtors matching every condition given (null: any). Amounts are in the company
    currency, measured on the day the segment is evaluated."""

    kind: str | None
    groups: list[str]
    language: str | None
    tags: list[str] = Field(description="Every tag must be present.")
    attributes: dict[str, str]
    policy: str | None
    blocked: bool | None
    overdue_amount: AmountRange | None
    open_amount: AmountRange | None
    days_overdue: DayRange | None


class Segment(BaseModel):
    name: str
    description: str | None
    currency: str = Field(description="The currency of its amounts and its members' debt.")
    criteria: Criteria


class SegmentCount(Segment):
    date: dt.date = Field(description="The day it was evaluated on.")
    members: int = Field(description="How many debtors are in it on that day.")


class Member(BaseModel):
    customer: str = Field(description="The debtor's external_id.")
    name: str
    open: Money = Field(description="Open debt in the company currency.")
    overdue: Money
    days_overdue: int = Field(description="Of the oldest overdue item (0: none overdue).")


def segment_out(who: Caller, name: str, s: SegmentConfig) -> Segment:
    groups = [s.group] if isinstance(s.group, str) else list(s.group or [])
    return Segment(
        name=name,
        description=s.description,
        currency=who.state.ws.config.company.currency,
        criteria=Criteria(
            kind=s.kind,
            groups=groups,
            language=s.language,
            tags=list(s.tags),
            attributes=dict(s.attributes),
            policy=s.policy,
            blocked=s.blocked,
            overdue_amount=(
                AmountRange(min=s.overdue_amount.min, max=s.overdue_amount.max)
                if s.overdue_amount
                else None
            ),
            open_amount=(
                AmountRange(min=s.open_amount.min, max=s.open_amount.max) if s.open_amount else None
            ),
            days_overdue=(
                DayRange(min=s.days_overdue.min, max=s.days_overdue.max) if s.days_overdue else None
            ),
        ),
    )


def _config(who: Caller, name: str) -> SegmentConfig:
    found = who.state.ws.config.segments.get(name)
    if found is None:
        raise not_found("segment with this name")
    return found


@router.get("", response_model=Page[Segment], summary="List segments")
def list_segments(who: Reader) -> Page[Segment]:
    """Every segment of the company's configuration (one page: they are few). How many
    debtors each holds: `GET /segments/{name}`."""
    segments = who.state.ws.config.segments
    return Page[Segment](data=[segment_out(who, name, s) for name, s in segments.items()])


@router.get("/{name}", response_model=SegmentCount, summary="One segment, with its size")
def get_segment(who: Reader, name: str, on: OnDate = None) -> SegmentCount:
    found = _config(who, name)
    day = on or who.state.today()
    config = who.state.ws.config
    query = members_select(who.company_id, config.segment(name), day, config.company.currency)
    with who.state.reader.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(query.order_by(None).subquery())
        ).scalar_one()
    return SegmentCount(**segment_out(who, name, found).model_dump(), date=day, members=int(n))


@router.get("/{name}/members", response_model=Page[Member], summary="Who is in a segment")
def list_segment_members(
    who: Reader, name: str, on: OnDate = None, limit: Limit = 50, cursor: Cursor = None
) -> Page[Member]:
    """The debtors in the segment on the day, by external_id, with their debt."""
    _config(who, name)
    day = on or who.state.today()
    config = who.state.ws.config
    currency = config.company.currency
    after = decode_cursor(cursor, (str,))
    query = members_page_select(
        who.company_id, config.segment(name), day, currency, after[0] if after else None, limit + 1
    )
    with who.state.reader.connect() as conn:
        rows = list(conn.execute(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Member](
        data=[
            Member(
                customer=r.external_id,
                name=r.name,
                open=money(DomainMoney.from_minor(int(r.open_minor), currency)),
                overdue=money(DomainMoney.from_minor(int(r.overdue_minor), currency)),
                days_overdue=(day - r.oldest_overdue).days if r.oldest_overdue else 0,
            )
            for r in rows
        ],
        next_cursor=encode_cursor([rows[-1].external_id]) if more else None,
    )
