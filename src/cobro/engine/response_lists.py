"""Disputes and promises to pay as staff see them, and a debtor's items found by number."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, or_, select

from cobro.domain.money import Money
from cobro.engine.pauses import PAUSING, pause_ends
from cobro.engine.responses import ResponseError
from cobro.store import tables as t


def _local(at: datetime | None, tz: tzinfo) -> str | None:
    return at.astimezone(tz).isoformat() if at else None


@dataclass(frozen=True)
class Dispute:
    id: int
    customer: str
    customer_name: str
    item: str
    balance: Money
    reason: str
    source: str
    status: str
    opened_at: datetime
    claim: int | None
    attachment: str | None
    resolved_at: datetime | None
    resolution: str | None
    item_external_id: str = ""  # the company's own id of the item

    def to_json(self, tz: tzinfo) -> dict[str, Any]:
        """The dispute as JSON, its times in ``tz`` (the company's) with their offset."""
        return {
            "id": self.id,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "item": self.item,
            "currency": self.balance.currency,
            "balance": str(self.balance.amount),
            "reason": self.reason,
            "source": self.source,
            "status": self.status,
            "opened_at": _local(self.opened_at, tz),
            "claim": self.claim,
            "attachment": self.attachment,
            "resolved_at": _local(self.resolved_at, tz),
            "resolution": self.resolution,
        }


@dataclass(frozen=True)
class PromisedItem:
    number: str
    promised: Money  # the balance when it was promised
    balance: Money  # now
    external_id: str = ""  # the company's own id of the item


@dataclass(frozen=True)
class Promise:
    id: int
    customer: str
    customer_name: str
    promised_on: date
    grace_days: int
    source: str
    status: str
    created_at: datetime
    claim: int | None
    note: str | None
    settled_at: datetime | None
    items: list[PromisedItem] = field(default_factory=list)

    @property
    def paused_until(self) -> date:
        return pause_ends(self.promised_on, self.grace_days)

    def to_json(self, tz: tzinfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "promised_on": self.promised_on.isoformat(),
            "grace_days": self.grace_days,
            "paused_until": self.paused_until.isoformat(),
            "source": self.source,
            "status": self.status,
            "created_at": _local(self.created_at, tz),
            "claim": self.claim,
            "note": self.note,
            "settled_at": _local(self.settled_at, tz),
            "items": [
                {
                    "number": i.number,
                    "currency": i.balance.currency,
                    "promised": str(i.promised.amount),
                    "balance": str(i.balance.amount),
                }
                for i in self.items
            ],
        }


def list_disputes(
    conn: Connection,
    company_id: int,
    *,
    open_only: bool = False,
    customer: str | None = None,
    status: str | None = None,
    dispute_id: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Dispute]:
    """Disputes, oldest first (``open_only``: those still waiting for staff; ``status``:
    those in it; ``dispute_id``: that one). With ``after`` or ``limit``, a page of them
    in the order of their ids: ``limit`` with an id above ``after``."""
    d, c, r = t.disputes.c, t.customers.c, t.receivables.c
    q = (
        select(t.disputes, c.external_id, c.name, r.number, r.balance_minor.label("bal"))
        .add_columns(r.currency, r.external_id.label("item_external_id"))
        .join(t.customers, c.id == d.customer_id)
        .join(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id)
    )
    if open_only:
        q = q.where(d.status == "open")
    if status is not None:
        q = q.where(d.status == status)
    if dispute_id is not None:
        q = q.where(d.id == dispute_id)
    if customer is not None:
        q = q.where(c.external_id == customer)
    q = _page(q, d.id, after, limit, (d.opened_at, d.id))
    return [
        Dispute(
            row.id,
            row.external_id,
            row.name,
            row.number,
            Money.from_minor(int(row.bal), row.currency),
            row.reason,
            row.source,
            row.status,
            row.opened_at,
            row.outbox_id,
            row.attachment_name,
            row.resolved_at,
            row.resolution,
            row.item_external_id,
        )
        for row in conn.execute(q)
    ]


def _page(q: Any, key: Any, after: int | None, limit: int | None, order: tuple[Any, ...]) -> Any:
    """``q`` ordered by ``order``; with ``after`` or ``limit``, a page ordered by ``key``
    instead (ids above ``after``, at most ``limit``)."""
    if after is None and limit is None:
        return q.order_by(*order)
    q = q.order_by(key)
    if after is not None:
        q = q.where(key > after)
    return q if limit is None else q.limit(limit)


def list_promises(
    conn: Connection,
    company_id: int,
    *,
    open_only: bool = False,
    customer: str | None = None,
    status: str | None = None,
    promise_id: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Promise]:
    """Promises to pay with their items, oldest first (``open_only``: not kept or broken
    yet; ``status``: those in it; ``promise_id``: that one). With ``after`` or ``limit``, a
    page of them in the order of their ids: ``limit`` with an id above ``after``."""
    p, c, pi, r = t.promises.c, t.customers.c, t.promise_items.c, t.receivables.c
    q = (
        select(t.promises, c.external_id, c.name)
        .join(t.customers, c.id == p.customer_id)
        .where(p.company_id == company_id)
    )
    if open_only:
        q = q.where(p.status == "open")
    if status is not None:
        q = q.where(p.status == status)
    if promise_id is not None:
        q = q.where(p.id == promise_id)
    if customer is not None:
        q = q.where(c.external_id == customer)
    q = _page(q, p.id, after, limit, (p.created_at, p.id))
    rows = conn.execute(q).all()
    items: dict[int, list[PromisedItem]] = defaultdict(list)
    ids = [row.id for row in rows]
    for at in range(0, len(ids), 5000):
        for it in conn.execute(
            select(pi.promise_id, pi.balance_minor, r.number, r.balance_minor.label("now"))
            .add_columns(r.currency, r.external_id)
            .join(t.receivables, r.id == pi.receivable_id)
            .where(pi.promise_id.in_(ids[at : at + 5000]))
            .order_by(r.due_on, r.id)
        ):
            items[it.promise_id].append(
                PromisedItem(
                    it.number,
                    Money.from_minor(int(it.balance_minor), it.currency),
                    Money.from_minor(int(it.now), it.currency),
                    it.external_id,
                )
            )
    return [
        Promise(
            row.id,
            row.external_id,
            row.name,
            row.promised_on,
            row.grace_days,
            row.source,
            row.status,
            row.created_at,
            row.outbox_id,
            row.note,
            row.settled_at,
            items.get(row.id, []),
        )
        for row in rows
    ]


def debtor_id(conn: Connection, company_id: int, external_id: str) -> int:
    """The id of the debtor with this external id; an unknown one is an error."""
    c = t.customers.c
    found = conn.execute(
        select(c.id).where(c.company_id == company_id, c.external_id == external_id)
    ).scalar()
    if found is None:
        raise ResponseError(f"no debtor {external_id!r}")
    return int(found)


def item_id(conn: Connection, company_id: int, customer_id: int, ref: str) -> int:
    """The debtor's receivable whose number or external id is ``ref``."""
    r = t.receivables.c
    found = conn.execute(
        select(r.id, r.number, r.external_id).where(
            r.company_id == company_id,
            r.customer_id == customer_id,
            or_(r.number == ref, r.external_id == ref),
        )
    ).all()
    if not found:
        raise ResponseError(f"the debtor has no item {ref!r} (a number or external id)")
    if len(found) > 1:
        exact = [row for row in found if row.external_id == ref]
        if len(exact) != 1:
            raise ResponseError(f"{ref!r} names several items; use the external id")
        found = exact
    return int(found[0].id)


def promisable_items(conn: Connection, company_id: int, customer_id: int) -> list[int]:
    """The debtor's open items that are neither disputed (open or accepted) nor promised."""
    r, d, p, pi = t.receivables.c, t.disputes.c, t.promises.c, t.promise_items.c
    disputed = select(d.receivable_id).where(d.customer_id == customer_id, d.status.in_(PAUSING))
    promised = (
        select(pi.receivable_id)
        .join(t.promises, p.id == pi.promise_id)
        .where(p.customer_id == customer_id, p.status == "open")
    )
    return list(
        conn.execute(
            select(r.id)
            .where(
                r.company_id == company_id,
                r.customer_id == customer_id,
                r.balance_minor > 0,
                r.id.not_in(disputed),
                r.id.not_in(promised),
            )
            .order_by(r.due_on, r.id)
        ).scalars()
    )


def pause_status(disputes: list[Dispute], promises: list[Promise]) -> dict[str, str]:
    """Item number -> why dunning leaves it alone: "disputed", "dispute accepted",
    "promised for DATE" (open disputes and promises, accepted disputes)."""
    found: dict[str, str] = {}
    for p in promises:
        if p.status == "open":
            for i in p.items:
                found[i.number] = f"promised for {p.promised_on.isoformat()}"
    for d in disputes:
        if d.status == "open":
            found[d.item] = "disputed"
        elif d.status == "accepted":
            found[d.item] = "dispute accepted"
    return found
