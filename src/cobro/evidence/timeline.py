"""What followed each claim, in time order: deliveries, opens, reads, disputes, promises, payments.

A delivery, an open or a read names its claim. A dispute or a promise made from a
claim's link names that claim too; one staff recorded, and a payment, belong to the
latest claim sent that listed the item on or before that day. An *opened* link (a GET,
weak: mail scanners open links too) and a *read* (the debtor's explicit confirmation)
are separate kinds, never merged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from cobro.domain.money import Money
from cobro.engine.pauses import pause_ends
from cobro.store import tables as t

if TYPE_CHECKING:
    from cobro.evidence.history import Claim

# The order of events that share an instant.
KINDS = (
    "delivery",
    "delivery.state",
    "opened",
    "read",
    "dispute",
    "dispute.accepted",
    "dispute.rejected",
    "promise",
    "promise.kept",
    "promise.broken",
    "payment",
)


@dataclass(frozen=True)
class ClaimEvent:
    """One thing that happened to a claim. A payment has a day, not an instant: ``at`` is
    the start of that day in company time (it comes first among that day's events) and
    ``day_only`` is set."""

    at: datetime
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    day_only: bool = False

    @property
    def order(self) -> tuple[datetime, int]:
        """Sort key: the instant (a payment's day: before everything else of that day)."""
        return self.at, KINDS.index(self.kind)

    def when(self, tz: ZoneInfo) -> str:
        local = self.at.astimezone(tz)
        return local.date().isoformat() if self.day_only else local.strftime("%Y-%m-%d %H:%M")

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, **self.data}


def _chunks(values: Iterable[int], size: int = 5000) -> Iterator[list[int]]:
    items = sorted(set(values))
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Claims:
    """Which claim an item-level event belongs to: the latest sent claim that listed the
    item on or before the event's day."""

    def __init__(self, conn: Connection, receivable_ids: Iterable[int]) -> None:
        ci, o = t.claim_items.c, t.outbox.c
        self.listed: dict[int, list[tuple[date, int]]] = defaultdict(list)
        for chunk in _chunks(receivable_ids):
            for row in conn.execute(
                select(ci.receivable_id, o.occurrence_on, o.id)
                .join(t.outbox, o.id == ci.outbox_id)
                .where(ci.receivable_id.in_(chunk), o.status == "sent")
            ):
                self.listed[row.receivable_id].append((row.occurrence_on, row.id))
        for claims in self.listed.values():
            claims.sort()

    def of(self, receivable_ids: Sequence[int], day: date) -> int | None:
        found = [
            (on, oid) for rid in receivable_ids for on, oid in self.listed.get(rid, ()) if on <= day
        ]
        return max(found)[1] if found else None


def _delivery_events(
    conn: Connection, claims: dict[int, Claim], events: dict[int, list[ClaimEvent]]
) -> None:
    """What was learned about each delivery after it was recorded (a status callback, a
    bounce, a complaint)."""
    where = {dl.id: oid for oid, claim in claims.items() for dl in claim.deliveries if dl.id}
    ev = t.delivery_events.c
    for chunk in _chunks(where):
        for row in conn.execute(
            select(ev.delivery_id, ev.state, ev.source, ev.detail, ev.at)
            .where(ev.delivery_id.in_(chunk))
            .order_by(ev.id)
        ):
            text = f"#{row.delivery_id} {row.state.replace('_', ' ')} ({row.source})"
            if row.detail:
                text += f": {row.detail}"
            events[where[row.delivery_id]].append(
                ClaimEvent(
                    row.at,
                    "delivery.state",
                    text,
                    {
                        "delivery": row.delivery_id,
                        "state": row.state,
                        "source": row.source,
                        "detail": row.detail,
                    },
                )
            )


def claim_events(
    conn: Connection, tz: ZoneInfo, claims: dict[int, Claim]
) -> dict[int, list[ClaimEvent]]:
    """Outbox id -> the claim's events, in time order (deliveries come from ``claims``)."""
    events: dict[int, list[ClaimEvent]] = defaultdict(list)
    for oid, claim in claims.items():
        for dl in claim.deliveries:
            events[oid].append(
                ClaimEvent(
                    dl.at,
                    "delivery",
                    f"#{dl.id} {dl.channel} → {dl.recipient} ({dl.role}) {dl.status}"
                    + (f", now {dl.state.replace('_', ' ')}" if dl.state != dl.status else "")
                    + (f", resend of #{dl.resend_of}" if dl.resend_of is not None else ""),
                    {
                        "id": dl.id,
                        "channel": dl.channel,
                        "recipient": dl.recipient,
                        "status": dl.status,
                        "state": dl.state,
                        "resend_of": dl.resend_of,
                    },
                )
            )
    _delivery_events(conn, claims, events)
    v = t.claim_views.c
    for chunk in _chunks(claims):
        for row in conn.execute(
            select(v.outbox_id, v.kind, v.at, v.ip, v.user_agent)
            .where(v.outbox_id.in_(chunk))
            .order_by(v.id)
        ):
            text = (
                "link opened (a page view: weak, mail scanners open links too)"
                if row.kind == "opened"
                else "reading confirmed by the debtor"
            )
            if row.ip:
                text += f" from {row.ip}"
            events[row.outbox_id].append(
                ClaimEvent(row.at, row.kind, text, {"ip": row.ip, "user_agent": row.user_agent})
            )
    customers = {claim.customer_id for claim in claims.values()}
    items = {item.receivable_id for claim in claims.values() for item in claim.items}
    _disputes(conn, tz, claims, customers, events)
    _promises(conn, tz, claims, customers, events)
    _payments(conn, tz, claims, items, events)
    for found in events.values():
        found.sort(key=lambda e: e.order)
    return events


def _day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def _disputes(
    conn: Connection,
    tz: ZoneInfo,
    claims: dict[int, Claim],
    customers: set[int],
    events: dict[int, list[ClaimEvent]],
) -> None:
    d, r = t.disputes.c, t.receivables.c
    rows: list[Any] = []
    for chunk in _chunks(customers):
        rows += conn.execute(
            select(t.disputes, r.number)
            .join(t.receivables, r.id == d.receivable_id)
            .where(d.customer_id.in_(chunk))
            .order_by(d.id)
        ).all()
    listed = _Claims(conn, [row.receivable_id for row in rows if row.outbox_id is None])
    for row in rows:
        oid = row.outbox_id or listed.of([row.receivable_id], _day(row.opened_at, tz))
        if oid not in claims:
            continue
        base = {"dispute": row.id, "item": row.number}
        events[oid].append(
            ClaimEvent(
                row.opened_at,
                "dispute",
                f"dispute #{row.id} of {row.number} ({row.source}): {row.reason}",
                {**base, "source": row.source, "reason": row.reason, "ip": row.ip},
            )
        )
        if row.status in ("accepted", "rejected") and row.resolved_at is not None:
            events[oid].append(
                ClaimEvent(
                    row.resolved_at,
                    f"dispute.{row.status}",
                    f"dispute #{row.id} {row.status}"
                    + (f": {row.resolution}" if row.resolution else ""),
                    {**base, "note": row.resolution},
                )
            )


def _promises(
    conn: Connection,
    tz: ZoneInfo,
    claims: dict[int, Claim],
    customers: set[int],
    events: dict[int, list[ClaimEvent]],
) -> None:
    p, pi, r = t.promises.c, t.promise_items.c, t.receivables.c
    promises: dict[int, Any] = {}
    numbers: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for chunk in _chunks(customers):
        for row in conn.execute(
            select(t.promises, pi.receivable_id, r.number)
            .join(t.promise_items, pi.promise_id == p.id)
            .join(t.receivables, r.id == pi.receivable_id)
            .where(p.customer_id.in_(chunk))
            .order_by(p.id, r.due_on, r.id)
        ):
            promises[row.id] = row
            numbers[row.id].append((row.receivable_id, row.number))
    staff = [pid for pid, row in promises.items() if row.outbox_id is None]
    listed = _Claims(conn, [rid for pid in staff for rid, _ in numbers[pid]])
    for pid, row in promises.items():
        ids = [rid for rid, _ in numbers[pid]]
        oid = row.outbox_id or listed.of(ids, _day(row.created_at, tz))
        if oid not in claims:
            continue
        names = [n for _, n in numbers[pid]]
        until = pause_ends(row.promised_on, row.grace_days)
        base = {"promise": pid, "items": names}
        events[oid].append(
            ClaimEvent(
                row.created_at,
                "promise",
                f"promise #{pid} ({row.source}) to pay {', '.join(names)} by "
                f"{row.promised_on.isoformat()} (paused until {until.isoformat()})",
                {
                    **base,
                    "source": row.source,
                    "promised_on": row.promised_on.isoformat(),
                    "paused_until": until.isoformat(),
                    "note": row.note,
                    "ip": row.ip,
                },
            )
        )
        if row.status in ("kept", "broken") and row.settled_at is not None:
            events[oid].append(
                ClaimEvent(
                    row.settled_at, f"promise.{row.status}", f"promise #{pid} {row.status}", base
                )
            )


def _payments(
    conn: Connection,
    tz: ZoneInfo,
    claims: dict[int, Claim],
    items: set[int],
    events: dict[int, list[ClaimEvent]],
) -> None:
    a, pay, r = t.allocations.c, t.payments.c, t.receivables.c
    rows: list[Any] = []
    for chunk in _chunks(items):
        rows += conn.execute(
            select(
                a.receivable_id,
                a.amount_minor,
                pay.external_id,
                pay.paid_on,
                pay.reverses_id,
                r.number,
                r.currency,
            )
            .join(t.payments, pay.id == a.payment_id)
            .join(t.receivables, r.id == a.receivable_id)
            .where(a.receivable_id.in_(chunk))
            .order_by(pay.paid_on, a.id)
        ).all()
    listed = _Claims(conn, {row.receivable_id for row in rows})
    for row in rows:
        oid = listed.of([row.receivable_id], row.paid_on)
        if oid not in claims:
            continue
        amount = Money.from_minor(int(row.amount_minor), row.currency)
        what = "payment reversed" if row.reverses_id else "payment"
        events[oid].append(
            ClaimEvent(
                datetime.combine(row.paid_on, time(0), tz).astimezone(UTC),
                "payment",
                f"{what} {row.external_id}: {amount} on {row.number}",
                {
                    "payment": row.external_id,
                    "item": row.number,
                    "paid_on": row.paid_on.isoformat(),
                    "currency": row.currency,
                    "amount": str(amount.amount),
                    "reversal": row.reverses_id is not None,
                },
                day_only=True,
            )
        )
