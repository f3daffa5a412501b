"""``/simulation``: what each day of a period would send, to whom, on which channel and at
what cost, assuming every message is sent and no payment arrives; changes nothing (what
`cobro simulate` shows).

Each day is planned by the daily run's own planner inside a transaction that is rolled
back. On SQLite that transaction holds the database's write lock while it lasts, and a
day of a big company takes about half a second: periods are at most ``MAX_DAYS`` long,
and a simulation needs a ``collector`` key (not a read-only one).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cobro.engine.simulate import SimulatedMessage, simulate
from cobro.web.api.auth import Collector
from cobro.web.api.common import Day, refused
from cobro.web.api.idempotency import IdempotentRoute
from cobro.web.api.models import Money

router = APIRouter(tags=["simulation"], route_class=IdempotentRoute)

MAX_DAYS = 93
MAX_DETAIL = 10_000  # messages listed in one answer (the counts always cover them all)


class Message(BaseModel):
    customer: str = Field(description="The debtor's external_id.")
    step: str
    name: str
    channel: str = Field(
        description="email, sms, push, voice; none when the debtor cannot be reached; held "
        "when a frequency cap (calendar.caps) holds the claim back; task for a staff task."
    )
    recipients: int
    items: int
    totals: list[Money] = Field(description="What it claims, per currency.")
    cost: Money
    held_back: str | None = Field(default=None, description="The cap that held it back.")
    planned_on: dt.date | None = Field(
        default=None,
        description="The day it was planned, when it waited for its channel's hours or a "
        "holiday (calendar.windows, calendar.holidays).",
    )
    call_limit: str | None = Field(
        default=None,
        description="Set when the message was due as a call beyond the debtor's weekly "
        "limit of calls (call.max_per_7_days): it goes on the phase's next channel (its "
        "`channel`), or reaches nobody (`none`).",
    )


class SimulatedDay(BaseModel):
    date: dt.date
    messages: int
    unreachable: int = Field(description="Messages no channel can deliver.")
    held_back: int = Field(default=0, description="Claims a frequency cap holds back.")
    tasks: int
    cost: Money
    by_step: dict[str, int]
    by_channel: dict[str, int]
    detail: list[Message] | None = Field(
        default=None,
        description="Each message and task (with `messages=true`; see `detail_truncated`).",
    )


class Simulation(BaseModel):
    date_from: dt.date = Field(alias="from")
    date_to: dt.date = Field(alias="to")
    messages: int
    unreachable: int
    held_back: int = Field(default=0, description="Claims frequency caps hold back.")
    tasks: int
    cost: Money
    detail_truncated: bool = Field(
        description=f"More than {MAX_DETAIL:,} messages and tasks: the days' `detail` lists "
        "the first ones only (the counts and costs cover them all)."
    )
    days: list[SimulatedDay]


def _message(m: SimulatedMessage, currency: str) -> Message:
    return Message(
        customer=m.customer,
        step=m.step,
        name=m.phase_name,
        channel=m.channel,
        recipients=m.recipients,
        items=m.items,
        totals=[Money(amount=v, currency=k) for k, v in m.totals.items()],
        cost=Money(amount=m.cost, currency=currency),
        held_back=m.held_back,
        planned_on=m.planned_on,
        call_limit=m.call_limit,
    )


@router.get(
    "/simulation",
    response_model=Simulation,
    response_model_by_alias=True,
    summary="What a period would send, and its cost",
)
def get_simulation(
    who: Collector,
    date_from: Annotated[
        Day | None, Query(alias="from", description="First day (default: today).")
    ] = None,
    date_to: Annotated[
        Day | None, Query(alias="to", description="Last day (default: six days after `from`).")
    ] = None,
    messages: Annotated[
        bool, Query(description="List each message and task of every day.")
    ] = False,
) -> Simulation:
    """Every day from `from` to `to` (at most 93 days) planned as the daily runs would
    plan it: claims by debtor-level escalation, scheduled actions, subscription
    reminders, disputed and promised items left out; every message assumed sent, no
    payment assumed to arrive. Nothing is changed."""
    date_from = date_from or who.state.today()
    date_to = date_to or date_from + dt.timedelta(days=6)
    if date_to < date_from:
        raise refused("query.to", "is before from")
    if (date_to - date_from).days + 1 > MAX_DAYS:
        raise refused("query.to", f"a simulation covers at most {MAX_DAYS} days")
    ws = who.state.ws
    currency = ws.config.company.currency
    days: list[SimulatedDay] = []
    room = MAX_DETAIL if messages else 0
    with ws.engine.connect() as conn:
        trans = conn.begin()
        try:
            for found in simulate(conn, ws.config, who.company_id, date_from, date_to):
                sent = [m for m in found if m.channel not in ("task", "held")]
                shown = max(room, 0)
                room -= len(found)
                tasks = [m for m in found if m.channel == "task"]
                days.append(
                    SimulatedDay(
                        date=date_from + dt.timedelta(days=len(days)),
                        messages=len(sent),
                        unreachable=sum(1 for m in sent if m.channel == "none"),
                        held_back=sum(1 for m in found if m.channel == "held"),
                        tasks=len(tasks),
                        cost=Money(
                            amount=sum((m.cost for m in sent), Decimal(0)), currency=currency
                        ),
                        by_step=dict(sorted(Counter(m.step for m in sent).items())),
                        by_channel=dict(sorted(Counter(m.channel for m in sent).items())),
                        detail=[_message(m, currency) for m in found[:shown]] if messages else None,
                    )
                )
        finally:
            trans.rollback()
    return Simulation.model_validate(
        {
            "from": date_from,
            "to": date_to,
            "messages": sum(d.messages for d in days),
            "unreachable": sum(d.unreachable for d in days),
            "held_back": sum(d.held_back for d in days),
            "tasks": sum(d.tasks for d in days),
            "cost": Money(amount=sum((d.cost.amount for d in days), Decimal(0)), currency=currency),
            "detail_truncated": messages and room < 0,
            "days": days,
        }
    )
