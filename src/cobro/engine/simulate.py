"""Simulation: what each day of a period would send, to whom, on which channel, at what cost.

It runs the daily planner itself for every day, assumes every message is sent
and no payment arrives, and changes nothing: the work happens in a transaction
that is rolled back. The items each message lists are counted and summed, not written
(``cobro.engine.claim_items``): nothing in planning reads them back. Disputed and
promised items are left out as the runs leave them out (``cobro.engine.pauses``): nobody
resolves a dispute during the period, and, since nothing is paid, a promise breaks at
the first simulated day after its grace and its items are claimed again from then on.

The calendar is applied as dispatch applies it: a message whose channel is closed at the
day's send time (its hours in the debtor's time zone, a public holiday) is shown on the
day its channel opens (``planned_on`` says when it was planned), and a claim a frequency
cap holds back is shown with ``channel="held"`` and the cap (``held_back``), at no cost.
Calls follow the weekly limit of calls as dispatch does (``call.max_per_7_days``,
``cobro.engine.call_limit``): the calls recorded and those simulated count, and a message
due beyond the limit is shown on the phase's next channel, at that channel's cost, with
the limit it met (``call_limit``); with no channel left, as reaching nobody (``none``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select

from cobro.config import CobroConfig
from cobro.domain.calendar import local_date, send_instant
from cobro.domain.model import Recipient
from cobro.domain.money import currency_exponent
from cobro.engine.call_limit import WeeklyCalls
from cobro.engine.claim_items import totals_table
from cobro.engine.contact_caps import CapCounter, capped_step
from cobro.engine.messages import message_spec, notice_spec
from cobro.engine.planner import plan_day
from cobro.store import tables as t
from cobro.store.db import page_cache

# SQLite's page cache for the simulation's transaction, which writes each simulated day's
# outbox rows and levels into tables of millions of rows (``cobro.store.db.page_cache``).
SIMULATION_CACHE_KIB = 256 * 1024


@dataclass(frozen=True)
class SimulatedMessage:
    date: date
    customer: str
    step: str
    phase_name: str
    # "email", "sms", "push", "voice", "task", "none" when the debtor cannot be reached,
    # "held" when a frequency cap holds the claim back
    channel: str
    recipients: int
    items: int
    totals: dict[str, Decimal]
    cost: Decimal
    held_back: str | None = None  # the cap that held it back
    planned_on: dt.date | None = None  # set when it waited for its channel's hours
    call_limit: str | None = None  # set when a call beyond call.max_per_7_days went elsewhere

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "customer": self.customer,
            "phase": self.step,
            "phase_name": self.phase_name,
            "channel": self.channel,
            "recipients": self.recipients,
            "items": self.items,
            "totals": {k: str(v) for k, v in self.totals.items()},
            "cost": str(self.cost),
            **({"held_back": self.held_back} if self.held_back else {}),
            **({"planned_on": self.planned_on.isoformat()} if self.planned_on else {}),
            **({"call_limit": self.call_limit} if self.call_limit else {}),
        }


@dataclass
class _Pending:
    """A message of the simulation not shown yet: its debtor, outbox row and step."""

    message: SimulatedMessage
    customer_id: int
    outbox_id: int
    step: str
    others: tuple[tuple[str, Decimal], ...] = ()  # the next channels that reach the debtor
    calls: int = 0  # the numbers a call of it calls
    call_limit: int = 0  # the most calls in 7 days its phase allows


Profile = tuple[tuple[str, int], ...]  # a debtor's addresses: (role, how many), sorted


@dataclass
class _Debtors:
    """Every debtor's external id, time zone (when it has one) and profile (when it can be
    reached at all). Debtors reached the same way share one profile object."""

    names: dict[int, str]
    zones: dict[int, str]
    profiles: dict[int, Profile]


def _debtors(conn: Connection, company_id: int) -> _Debtors:
    """The company's debtors, read in one pass (plus their contacts and push
    subscriptions): a debtor's own email and phone count for the debtor and for SMS,
    a billing contact's too, a sales rep's or account manager's email for that role."""
    extra: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ct, ps, cu = t.contacts.c, t.push_subscriptions.c, t.customers.c
    for row in conn.execute(
        select(ct.customer_id, ct.roles, ct.email, ct.phone).where(
            ct.company_id == company_id, or_(ct.email.is_not(None), ct.phone.is_not(None))
        )
    ):
        roles = set(filter(None, row.roles.split(",")))
        more = extra[row.customer_id]
        if "billing" in roles:
            more[Recipient.DEBTOR.value] += row.email is not None
            more["@sms"] += row.phone is not None
        if row.email is None:
            continue
        for role in (Recipient.SALES_REP.value, Recipient.ACCOUNT_MANAGER.value):
            if role in roles:
                more[role] += 1
    for (customer_id,) in conn.execute(
        select(ps.customer_id).where(ps.company_id == company_id, ps.gone_at.is_(None))
    ):
        extra[customer_id]["@push"] += 1
    interned: dict[Profile, Profile] = {}

    def profile(roles: dict[str, int]) -> Profile:
        key = tuple(sorted((role, n) for role, n in roles.items() if n))
        return interned.setdefault(key, key)

    own: dict[tuple[int, int], Profile] = {}  # reached by the debtor's own email, phone
    out = _Debtors({}, {}, {})
    for customer_id, external_id, zone, email, phone in conn.execute(
        select(
            cu.id, cu.external_id, cu.timezone, cu.email.is_not(None), cu.phone.is_not(None)
        ).where(cu.company_id == company_id)
    ):
        out.names[customer_id] = external_id
        if zone:
            out.zones[customer_id] = zone
        added = extra.get(customer_id)
        if added is None:
            key = (int(bool(email)), int(bool(phone)))
            found = own.get(key)
            if found is None:
                found = own[key] = profile({Recipient.DEBTOR.value: key[0], "@sms": key[1]})
        else:
            counts = dict(added)
            counts[Recipient.DEBTOR.value] = counts.get(Recipient.DEBTOR.value, 0) + int(
                bool(email)
            )
            counts["@sms"] = counts.get("@sms", 0) + int(bool(phone))
            found = profile(counts)
        if found:
            out.profiles[customer_id] = found
    return out


def _channel_and_cost(
    config: CobroConfig, channels: tuple[str, ...], roles: dict[str, int], recipients: int
) -> tuple[str, Decimal]:
    """The first channel that reaches the debtor, and the message's estimated cost (an SMS
    counted as one segment; internal copies by email)."""
    email_cost = config.channels.email.cost
    debtor_emails = roles.get(Recipient.DEBTOR.value, 0)
    internal = max(recipients - debtor_emails, 0)
    for ch in channels:
        if ch == "email" and debtor_emails:
            return "email", email_cost * recipients
        sms, push = config.channels.sms, config.channels.push
        if ch == "sms" and sms is not None and roles.get("@sms"):
            return "sms", sms.cost_per_segment * roles["@sms"] + email_cost * internal
        if ch == "push" and push is not None and roles.get("@push"):
            return "push", push.cost * roles["@push"] + email_cost * internal
        voice = config.channels.voice
        if ch == "voice" and voice is not None and roles.get("@sms"):  # calls the phones
            return "voice", voice.cost_per_call * roles["@sms"] + email_cost * internal
    return "none", Decimal(0)


def _channels_and_costs(
    config: CobroConfig, channels: tuple[str, ...], roles: dict[str, int], recipients: int
) -> list[tuple[str, Decimal]]:
    """Every channel that reaches the debtor, in order of preference, each with the
    message's estimated cost on it (``_channel_and_cost`` of the channels left)."""
    found: list[tuple[str, Decimal]] = []
    rest = channels
    while rest:
        channel, cost = _channel_and_cost(config, rest, roles, recipients)
        if channel == "none":
            break
        found.append((channel, cost))
        rest = rest[rest.index(channel) + 1 :]
    return found


@dataclass(frozen=True)
class _StepKind:
    """What the messages of one outbox step share."""

    shown: str  # the step as the simulation shows it (a notice's kind)
    name: str
    roles: tuple[str, ...]  # the recipient roles the message goes to
    admin: bool  # the company's own address is among them
    channels: tuple[str, ...]
    call_limit: int  # call.max_per_7_days of its phase


_UNKNOWN = _StepKind("", "", (), False, (), 0)  # not looked up yet


def _step_kind(config: CobroConfig, step: str) -> _StepKind | None:
    """The step's messages, or None for a step with no message spec (not shown)."""
    try:
        spec = message_spec(config, step)
    except KeyError:
        return None
    return _StepKind(
        step.partition("/")[0] if notice_spec(config, step) else step,
        spec.name,
        tuple(x.value for x in spec.recipients),
        Recipient.ADMIN in spec.recipients,
        spec.channels,
        config.call_settings(step).max_per_7_days,
    )


Reached = tuple[str, Decimal, int, tuple[tuple[str, Decimal], ...]]


def _reached(config: CobroConfig, kind: _StepKind, profile: Profile) -> Reached:
    """A message of ``kind`` to a debtor whose addresses are ``profile``: its channel, its
    cost, how many recipients and the next channels that reach the debtor."""
    roles = dict(profile)
    if kind.admin:
        roles[Recipient.ADMIN.value] = 1
    recipients = sum(roles.get(x, 0) for x in kind.roles)
    options = _channels_and_costs(config, kind.channels, roles, recipients)
    channel, cost = options[0] if options else ("none", Decimal(0))
    return channel, cost, 0 if channel == "none" else recipients, tuple(options[1:])


def simulate(
    conn: Connection, config: CobroConfig, company_id: int, start: date, end: date
) -> Iterator[list[SimulatedMessage]]:
    """Yield, for each day from ``start`` to ``end``, the messages a run would send, then
    the tasks it would create (``channel="task"``).

    Each day is planned by the daily run's own planner (``plan_day``), so debtor-level
    escalation, the go-live ramp, scheduled actions and subscription reminders are
    exactly what the runs would do; every planned message is assumed sent and no payment
    to arrive. The caller passes a connection inside a transaction and rolls it back.
    """
    with page_cache(conn, SIMULATION_CACHE_KIB):
        yield from _days(conn, config, company_id, start, end)


def _days(
    conn: Connection, config: CobroConfig, company_id: int, start: date, end: date
) -> Iterator[list[SimulatedMessage]]:
    # Debtors reached the same way share one profile (role -> addresses), and the
    # messages of a step to one profile one channel, cost and recipient count.
    debtors = _debtors(conn, company_id)
    profiles, names, zones = debtors.profiles, debtors.names, debtors.zones
    kinds: dict[str, _StepKind | None] = {}
    reaches: dict[tuple[str, Profile], Reached] = {}
    numbers: dict[Profile, int] = {}  # per profile: the phones a call calls
    calendar = config.calendar.send_calendar()
    caps = CapCounter(config.calendar.caps)
    first = send_instant(start, config.company.send_time, config.company.timezone)
    if caps.caps:
        caps.load(conn, company_id, names, first)
    calls = WeeklyCalls()
    calling = config.channels.voice is not None
    if calling:
        calls.load(conn, company_id, names, first)
    waiting: dict[date, list[tuple[datetime, _Pending]]] = defaultdict(list)

    def sent(p: _Pending, at: datetime) -> SimulatedMessage:
        """The message as sent at ``at``: on the first of its channels that the weekly limit
        of calls and the caps allow, or held back by a cap."""
        m = p.message
        if m.channel in ("none", "task"):
            return m
        capping = bool(caps.caps) and capped_step(p.step)
        if not capping and (not calling or m.channel != "voice"):
            return m
        if capping:
            caps.moved_to(at)
        cap = limited = None
        for channel, cost in ((m.channel, m.cost), *p.others):
            if channel == "voice":
                limited = limited or calls.refused(p.customer_id, p.call_limit, at)
                if limited:  # beyond the weekly limit of calls: the next channel
                    continue
            if capping:
                full = caps.full(p.customer_id, channel, p.outbox_id)
                if full is not None:
                    cap = cap or full
                    continue
                caps.use(p.customer_id, channel, p.outbox_id, at)
            if channel == "voice":  # as many of the debtor's numbers as the limit leaves
                calls.made(
                    p.customer_id, at, min(p.calls, calls.room(p.customer_id, p.call_limit, at))
                )
            return replace(m, channel=channel, cost=cost, call_limit=limited)
        if cap is None:  # no channel left after the call the limit refused
            return replace(m, channel="none", recipients=0, cost=Decimal(0), call_limit=limited)
        return replace(
            m, channel="held", recipients=0, cost=Decimal(0), held_back=cap, call_limit=limited
        )

    # The items of each day's messages are counted, not written (``claim_items``).
    listed = totals_table()
    listed.drop(conn, checkfirst=True)
    listed.create(conn)
    o, tk = t.outbox.c, t.tasks.c
    day = start
    while day <= end:
        company = config.company
        at = send_instant(day, company.send_time, company.timezone)
        run_id = conn.execute(
            insert(t.runs)
            .values(company_id=company_id, run_on=day, as_of=at, started_at=at)
            .returning(t.runs.c.id)
        ).scalar_one()
        # The tasks this day's run creates are those it adds: not the tasks already there
        # (staff's, a dispute's, a failed claim's), whether created today or not.
        tasks_before = conn.execute(
            select(func.coalesce(func.max(tk.id), 0)).where(tk.company_id == company_id)
        ).scalar_one()
        plan_day(conn, config, company_id, day, at, run_id, listed)
        # Per outbox row: its items and their total by currency.
        exponents: dict[str, int] = {}
        lists: dict[int, tuple[int, dict[str, Decimal]]] = {}
        for outbox_id, currency, n, minor in conn.execute(
            select(listed.c.outbox_id, listed.c.currency, listed.c["items"], listed.c.balance_minor)
        ):
            exponent = exponents.get(currency)
            if exponent is None:
                exponent = exponents[currency] = currency_exponent(currency)
            amount = Decimal(int(minor)).scaleb(-exponent)  # as Money.from_minor
            before = lists.get(outbox_id)
            if before is None:
                lists[outbox_id] = (int(n), {currency: amount})
            else:
                amount += before[1].get(currency, Decimal(0))
                by_currency = dict(sorted({**before[1], currency: amount}.items()))
                lists[outbox_id] = (before[0] + int(n), by_currency)
        conn.execute(delete(listed))
        messages: list[SimulatedMessage] = [
            sent(replace(p, message=replace(p.message, date=day)), opens)
            for opens, p in sorted(waiting.pop(day, []), key=lambda x: (x[0], x[1].outbox_id))
        ]
        openings: dict[tuple[str, str], tuple[datetime, date] | None] = {}
        for outbox_id, customer_id, step in conn.execute(
            select(o.id, o.customer_id, o.step).where(o.run_id == run_id).order_by(o.id)
        ):
            kind = kinds.get(step, _UNKNOWN)
            if kind is _UNKNOWN:
                kind = kinds[step] = _step_kind(config, step)
            if kind is None:
                continue
            profile = profiles.get(customer_id, ())
            reached = reaches.get((step, profile))
            if reached is None:
                reached = reaches[step, profile] = _reached(config, kind, profile)
            channel, cost, recipients, others = reached
            items, by_currency = lists.get(outbox_id) or (0, {})
            message = SimulatedMessage(
                date=day,
                customer=names.get(customer_id, ""),
                step=kind.shown,
                phase_name=kind.name,
                channel=channel,
                recipients=recipients,
                items=items,
                totals=by_currency,
                cost=cost,
            )
            if channel == "none":
                opening = None
            else:
                tz = zones.get(customer_id, company.timezone)
                if (channel, tz) in openings:
                    opening = openings[channel, tz]
                else:
                    opens = calendar.opening(channel, at, tz)
                    opening = openings[channel, tz] = (
                        None if opens is None else (opens, local_date(opens, company.timezone))
                    )
            if opening is None and not (caps.caps or calling):
                messages.append(message)
                continue
            phones = numbers.get(profile)
            if phones is None:
                phones = numbers[profile] = dict(profile).get("@sms", 0)
            pending = _Pending(
                message, customer_id, outbox_id, step, others, phones, kind.call_limit
            )
            if opening is None:
                messages.append(sent(pending, at))
                continue
            opens, on = opening
            if on <= day:
                messages.append(sent(pending, opens))  # later the same day
            else:
                later = replace(message, planned_on=day)
                waiting[on].append((opens, replace(pending, message=later)))
        for row in conn.execute(
            select(tk.customer_id, tk.action_key)
            .where(tk.company_id == company_id, tk.id > tasks_before)
            .order_by(tk.id)
        ):
            try:
                action = config.action(row.action_key)
            except KeyError:  # not a scheduled action's
                continue
            messages.append(
                SimulatedMessage(
                    date=day,
                    customer=names.get(row.customer_id, ""),
                    step=action.step_id,
                    phase_name=action.description,
                    channel="task",
                    recipients=0,
                    items=0,
                    totals={},
                    cost=Decimal(0),
                )
            )
        yield messages
        day += timedelta(days=1)
    listed.drop(conn)


def count_open(conn: Connection, company_id: int) -> int:
    r = t.receivables.c
    n: int = conn.execute(
        select(func.count()).where(r.company_id == company_id, r.balance_minor > 0)
    ).scalar_one()
    return n
