"""The message log (seed 004's "claim history" of every email sent): each delivery of every
claim and notice, newest first, filtered by day, phase, channel, delivery state and
recipient, a keyset page at a time.

A page reads the deliveries' index on (company, time) backwards and stops once it is full;
each continues before the time and id of the last row of the one before (never an OFFSET),
so a page deep in the log costs what the first does. A complete address (an email
address, a phone number) some message went to is looked up in the index on (company,
lower-case recipient): the messages to it, however few. The start of an address, a
channel, a state or a phase few messages have is checked row by row on the way: narrowed
by days, it reads that period only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from cobro.config.schema import RESERVED_STEP_PREFIXES
from cobro.domain.delivery import FAILURES, DeliveryState
from cobro.engine.debtor_search import decode_cursor, encode_cursor
from cobro.store import tables as t
from cobro.store.db import like_literal

PAGE = 50
MAX_RECIPIENT = 320
STATES: tuple[str, ...] = (*(s.value for s in DeliveryState), "failed")


@dataclass(frozen=True)
class MessageFilter:
    """What the log is asked for; every field is optional.

    ``phase`` is a step (``b2b/01``, ``action/statement``) or the kind of an event-driven
    message (``receipt``, ``unpaid``, ``upcoming``, ``admin``, ``banking``, ``resend``).
    ``state`` is a delivery state, or ``failed`` for any of the failures. ``recipient``
    is a complete address, matched exactly (any case; a phone number as written in
    ``region``, the company's country), or the start of one."""

    start: datetime | None = None  # from this instant ...
    end: datetime | None = None  # ... to before this one
    phase: str | None = None
    channel: str | None = None
    state: str | None = None
    recipient: str = ""
    region: str | None = None


@dataclass(frozen=True)
class LoggedMessage:
    id: int  # the delivery
    at: datetime
    channel: str
    recipient: str
    role: str
    status: str  # what the channel answered on the spot: sent, failed, sending
    state: str  # where the delivery stands now (``cobro.domain.delivery``)
    error: str | None
    cost: Decimal
    claim: int  # the outbox row
    claim_status: str
    step: str
    customer_id: int
    customer: str
    customer_name: str


@dataclass
class MessagePage:
    rows: list[LoggedMessage] = field(default_factory=list)
    next_cursor: str | None = None


def _phase(phase: str) -> ColumnElement[bool]:
    o = t.outbox.c
    if phase in RESERVED_STEP_PREFIXES and phase != "action":
        return o.step.like(like_literal(f"{phase}/") + "%", escape="/")
    return o.step == phase


def _state(state: str) -> ColumnElement[bool]:
    d = t.deliveries.c
    if state == "failed":
        return d.state.in_(sorted(s.value for s in FAILURES))
    return d.state == state


def recipient_wanted(text: str, region: str | None) -> tuple[str, bool]:
    """(what to look for, whether it is a complete address): an email address with a
    domain, in lower case; a valid phone number, as E.164; else the text in lower case, the
    start of an address."""
    import phonenumbers

    text = text.strip()[:MAX_RECIPIENT]
    if "@" in text:
        local, _, domain = text.rpartition("@")
        dot = domain.find(".")
        complete = bool(local) and 0 < dot < len(domain) - 1 and " " not in text
        return text.lower(), complete
    if sum(ch.isdigit() for ch in text) >= 6:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return str(e164), True
    return text.lower(), False


def message_log(
    conn: Connection,
    company_id: int,
    wanted: MessageFilter,
    cursor: str | None = None,
    limit: int = PAGE,
) -> MessagePage:
    """A page of the company's messages matching ``wanted``, newest first, after ``cursor``."""
    d, o, c = t.deliveries.c, t.outbox.c, t.customers.c
    q: Any = (
        select(
            d.id,
            d.at,
            d.channel,
            d.recipient,
            d.recipient_role,
            d.status,
            d.state,
            d.error,
            d.cost,
            o.id.label("claim"),
            o.status.label("claim_status"),
            o.step,
            c.id.label("customer_id"),
            c.external_id,
            c.name,
        )
        .select_from(t.deliveries)
        .join(t.outbox, o.id == d.outbox_id)
        .join(t.customers, c.id == o.customer_id)
        .where(d.company_id == company_id)
    )
    if wanted.start is not None:
        q = q.where(d.at >= wanted.start)
    if wanted.end is not None:
        q = q.where(d.at < wanted.end)
    if wanted.phase:
        q = q.where(_phase(wanted.phase))
    if wanted.channel:
        q = q.where(d.channel == wanted.channel)
    if wanted.state:
        q = q.where(_state(wanted.state))
    if wanted.recipient.strip():
        recipient, complete = recipient_wanted(wanted.recipient, wanted.region)
        to_it = func.lower(d.recipient) == recipient
        if (
            complete
            and conn.execute(select(d.id).where(d.company_id == company_id, to_it).limit(1)).first()
        ):
            q = q.where(to_it)  # the messages to that address, by the index
        else:  # the start of addresses (or a complete one no message went to)
            q = q.where(func.lower(d.recipient).like(f"{like_literal(recipient)}%", escape="/"))
    after = decode_cursor(cursor)
    if after is not None and isinstance(after[0], str):
        try:
            at = datetime.fromisoformat(after[0])
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            q = q.where(or_(d.at < at, and_(d.at == at, d.id < after[1])))
    found = conn.execute(q.order_by(d.at.desc(), d.id.desc()).limit(limit + 1)).all()
    rows = [
        LoggedMessage(
            int(row.id),
            row.at,
            str(row.channel),
            str(row.recipient),
            str(row.recipient_role),
            str(row.status),
            str(row.state),
            row.error,
            Decimal(str(row.cost or 0)),
            int(row.claim),
            str(row.claim_status),
            str(row.step),
            int(row.customer_id),
            str(row.external_id),
            str(row.name),
        )
        for row in found[:limit]
    ]
    next_cursor = None
    if len(found) > limit:
        last = rows[-1]
        next_cursor = encode_cursor([last.at.isoformat(), last.id])
    return MessagePage(rows, next_cursor)


__all__ = ["PAGE", "STATES", "LoggedMessage", "MessageFilter", "MessagePage", "message_log"]
