"""What the collections resources (claims, disputes, promises, tasks, segments, runs,
simulations) share: the company's time zone, amounts, the debtor a request names, and the
problems they answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from functools import cache
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Path, Query
from pydantic import AfterValidator
from sqlalchemy import Connection, Select, bindparam, select

from cobro.domain.money import Money as DomainMoney
from cobro.store import tables as t
from cobro.web.api.auth import Caller
from cobro.web.api.models import Money
from cobro.web.api.pagination import MAX_INT, Page, decode_cursor, encode_cursor
from cobro.web.api.problems import FieldError, Problem

T = TypeVar("T")

# Text a request's body gives: PostgreSQL's text holds no NUL character, so none is
# accepted (paths and queries are checked for every route: ``without_nul``).
NO_NUL = r"^[^\x00]*$"
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


def _known_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"a day from {FIRST_DAY} to {LAST_DAY}")
    return day


# A day a request gives (dates far outside the calendar Cobro plans on are refused).
Day = Annotated[date, AfterValidator(_known_day)]
# A row id in a path (INTEGER columns: 32 bits on PostgreSQL).
Id = Annotated[int, Path(ge=1, le=MAX_INT)]
# The debtor's external_id, as a filter.
CustomerFilter = Annotated[
    str | None, Query(max_length=100, description="The debtor's external_id.")
]


def company_tz(who: Caller) -> ZoneInfo:
    return ZoneInfo(who.state.ws.config.company.timezone)


def day_start(who: Caller, day: date) -> datetime:
    """The instant the company's day ``day`` begins, in UTC."""
    return datetime.combine(day, time(0), company_tz(who)).astimezone(UTC)


def money(value: DomainMoney) -> Money:
    return Money(amount=value.amount, currency=value.currency)


@cache
def _customer_id_statement() -> Select[Any]:
    c = t.customers.c
    return select(c.id).where(
        c.company_id == bindparam("company"), c.external_id == bindparam("external_id")
    )


def customer_id(conn: Connection, who: Caller, external_id: str) -> int | None:
    """The id of the caller's debtor ``external_id`` (None: the company has none)."""
    params = {"company": who.company_id, "external_id": external_id}
    found = conn.execute(_customer_id_statement(), params).scalar()
    return None if found is None else int(found)


def refused(field: str, problem: str) -> Problem:
    """422: a field of the request names something the company does not have, or asks for
    what cannot be done; nothing was changed."""
    return Problem(
        422,
        "invalid-request",
        f"{field}: {problem}; nothing was done",
        [FieldError(field=field, problem=problem)],
    )


def conflict(detail: str) -> Problem:
    """409: the resource is not in a state that allows this (already done, never sent)."""
    return Problem(409, "conflict", detail)


def after_id(cursor: str | None) -> int | None:
    """The id a cursor of an id-ordered list carries (None: the first page)."""
    after = decode_cursor(cursor, (int,))
    return None if after is None else int(after[0])


def id_page(items: Sequence[T], limit: int, key: Any) -> Page[T]:
    """A page of ``items`` (fetched as ``limit + 1`` to know whether more follow), whose
    cursor carries the last one's id (``key(item)``)."""
    more = len(items) > limit
    shown = list(items[:limit])
    return Page[T](
        data=shown, next_cursor=encode_cursor([key(shown[-1])]) if more and shown else None
    )
