"""Simulation: what each day of a period would send, to whom, on which channel, at what cost.

It runs the planner's own selection for every day, assumes no payment
arrives, and changes nothing: the work happens in a transaction that is
rolled back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, or_, select

from cobro.config import CobroConfig
from cobro.domain.actions import ActionType
from cobro.domain.model import Recipient
from cobro.domain.money import Money
from cobro.domain.policy import due_windows
from cobro.engine.planner import due_select, earliest_open_due, refresh_policies, window_chunks
from cobro.engine.scheduled import occurrences_for
from cobro.engine.segments import members_select
from cobro.store import tables as t


@dataclass(frozen=True)
class SimulatedMessage:
    date: date
    customer: str
    step: str
    phase_name: str
    channel: str  # "email", "sms", "push", "task", or "none" when the debtor cannot be reached
    recipients: int
    items: int
    totals: dict[str, Decimal]
    cost: Decimal

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
        }


def _reach(conn: Connection, company_id: int) -> dict[int, dict[str, int]]:
    """Per debtor, how many addresses each recipient role has."""
    out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    cu, ct = t.customers.c, t.contacts.c
    for cust in conn.execute(
        select(cu.id, cu.email, cu.phone).where(
            cu.company_id == company_id, or_(cu.email.is_not(None), cu.phone.is_not(None))
        )
    ):
        out[cust.id][Recipient.DEBTOR.value] += cust.email is not None
        out[cust.id]["@sms"] += cust.phone is not None
    for row in conn.execute(
        select(ct.customer_id, ct.roles, ct.email, ct.phone).where(
            ct.company_id == company_id, or_(ct.email.is_not(None), ct.phone.is_not(None))
        )
    ):
        roles = set(filter(None, row.roles.split(",")))
        if "billing" in roles:
            out[row.customer_id][Recipient.DEBTOR.value] += row.email is not None
            out[row.customer_id]["@sms"] += row.phone is not None
        if row.email is None:
            continue
        for role in (Recipient.SALES_REP.value, Recipient.ACCOUNT_MANAGER.value):
            if role in roles:
                out[row.customer_id][role] += 1
    ps = t.push_subscriptions.c
    for row in conn.execute(
        select(ps.customer_id).where(ps.company_id == company_id, ps.gone_at.is_(None))
    ):
        out[row.customer_id]["@push"] += 1
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
    return "none", Decimal(0)


def _actions_on(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    day: date,
    covered: date | None,
    reach: dict[int, dict[str, int]],
    cost_each: Decimal,
) -> list[SimulatedMessage]:
    """The debt notices, messages and tasks that scheduled actions produce on ``day``."""
    out = []
    currency = config.company.currency
    for action, occ in occurrences_for(config, day, covered):
        notice = action.type is ActionType.DEBT_NOTICE
        is_task = action.type is ActionType.TASK
        query = members_select(
            company_id, config.segment(action.segment), occ, currency, overdue_only=notice
        )
        for row in conn.execute(query):
            roles = reach.get(row.customer_id, {})
            debtor = roles.get(Recipient.DEBTOR.value, 0)
            recipients = (
                0
                if is_task or not debtor
                else sum(roles.get(r.value, 0) for r in action.recipients)
            )
            open_amount = Money.from_minor(int(row.open_minor), currency).amount
            out.append(
                SimulatedMessage(
                    date=day,
                    customer=row.external_id,
                    step=action.step_id,
                    phase_name=action.description,
                    channel="task" if is_task else ("email" if debtor else "none"),
                    recipients=recipients,
                    items=0,
                    totals={currency: open_amount} if notice else {},
                    cost=cost_each * recipients,
                )
            )
    return out


def simulate(
    conn: Connection, config: CobroConfig, company_id: int, start: date, end: date
) -> Iterator[list[SimulatedMessage]]:
    """Yield, for each day from ``start`` to ``end``, the messages a run would send.

    The caller passes a connection inside a transaction and rolls it back.
    """
    refresh_policies(conn, config, company_id)
    covered = conn.execute(
        select(t.companies.c.covered_through).where(t.companies.c.id == company_id)
    ).scalar()
    earliest = earliest_open_due(conn, company_id)
    reach = _reach(conn, company_id)
    names = {
        row.id: row.external_id
        for row in conn.execute(
            select(t.customers.c.id, t.customers.c.external_id).where(
                t.customers.c.company_id == company_id
            )
        )
    }
    policies = config.all_policies()
    cost_each = config.channels.email.cost
    day = start
    while day <= end:
        windows = []
        if earliest is not None:
            for policy in policies:
                windows += due_windows(
                    policy, day, covered, config.company.max_catch_up_days, earliest
                )
        found: dict[tuple[int, str], tuple[int, dict[str, Decimal]]] = {}
        for part in window_chunks(windows):
            due = due_select(company_id, part, with_amounts=True).subquery()
            grouped = select(
                due.c.customer_id,
                due.c.step,
                due.c.currency,
                func.count().label("items"),
                func.sum(due.c.balance_minor).label("total"),
            ).group_by(due.c.customer_id, due.c.step, due.c.currency)
            for row in conn.execute(grouped):
                items, totals = found.get((row.customer_id, row.step), (0, {}))
                amount = Money.from_minor(int(row.total), row.currency).amount
                totals[row.currency] = totals.get(row.currency, Decimal(0)) + amount
                found[(row.customer_id, row.step)] = (items + int(row.items), totals)
        messages: list[SimulatedMessage] = []
        for (customer_id, step), (items, totals) in sorted(found.items()):
            phase = config.phase_by_step(step)
            roles = reach.get(customer_id, {})
            recipients = sum(roles.get(r.value, 0) for r in phase.recipients)
            channel, cost = _channel_and_cost(config, phase.channels, roles, recipients)
            if channel == "none":
                recipients = 0
            messages.append(
                SimulatedMessage(
                    date=day,
                    customer=names[customer_id],
                    step=step,
                    phase_name=phase.name,
                    channel=channel,
                    recipients=recipients,
                    items=items,
                    totals=dict(sorted(totals.items())),
                    cost=cost,
                )
            )
        messages.extend(_actions_on(conn, config, company_id, day, covered, reach, cost_each))
        yield messages
        covered = day if covered is None or covered < day else covered
        day += timedelta(days=1)


def count_open(conn: Connection, company_id: int) -> int:
    r = t.receivables.c
    n: int = conn.execute(
        select(func.count()).where(r.company_id == company_id, r.balance_minor > 0)
    ).scalar_one()
    return n
