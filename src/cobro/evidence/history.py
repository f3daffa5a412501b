"""Claim history: every outbox row with its receivables, deliveries and what followed (opens,
reads, disputes, promises, payments: ``cobro.evidence.timeline``), for people and JSON."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, or_, select

from cobro.config import CobroConfig
from cobro.domain.money import Money
from cobro.engine.messages import RESEND_PREFIX, message_spec
from cobro.engine.resend import targets
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.evidence.timeline import ClaimEvent, claim_events
from cobro.store import tables as t


def step_name(config: CobroConfig, step: str, language: str | None = None) -> str:
    """What a person reads for an outbox step: the phase's name, the scheduled action's
    description (in ``language`` where ``cobro.yaml`` gives it one), the kind of notice;
    the step itself once it is no longer configured."""
    try:
        return message_spec(config, step).name_in(language)
    except KeyError:
        return step


@dataclass(frozen=True)
class ClaimedItem:
    number: str
    kind: str
    due_on: date
    amount: Money
    balance_at_send: Money | None
    balance_now: Money
    receivable_id: int = 0
    external_id: str = ""  # the company's own id of the item


@dataclass(frozen=True)
class DeliveryRecord:
    at: datetime
    channel: str
    recipient: str
    role: str
    status: str
    message_id: str | None
    error: str | None
    id: int | None = None  # the deliveries row: `history --show-message ID` prints it
    message_sha256: str | None = None  # of the message as sent, when it was kept
    resend_of: int | None = None  # a resend: the delivery whose message it sent again
    state: str = "sent"  # where it stands (``cobro.domain.delivery``)


@dataclass
class Claim:
    outbox_id: int
    occurrence_on: date
    customer: str
    customer_name: str
    step: str
    phase_name: str
    status: str
    reason: str | None
    sent_at: datetime | None = None  # when its first message went out (was accepted)
    sent_on: date | None = None  # that instant's date, company time
    items: list[ClaimedItem] = field(default_factory=list)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    resend_of: int | None = None  # a resend (``cobro resend``): the claim it repeats
    resend_targets: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    customer_id: int = 0
    # Deliveries, opens, reads, disputes, promises and payments, in time order.
    events: list[ClaimEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "outbox_id": self.outbox_id,
            "date": self.occurrence_on.isoformat(),
            "sent_on": self.sent_on.isoformat() if self.sent_on else None,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "phase": self.step,
            "phase_name": self.phase_name,
            "status": self.status,
            "reason": self.reason,
            "resend_of": self.resend_of,
            "items": [
                {
                    "number": i.number,
                    "kind": i.kind,
                    "due_on": i.due_on.isoformat(),
                    "currency": i.amount.currency,
                    "amount": str(i.amount.amount),
                    "balance_at_send": (
                        str(i.balance_at_send.amount) if i.balance_at_send else None
                    ),
                    "balance_now": str(i.balance_now.amount),
                }
                for i in self.items
            ],
            "deliveries": [
                {
                    "at": d.at.isoformat(),
                    "channel": d.channel,
                    "recipient": d.recipient,
                    "role": d.role,
                    "status": d.status,
                    "message_id": d.message_id,
                    "error": d.error,
                    "id": d.id,
                    "message_sha256": d.message_sha256,
                    "resend_of": d.resend_of,
                    "state": d.state,
                }
                for d in self.deliveries
            ],
            "events": [e.to_json() for e in self.events],
        }


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def claim_history(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    customer_external_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
    outbox_id: int | None = None,
) -> list[Claim]:
    """Every claim of the company (or of one debtor, or the one whose outbox id is
    ``outbox_id``), oldest first.

    ``since`` and ``until`` (company dates, both included) select claims by the day
    their first message went out (a delivery the provider accepted); a claim that sent
    nothing by the day it was settled (failed, cancelled), one still waiting or being
    retried by its planned date.
    """
    o, c, d = t.outbox.c, t.customers.c, t.deliveries.c
    tz = ZoneInfo(config.company.timezone)
    accepted = [d.company_id == company_id, d.status != "failed"]  # refused: not sent
    if outbox_id is not None:
        accepted.append(d.outbox_id == outbox_id)
    first = (
        select(d.outbox_id, func.min(d.at).label("sent_at"))
        .where(*accepted)
        .group_by(d.outbox_id)
        .subquery()
    )
    settled = func.coalesce(first.c.sent_at, o.finished_at)
    q = (
        select(o.id, o.occurrence_on, o.step, o.status, o.reason, c.external_id, c.name)
        .add_columns(first.c.sent_at, o.payload, c.id.label("cid"))
        .join(t.customers, c.id == o.customer_id)
        .outerjoin(first, first.c.outbox_id == o.id)
        .where(o.company_id == company_id, o.step.not_like(IS_WEBHOOK))  # not claims
        .order_by(o.occurrence_on, o.id)
    )
    if customer_external_id is not None:
        q = q.where(c.external_id == customer_external_id)
    if outbox_id is not None:
        q = q.where(o.id == outbox_id)
    if since is not None:
        start = _midnight(since, tz)
        q = q.where(or_(settled >= start, and_(settled.is_(None), o.occurrence_on >= since)))
    if until is not None:
        end = _midnight(until + timedelta(days=1), tz)
        q = q.where(or_(settled < end, and_(settled.is_(None), o.occurrence_on <= until)))
    claims: dict[int, Claim] = {}
    for row in conn.execute(q):
        name = step_name(config, row.step)
        claims[row.id] = Claim(
            row.id,
            row.occurrence_on,
            row.external_id,
            row.name,
            row.step,
            name,
            row.status,
            row.reason,
            row.sent_at,
            row.sent_at.astimezone(tz).date() if row.sent_at else None,
            customer_id=row.cid,
        )
        if row.step.startswith(RESEND_PREFIX):
            claim = claims[row.id]
            claim.resend_of = (row.payload or {}).get("resend_of")
            claim.resend_targets = {
                (x.channel, x.address.lower()): x.delivery for x in targets(row.payload)
            }
    if not claims:
        return []
    ids = list(claims)
    items: dict[int, list[ClaimedItem]] = defaultdict(list)
    deliveries: dict[int, list[DeliveryRecord]] = defaultdict(list)
    ci, r, d = t.claim_items.c, t.receivables.c, t.deliveries.c
    for chunk in (ids[i : i + 5000] for i in range(0, len(ids), 5000)):
        for item in conn.execute(
            select(
                ci.outbox_id,
                ci.receivable_id,
                ci.balance_minor,
                r.number,
                r.kind,
                r.due_on,
                r.currency,
                r.amount_minor,
                r.balance_minor.label("now_minor"),
                r.external_id,
            )
            .join(t.receivables, r.id == ci.receivable_id)
            .where(ci.outbox_id.in_(chunk))
            .order_by(r.due_on, r.id)
        ):
            items[item.outbox_id].append(
                ClaimedItem(
                    item.number,
                    item.kind,
                    item.due_on,
                    Money.from_minor(item.amount_minor, item.currency),
                    None
                    if item.balance_minor is None
                    else Money.from_minor(item.balance_minor, item.currency),
                    Money.from_minor(item.now_minor, item.currency),
                    item.receivable_id,
                    item.external_id,
                )
            )
        for dl in conn.execute(
            select(d.outbox_id, d.at, d.channel, d.recipient, d.recipient_role, d.status)
            .add_columns(d.message_id, d.error, d.id, d.message_sha256, d.state)
            .where(d.outbox_id.in_(chunk))
            .order_by(d.id)
        ):
            deliveries[dl.outbox_id].append(
                DeliveryRecord(
                    dl.at,
                    dl.channel,
                    dl.recipient,
                    dl.recipient_role,
                    dl.status,
                    dl.message_id,
                    dl.error,
                    dl.id,
                    dl.message_sha256,
                    state=dl.state,
                )
            )
    for oid, claim in claims.items():
        claim.items = items.get(oid, [])
        claim.deliveries = [
            replace(x, resend_of=claim.resend_targets.get((x.channel, x.recipient.lower())))
            if claim.resend_targets
            else x
            for x in deliveries.get(oid, [])
        ]
    for oid, found in claim_events(conn, tz, claims).items():
        claims[oid].events = found
    return list(claims.values())
