"""The dashboard's queue of what debtors answered: open disputes waiting for staff (oldest
first), and promises to pay that are due (their date has come), still ahead, or broken.

Keyset pages, like the debtors list: each continues after the sort key and id of the last
row of the one before. Disputes are read by their index on (company, status); promises by
theirs on (company, status, promised date).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Connection, and_, or_, select

from cobro.domain.money import Money
from cobro.engine.debtor_search import decode_cursor, encode_cursor
from cobro.engine.pauses import pause_ends
from cobro.engine.response_lists import PromisedItem
from cobro.store import tables as t

PAGE = 50
PromiseView = Literal["due", "ahead", "broken"]
PROMISE_VIEWS: tuple[PromiseView, ...] = ("due", "ahead", "broken")


@dataclass(frozen=True)
class QueuedDispute:
    id: int
    customer_id: int
    customer: str
    customer_name: str
    item: str
    balance: Money
    reason: str
    source: str
    opened_at: datetime
    attachment: str | None


@dataclass(frozen=True)
class QueuedPromise:
    id: int
    customer_id: int
    customer: str
    customer_name: str
    promised_on: date
    grace_days: int
    source: str
    status: str
    note: str | None
    settled_at: datetime | None
    items: list[PromisedItem] = field(default_factory=list)

    @property
    def paused_until(self) -> date:
        return pause_ends(self.promised_on, self.grace_days)


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    rows: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def _after_instant(cursor: str | None) -> tuple[datetime, int] | None:
    after = decode_cursor(cursor)
    if after is None or not isinstance(after[0], str):
        return None
    try:
        at = datetime.fromisoformat(after[0])
    except ValueError:
        return None
    return (at, after[1]) if at.tzinfo is not None else None


def _after_day(cursor: str | None) -> tuple[date, int] | None:
    after = decode_cursor(cursor)
    if after is None or not isinstance(after[0], str):
        return None
    try:
        return date.fromisoformat(after[0]), after[1]
    except ValueError:
        return None


def open_disputes(
    conn: Connection, company_id: int, cursor: str | None = None, limit: int = PAGE
) -> Page[QueuedDispute]:
    """A page of the company's open disputes, the longest waiting first."""
    d, c, r = t.disputes.c, t.customers.c, t.receivables.c
    q = (
        select(
            d.id,
            d.customer_id,
            c.external_id,
            c.name,
            r.number,
            r.balance_minor,
            r.currency,
            d.reason,
            d.source,
            d.opened_at,
            d.attachment_name,
        )
        .join(t.customers, c.id == d.customer_id)
        .join(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id, d.status == "open")
    )
    after = _after_instant(cursor)
    if after is not None:
        at, last = after
        q = q.where(or_(d.opened_at > at, and_(d.opened_at == at, d.id > last)))
    found = conn.execute(q.order_by(d.opened_at, d.id).limit(limit + 1)).all()
    rows = [
        QueuedDispute(
            int(row.id),
            int(row.customer_id),
            str(row.external_id),
            str(row.name),
            str(row.number),
            Money.from_minor(int(row.balance_minor), row.currency),
            str(row.reason),
            str(row.source),
            row.opened_at,
            row.attachment_name,
        )
        for row in found[:limit]
    ]
    next_cursor = None
    if len(found) > limit:
        next_cursor = encode_cursor([rows[-1].opened_at.isoformat(), rows[-1].id])
    return Page(rows, next_cursor)


def promises(
    conn: Connection,
    company_id: int,
    view: PromiseView,
    today: date,
    cursor: str | None = None,
    limit: int = PAGE,
) -> Page[QueuedPromise]:
    """A page of promises: ``due`` (open, their date today or past: paused until the grace
    ends, broken by the next run if still unpaid then), ``ahead`` (open, their date to
    come), both soonest first; ``broken`` (the latest broken first)."""
    p, c = t.promises.c, t.customers.c
    q: Any = (
        select(
            p.id,
            p.customer_id,
            c.external_id,
            c.name,
            p.promised_on,
            p.grace_days,
            p.source,
            p.status,
            p.note,
            p.settled_at,
        )
        .join(t.customers, c.id == p.customer_id)
        .where(p.company_id == company_id)
    )
    next_key: Any
    if view == "broken":
        q = q.where(p.status == "broken")
        after = _after_instant(cursor)
        if after is not None:
            at, last = after
            q = q.where(or_(p.settled_at < at, and_(p.settled_at == at, p.id < last)))
        q = q.order_by(p.settled_at.desc(), p.id.desc())
    else:
        q = q.where(p.status == "open")
        q = q.where(p.promised_on <= today if view == "due" else p.promised_on > today)
        day_after = _after_day(cursor)
        if day_after is not None:
            on, last = day_after
            q = q.where(or_(p.promised_on > on, and_(p.promised_on == on, p.id > last)))
        q = q.order_by(p.promised_on, p.id)
    found = conn.execute(q.limit(limit + 1)).all()
    page = found[:limit]
    items = _items(conn, [int(row.id) for row in page])
    rows = [
        QueuedPromise(
            int(row.id),
            int(row.customer_id),
            str(row.external_id),
            str(row.name),
            row.promised_on,
            int(row.grace_days),
            str(row.source),
            str(row.status),
            row.note,
            row.settled_at,
            items.get(int(row.id), []),
        )
        for row in page
    ]
    next_cursor = None
    if len(found) > limit:
        last_row = rows[-1]
        if view == "broken":
            assert last_row.settled_at is not None
            next_key = last_row.settled_at.isoformat()
        else:
            next_key = last_row.promised_on.isoformat()
        next_cursor = encode_cursor([next_key, last_row.id])
    return Page(rows, next_cursor)


def _items(conn: Connection, ids: list[int]) -> dict[int, list[PromisedItem]]:
    """The items of the promises ``ids``: balance promised and balance now."""
    if not ids:
        return {}
    pi, r = t.promise_items.c, t.receivables.c
    found: dict[int, list[PromisedItem]] = defaultdict(list)
    for row in conn.execute(
        select(pi.promise_id, pi.balance_minor, r.number, r.balance_minor.label("now"), r.currency)
        .join(t.receivables, r.id == pi.receivable_id)
        .where(pi.promise_id.in_(ids))
        .order_by(r.due_on, r.id)
    ):
        found[int(row.promise_id)].append(
            PromisedItem(
                str(row.number),
                Money.from_minor(int(row.balance_minor), row.currency),
                Money.from_minor(int(row.now), row.currency),
            )
        )
    return found


def dispute_of(conn: Connection, company_id: int, dispute_id: int) -> str | None:
    """The status of the company's dispute ``dispute_id``; None when it has none."""
    d = t.disputes.c
    found = conn.execute(
        select(d.status).where(d.company_id == company_id, d.id == dispute_id)
    ).scalar()
    return None if found is None else str(found)


__all__ = [
    "PROMISE_VIEWS",
    "Page",
    "PromiseView",
    "QueuedDispute",
    "QueuedPromise",
    "dispute_of",
    "open_disputes",
    "promises",
]
