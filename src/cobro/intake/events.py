"""Event intake: subscription, charge, banking and push events, each recognised by its id.

``post_event`` validates a payload against its type, records it under its
external id (a redelivered event has no second effect), applies it to the
subscriptions, charges and contacts it concerns, and writes the notices it
causes to the outbox, all in one transaction. A payload that is invalid, or
that names an unknown customer or subscription, changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from sqlalchemy import Connection, Row, Table, delete, insert, select, update

from cobro.domain.money import Money
from cobro.domain.routing import ContactInfo, banking_recipients
from cobro.domain.subscriptions import valid_cycle
from cobro.errors import CobroError
from cobro.intake.jsontext import MAX_DEPTH
from cobro.store import tables as t
from cobro.store.db import counted, insert_ignoring, lock_company
from cobro.workspace import Workspace

STEP_MAX = 90


class EventError(CobroError):
    """An event was refused: unknown type, invalid payload, or unknown records."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=200)]
    occurred_at: AwareDatetime | None = None  # e.g. 2026-03-01T10:00:00+01:00 or ...Z


def _check_cycle(v: str) -> str:
    if not valid_cycle(v):
        raise ValueError("a cycle is weekly, monthly, quarterly, yearly or 'N days'")
    return v


Cycle = Annotated[str, AfterValidator(_check_cycle)]


class _OnSubscription(_Event):
    subscription: Annotated[str, Field(min_length=1, max_length=100)]


class SubscriptionCreated(_OnSubscription):
    customer: Annotated[str, Field(min_length=1, max_length=100)]
    plan: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["plan", "pass"] = "plan"
    price: Decimal
    currency: str | None = None
    cycle: Cycle = "monthly"
    next_charge_on: date | None = None
    ends_on: date | None = None


class CycleChanged(_OnSubscription):
    cycle: Cycle
    next_charge_on: date


class Paused(_OnSubscription):
    from_: Annotated[date, Field(alias="from")]
    until: date | None = None


class Resumed(_OnSubscription):
    next_charge_on: date | None = None


class CancelRequested(_OnSubscription):
    effective_on: date | None = None


class Expired(_OnSubscription):
    pass


class ChargeEvent(_OnSubscription):
    charge: Annotated[str, Field(min_length=1, max_length=100)]
    amount: Decimal
    currency: str | None = None
    charged_at: AwareDatetime | None = None
    next_charge_on: date | None = None
    first_purchase: bool | None = None

    reason: Annotated[str, Field(max_length=300)] | None = None


class BankingEvent(_Event):
    customer: Annotated[str, Field(min_length=1, max_length=100)]
    contact: str | None = None  # stop payments: the contact selected at entry
    details: dict[str, str | int | float | bool | None] = {}


def _b64url(size: int, what: str) -> Callable[[str], str]:
    def check(v: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
        except (ValueError, binascii.Error):
            raise ValueError(f"{what} is not base64url text") from None
        if len(raw) != size or (size == 65 and raw[0] != 4):
            raise ValueError(f"{what} is not a {size}-byte value as browsers give it")
        return v

    return check


def _endpoint(v: str) -> str:
    url = urlsplit(v)
    local = url.hostname in ("localhost", "127.0.0.1", "::1")
    if url.scheme != "https" and not (url.scheme == "http" and local):
        raise ValueError("a push endpoint is an https:// URL")
    if not url.hostname:
        raise ValueError("a push endpoint needs a host")
    return v


class PushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p256dh: Annotated[str, AfterValidator(_b64url(65, "p256dh"))]
    auth: Annotated[str, AfterValidator(_b64url(16, "auth"))]


class PushSubscribed(_Event):
    """A member's browser or app subscribed to push (``PushSubscription.toJSON()``)."""

    customer: Annotated[str, Field(min_length=1, max_length=100)]
    endpoint: Annotated[str, Field(max_length=1000), AfterValidator(_endpoint)]
    keys: PushKeys
    user_agent: Annotated[str, Field(max_length=300)] | None = None


class PushUnsubscribed(_Event):
    customer: Annotated[str, Field(min_length=1, max_length=100)]
    endpoint: Annotated[str, Field(min_length=1, max_length=1000)]


EVENT_TYPES: dict[str, type[_Event]] = {
    "subscription.created": SubscriptionCreated,
    "subscription.cycle_changed": CycleChanged,
    "subscription.paused": Paused,
    "subscription.resumed": Resumed,
    "subscription.cancel_requested": CancelRequested,
    "subscription.expired": Expired,
    "charge.succeeded": ChargeEvent,
    "charge.failed": ChargeEvent,
    "stop_payment.created": BankingEvent,
    "stop_payment.bulk_created": BankingEvent,
    "direct_deposit.change_notice": BankingEvent,
    "direct_deposit.reversal": BankingEvent,
    "push.subscribed": PushSubscribed,
    "push.unsubscribed": PushUnsubscribed,
}
BANKING_TYPE_OF = {
    "stop_payment.created": "stop_payment",
    "stop_payment.bulk_created": "bulk_stop_payment",
    "direct_deposit.change_notice": "direct_deposit_change",
    "direct_deposit.reversal": "direct_deposit_reversal",
}


@dataclass
class EventResult:
    event_id: str
    type: str
    duplicate: bool = False
    notices: list[str] = field(default_factory=list)  # outbox steps written
    notes: list[str] = field(default_factory=list)  # what was decided and why

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "type": self.type,
            "duplicate": self.duplicate,
            "notices": self.notices,
            "notes": self.notes,
        }


def field_name(path: Sequence[object]) -> str:
    """``details.note``; a key that is not printable text is shown quoted (``'a\\nb'``)."""
    parts = [str(p) if str(p).isprintable() else repr(str(p)) for p in path]
    return ".".join(parts) or "payload"


def _payload_problems(data: dict[str, Any]) -> list[str]:
    """Nesting beyond ``MAX_DEPTH`` and NUL characters (which no database stores), by field."""
    problems: list[str] = []
    stack: list[tuple[object, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        where = field_name(path)
        if len(path) > MAX_DEPTH:
            problems.append(f"{where}: nested more than {MAX_DEPTH} levels deep")
            continue
        if isinstance(value, str):
            if "\x00" in value:
                problems.append(f"{where}: contains a NUL character")
        elif isinstance(value, dict):
            for key, child in value.items():
                if "\x00" in str(key):
                    problems.append(f"{where}: a key contains a NUL character")
                    continue
                stack.append((child, (*path, str(key))))
        elif isinstance(value, list):
            stack.extend((child, (*path, str(i))) for i, child in enumerate(value))
    return sorted(problems)


def parse_event(event_type: str, data: dict[str, Any]) -> _Event:
    """The validated event; ``EventError`` lists every problem with its field."""
    problems = _payload_problems(data)
    if problems:
        raise EventError(problems)
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        raise EventError(["payload: contains values that are not valid JSON text"]) from None
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise EventError(
            [f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}"]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EventError(
            [
                f"{field_name(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
        ) from None


@dataclass
class _Ctx:
    ws: Workspace
    conn: Connection
    now: datetime
    at: datetime  # when the event happened
    result: EventResult

    @property
    def company_id(self) -> int:
        return self.ws.company_id

    @property
    def day(self) -> date:
        return self.at.astimezone(ZoneInfo(self.ws.config.company.timezone)).date()

    def notice(self, customer_id: int, kind: str, ref: str, payload: dict[str, Any]) -> None:
        """Queue a notice for sending now, keyed so that it is written once."""
        step = f"{kind}/{ref}"
        if len(step) > STEP_MAX:  # the outbox key column is 90 characters
            step = f"{kind}/{hashlib.sha256(ref.encode()).hexdigest()[:40]}"
        res = counted(
            self.conn,
            insert_ignoring(self.conn, t.outbox)
            .values(
                company_id=self.company_id,
                customer_id=customer_id,
                step=step,
                occurrence_on=self.day,
                status="planned",
                due_at=self.at,
                next_attempt_at=self.at,
                payload=payload,
                created_at=self.now,
            )
            .on_conflict_do_nothing(),
        )
        if res:
            self.result.notices.append(step)


def _customer(ctx: _Ctx, external_id: str) -> Any:
    c = t.customers.c
    row = ctx.conn.execute(
        select(c.id, c.name, c.email, c.external_id).where(
            c.company_id == ctx.company_id, c.external_id == external_id
        )
    ).first()
    if row is None:
        raise EventError([f"customer: no customer with external_id {external_id!r}"])
    return row


def _subscription(ctx: _Ctx, external_id: str) -> Row[Any]:
    s = t.subscriptions.c
    row = ctx.conn.execute(
        select(t.subscriptions).where(s.company_id == ctx.company_id, s.external_id == external_id)
    ).first()
    if row is None:
        raise EventError([f"subscription: no subscription with external_id {external_id!r}"])
    return row


def _money(ctx: _Ctx, amount: Decimal, currency: str | None) -> Money:
    try:
        money = Money.of(amount, currency or ctx.ws.config.company.currency, exact=True)
    except ValueError as exc:
        raise EventError([f"amount: {exc}"]) from None
    if money.amount < 0:
        raise EventError(["amount: must not be negative"])
    return money


def _sub_payload(sub: Row[Any]) -> dict[str, Any]:
    return {
        "subscription": sub.external_id,
        "plan": sub.plan,
        "kind": sub.kind,
        "price": str(Money.from_minor(sub.price_minor, sub.currency).amount),
        "currency": sub.currency,
        "cycle": sub.cycle,
        "next_charge_on": sub.next_charge_on.isoformat() if sub.next_charge_on else None,
        "ends_on": sub.ends_on.isoformat() if sub.ends_on else None,
    }


def _admin(ctx: _Ctx, sub: Row[Any], what: str, **extra: Any) -> None:
    admin = ctx.ws.config.subscriptions.admin
    if not getattr(admin, what):
        ctx.result.notes.append(f"admin notice '{what}' is switched off")
        return
    if not admin.email:
        ctx.result.notes.append(
            f"admin notice '{what}' not sent: subscriptions.admin.email is not configured"
        )
        return
    ctx.notice(
        sub.customer_id,
        f"admin/{what}",
        str(sub.id),
        {"event": what, "subscription": _sub_payload(sub), "at": ctx.at.isoformat(), **extra},
    )


def _set(ctx: _Ctx, sub_id: int, **values: Any) -> Row[Any]:
    s = t.subscriptions.c
    ctx.conn.execute(
        update(t.subscriptions).where(s.id == sub_id).values(updated_at=ctx.now, **values)
    )
    row = ctx.conn.execute(select(t.subscriptions).where(s.id == sub_id)).first()
    assert row is not None
    return row


def _refuse_existing(ctx: _Ctx, table: Table, field: str, external_id: str, why: str) -> None:
    """Refuse an event that would create a record the company already has."""
    found = ctx.conn.execute(
        select(table.c.id).where(
            table.c.company_id == ctx.company_id, table.c.external_id == external_id
        )
    ).first()
    if found:
        raise EventError([f"{field}: {external_id!r} {why}"])


def on_subscription_created(ctx: _Ctx, e: SubscriptionCreated) -> None:
    customer = _customer(ctx, e.customer)
    price = _money(ctx, e.price, e.currency)
    _refuse_existing(ctx, t.subscriptions, "subscription", e.subscription, "already exists")
    ctx.conn.execute(
        insert(t.subscriptions).values(
            company_id=ctx.company_id,
            customer_id=customer.id,
            external_id=e.subscription,
            plan=e.plan,
            kind=e.kind,
            currency=price.currency,
            price_minor=price.minor,
            cycle=e.cycle,
            next_charge_on=e.next_charge_on,
            status="active",
            ends_on=e.ends_on,
            charge_known_at=ctx.at,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
    )
    # The admin hears of a new subscriber when the first charge succeeds (see
    # on_charge_succeeded): a subscription whose first charge fails was never bought.


def on_cycle_changed(ctx: _Ctx, e: CycleChanged) -> None:
    sub = _subscription(ctx, e.subscription)
    _set(ctx, sub.id, cycle=e.cycle, next_charge_on=e.next_charge_on, charge_known_at=ctx.at)
    ctx.result.notes.append(f"next charge moved to {e.next_charge_on}")


def on_paused(ctx: _Ctx, e: Paused) -> None:
    sub = _subscription(ctx, e.subscription)
    if e.until is not None and e.until < e.from_:
        raise EventError(["until: is before from"])
    if sub.status in ("expired", "cancel_requested"):
        raise EventError([f"subscription: {e.subscription!r} is {sub.status}; it cannot be paused"])
    # The status stays as it is: only charges inside [from, until] are affected.
    _set(ctx, sub.id, pause_from=e.from_, pause_until=e.until)


def on_resumed(ctx: _Ctx, e: Resumed) -> None:
    sub = _subscription(ctx, e.subscription)
    if sub.status in ("expired", "cancel_requested"):
        raise EventError([f"subscription: {e.subscription!r} is {sub.status}; it cannot resume"])
    values: dict[str, Any] = {"pause_from": None, "pause_until": None}
    if e.next_charge_on is not None:
        values.update(next_charge_on=e.next_charge_on, charge_known_at=ctx.at)
    _set(ctx, sub.id, **values)


def on_cancel_requested(ctx: _Ctx, e: CancelRequested) -> None:
    sub = _subscription(ctx, e.subscription)
    sub = _set(ctx, sub.id, status="cancel_requested", ends_on=e.effective_on or sub.ends_on)
    _admin(ctx, sub, "cancel_requested")


def on_expired(ctx: _Ctx, e: Expired) -> None:
    sub = _subscription(ctx, e.subscription)
    if sub.status == "expired":
        ctx.result.notes.append("already expired")
        return
    sub = _set(ctx, sub.id, status="expired", next_charge_on=None)
    _admin(ctx, sub, "expired")


def _charge(ctx: _Ctx, e: ChargeEvent, status: str) -> tuple[Row[Any], Money, bool]:
    sub = _subscription(ctx, e.subscription)
    amount = _money(ctx, e.amount, e.currency or sub.currency)
    first = e.first_purchase if e.first_purchase is not None else sub.paid_charges == 0
    _refuse_existing(ctx, t.charges, "charge", e.charge, "was already recorded")
    ctx.conn.execute(
        insert(t.charges).values(
            company_id=ctx.company_id,
            subscription_id=sub.id,
            external_id=e.charge,
            status=status,
            currency=amount.currency,
            amount_minor=amount.minor,
            charged_at=e.charged_at or ctx.at,
            first_purchase=first,
            reason=e.reason,
        )
    )
    return sub, amount, first


def on_charge_succeeded(ctx: _Ctx, e: ChargeEvent) -> None:
    sub, amount, first = _charge(ctx, e, "succeeded")
    values: dict[str, Any] = {"paid_charges": sub.paid_charges + 1}
    if sub.status == "unpaid":
        values["status"] = "active"
    if e.next_charge_on is not None:
        values.update(next_charge_on=e.next_charge_on, charge_known_at=ctx.at)
    sub = _set(ctx, sub.id, **values)
    if first:  # bought for the first time: now, not when the subscription was created
        _admin(
            ctx,
            sub,
            "new_subscriber",
            charge=e.charge,
            amount=str(amount.amount),
            currency=amount.currency,
        )
    if not ctx.ws.config.subscriptions.receipts.enabled:
        ctx.result.notes.append("receipts are switched off")
        return
    ctx.notice(
        sub.customer_id,
        "receipt",
        e.charge,
        {
            "event": "receipt",
            "charge": e.charge,
            "amount": str(amount.amount),
            "currency": amount.currency,
            "charged_at": (e.charged_at or ctx.at).isoformat(),
            "subscription": _sub_payload(sub),
        },
    )


def on_charge_failed(ctx: _Ctx, e: ChargeEvent) -> None:
    sub, amount, first = _charge(ctx, e, "failed")
    if first:
        ctx.result.notes.append("failed first purchase: no unpaid notice (only renewals)")
        return
    sub = _set(ctx, sub.id, status="unpaid")
    if not ctx.ws.config.subscriptions.unpaid.enabled:
        ctx.result.notes.append("unpaid reminders are switched off")
        return
    ctx.notice(
        sub.customer_id,
        "unpaid",
        e.charge,
        {
            "event": "unpaid",
            "charge": e.charge,
            "amount": str(amount.amount),
            "currency": amount.currency,
            "reason": e.reason,
            "subscription": _sub_payload(sub),
        },
    )


def _contact_infos(ctx: _Ctx, customer_id: int) -> list[ContactInfo]:
    c = t.contacts.c
    return [
        ContactInfo(r.id, r.external_id, r.email, frozenset(filter(None, r.roles.split(","))))
        for r in ctx.conn.execute(
            select(c.id, c.external_id, c.email, c.roles)
            .where(c.company_id == ctx.company_id, c.customer_id == customer_id)
            .order_by(c.id)
        )
    ]


def on_banking(ctx: _Ctx, e: BankingEvent, event_type: str) -> None:
    notice_type = BANKING_TYPE_OF[event_type]
    customer = _customer(ctx, e.customer)
    contacts = _contact_infos(ctx, customer.id)
    by_ext = {c.external_id: c for c in contacts}
    selected = None
    if notice_type in ("stop_payment", "bulk_stop_payment"):
        if not e.contact:
            raise EventError(["contact: a stop payment names the contact selected at entry"])
        selected = by_ext.get(e.contact)
        if selected is None:
            ctx.result.notes.append(
                f"selected contact {e.contact!r} is not a contact of {e.customer}"
            )
    ba = t.banking_assignments.c
    assigned_ids = set(
        ctx.conn.execute(
            select(ba.contact_id).where(
                ba.company_id == ctx.company_id, ba.notice_type == notice_type
            )
        ).scalars()
    )
    assigned = [c for c in contacts if c.id in assigned_ids]
    chosen, why = banking_recipients(
        notice_type, selected=selected, assigned=assigned, contacts=contacts
    )
    ctx.result.notes.append(f"to {', '.join(c.external_id for c in chosen) or 'nobody'}: {why}")
    if not ctx.ws.config.banking.enabled:
        ctx.result.notes.append("banking notices are switched off")
        return
    ctx.notice(
        customer.id,
        f"banking/{notice_type}",
        e.id,
        {
            "event": notice_type,
            "contacts": [c.id for c in chosen],
            "why": why,
            "selected": e.contact,
            "details": e.details,
        },
    )


def on_push_subscribed(ctx: _Ctx, e: PushSubscribed) -> None:
    """Remember the subscription; the same endpoint again updates its keys and revives it."""
    customer = _customer(ctx, e.customer)
    p = t.push_subscriptions.c
    values = {
        "customer_id": customer.id,
        "p256dh": e.keys.p256dh,
        "auth": e.keys.auth,
        "user_agent": e.user_agent,
        "updated_at": ctx.now,
        "gone_at": None,
        "gone_reason": None,
    }
    res = counted(
        ctx.conn,
        update(t.push_subscriptions)
        .where(p.company_id == ctx.company_id, p.endpoint == e.endpoint)
        .values(**values),
    )
    if not res:
        ctx.conn.execute(
            insert(t.push_subscriptions).values(
                company_id=ctx.company_id, endpoint=e.endpoint, created_at=ctx.now, **values
            )
        )
    ctx.result.notes.append(f"push subscription {'updated' if res else 'added'}")


def on_push_unsubscribed(ctx: _Ctx, e: PushUnsubscribed) -> None:
    customer = _customer(ctx, e.customer)
    p = t.push_subscriptions.c
    res = counted(
        ctx.conn,
        delete(t.push_subscriptions).where(
            p.company_id == ctx.company_id,
            p.customer_id == customer.id,
            p.endpoint == e.endpoint,
        ),
    )
    ctx.result.notes.append("push subscription removed" if res else "no such push subscription")


_HANDLERS: dict[str, Callable[[_Ctx, Any], None]] = {
    "subscription.created": on_subscription_created,
    "subscription.cycle_changed": on_cycle_changed,
    "subscription.paused": on_paused,
    "subscription.resumed": on_resumed,
    "subscription.cancel_requested": on_cancel_requested,
    "subscription.expired": on_expired,
    "charge.succeeded": on_charge_succeeded,
    "charge.failed": on_charge_failed,
    "push.subscribed": on_push_subscribed,
    "push.unsubscribed": on_push_unsubscribed,
}


def post_event(ws: Workspace, event_type: str, data: dict[str, Any], now: datetime) -> EventResult:
    """Validate, record and apply one event; a redelivered id changes nothing."""
    event = parse_event(event_type, data)
    at = event.occurred_at or now
    result = EventResult(event.id, event_type)
    with ws.engine.begin() as conn:
        lock_company(conn, ws.company_id)
        res = counted(
            conn,
            insert_ignoring(conn, t.events)
            .values(
                company_id=ws.company_id,
                external_id=event.id,
                type=event_type,
                payload=event.model_dump(mode="json", by_alias=True),
                occurred_at=at,
                received_at=now,
            )
            .on_conflict_do_nothing(),
        )
        if not res:
            result.duplicate = True
            result.notes.append("already received: no second effect")
            return result
        ctx = _Ctx(ws, conn, now, at, result)
        if event_type in BANKING_TYPE_OF:
            on_banking(ctx, event, event_type)  # type: ignore[arg-type]
        else:
            _HANDLERS[event_type](ctx, event)
    return result
