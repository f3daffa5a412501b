"""Planning of scheduled actions: on their days of the month, per segment, set-based.

A debt notice or a message becomes one outbox row per debtor of the segment
(key: company, debtor, ``action/KEY``, send day); a debt notice also claims
every open receivable of the debtor (its statement) but the disputed or promised
ones (``cobro.engine.pauses``). A task becomes one row
in ``tasks`` per debtor and send day (with its webhook events: ``task.created``, and the
``ticket.requested`` an action's ``webhook:`` asks for). Unique keys make repeated runs
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Integer, String, Table, and_, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from cobro.config import CobroConfig
from cobro.domain.actions import ActionType, ScheduledAction, due_occurrence
from cobro.domain.calendar import send_instant
from cobro.engine.claim_items import add_totals, write_items
from cobro.engine.outbox import insert_planned
from cobro.engine.pauses import not_left_out
from cobro.engine.segments import members_select
from cobro.engine.webhooks import TICKET, Event, emit, request_ticket, subscribed, task_events
from cobro.store import tables as t
from cobro.store.db import counted, insert_ignoring


@dataclass(frozen=True)
class ActionsPlanned:
    messages: int = 0
    items: int = 0
    tasks: int = 0
    problems: tuple[str, ...] = ()  # tickets that could not be requested, and why


def occurrences_for(
    config: CobroConfig, run_on: date, covered: date | None
) -> list[tuple[ScheduledAction, date]]:
    """The actions due on a run for ``run_on`` and the send day each one handles."""
    out = []
    for action in config.scheduled_actions():
        occ = due_occurrence(action, run_on, covered, config.company.action_catch_up_days)
        if occ is not None:
            out.append((action, occ))
    return out


def collection_steps(config: CobroConfig) -> list[str]:
    """Steps that tell a debtor about their debt: policy phases and debt notices."""
    steps = [ph.step_id for p in config.all_policies() for ph in p.phases]
    steps += [a.step_id for a in config.scheduled_actions() if a.type is ActionType.DEBT_NOTICE]
    return steps


def _room_for_a_claim(
    config: CobroConfig, company_id: int, customer_id: Any, run_on: date
) -> ColumnElement[bool]:
    """The debtor has had fewer than ``max_claims_per_debtor_per_day`` collection messages
    planned for ``run_on``. A debt notice on the day of a phase claim is merged into the
    claim (which lists every open item) when the limit is one."""
    o = t.outbox.c
    already = (
        select(func.count())
        .where(
            o.company_id == company_id,
            o.customer_id == customer_id,
            o.occurrence_on == run_on,
            o.step.in_(collection_steps(config)),
        )
        .scalar_subquery()
    )
    return already < config.company.max_claims_per_debtor_per_day


def plan_actions(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    covered: date | None,
    now: datetime,
    run_id: int | None,
    paused: Table | None = None,
    totals: Table | None = None,
) -> ActionsPlanned:
    """Write the outbox rows and tasks of every action due on ``run_on``; ``totals``: a
    debt notice's items counted there instead of written (``cobro.engine.claim_items``)."""
    messages = items = tasks = 0
    problems: list[str] = []
    company = config.company
    send_at = send_instant(run_on, company.send_time, company.timezone)
    for action, occ in occurrences_for(config, run_on, covered):
        members = (
            members_select(
                company_id,
                config.segment(action.segment),
                occ,
                company.currency,
                overdue_only=action.type is ActionType.DEBT_NOTICE,
            )
            .order_by(None)
            .subquery()
        )
        if action.type is ActionType.TASK:
            due_at = action.task_due(occ, company.timezone)
            rows = select(
                literal(company_id),
                members.c.customer_id,
                literal(action.key, String),
                literal(occ),
                literal(due_at, t.UTCDateTime),
                literal(action.task_message or "", String),
                literal("open", String),
                literal(now, t.UTCDateTime),
            ).where(members.c.customer_id.is_not(None))
            res = counted(
                conn,
                insert_ignoring(conn, t.tasks)
                .from_select(
                    [
                        "company_id",
                        "customer_id",
                        "action_key",
                        "created_on",
                        "due_at",
                        "message",
                        "status",
                        "created_at",
                    ],
                    rows,
                )
                .on_conflict_do_nothing(),
            )
            tasks += res
            if res:
                problems += _task_webhooks(conn, company_id, action, occ, now)
            continue
        rows = select(
            literal(company_id),
            members.c.customer_id,
            literal(action.step_id, String),
            literal(occ),
            literal("planned", String),
            literal(send_at, t.UTCDateTime),
            literal(send_at, t.UTCDateTime),
            literal(run_id, Integer),
            literal(now, t.UTCDateTime),
        ).where(members.c.customer_id.is_not(None))
        if action.type is ActionType.DEBT_NOTICE:
            rows = rows.where(_room_for_a_claim(config, company_id, members.c.customer_id, run_on))
        res = insert_planned(conn, rows)
        messages += res
        if action.type is ActionType.DEBT_NOTICE:
            if totals is None:
                statement = statement_items_select(company_id, action, occ, paused)
                items += write_items(conn, statement, None)
            else:
                items += add_totals(
                    conn, totals, statement_totals_select(company_id, action, occ, paused)
                )
    return ActionsPlanned(messages, items, tasks, tuple(problems))


def statement_items_select(
    company_id: int, action: ScheduledAction, occ: date, paused: Table | None = None
) -> Any:
    """The claim items of a debt notice's outbox rows: every open item of each debtor
    (company, outbox row, receivable, step, day), paused items left out.

    The items are read from ``ix_receivables_open_customer`` alone, debtor after debtor
    (each debtor's notice found once per item through the outbox's key), and come out in
    the order of the receivables' ids, so that the unique index of the claim items is
    written from one end to the other rather than at random places."""
    o, r = t.outbox.c, t.receivables.c
    statement = (
        select(
            literal(company_id),
            o.id.label("outbox_id"),
            r.id.label("receivable_id"),
            literal(action.step_id, String),
            literal(occ.toordinal(), Integer),
        )
        .select_from(t.receivables)
        .join(
            t.outbox,
            and_(
                o.company_id == company_id,
                o.customer_id == r.customer_id,
                o.step == action.step_id,
                o.occurrence_on == occ,
                o.status == "planned",
            ),
        )
        .where(r.company_id == company_id, r.balance_minor > 0)
        .order_by(r.id)
    )
    keep = not_left_out(r.id, paused)
    return statement if keep is None else statement.where(keep)


def statement_totals_select(
    company_id: int, action: ScheduledAction, occ: date, paused: Table | None = None
) -> Any:
    """What ``statement_items_select`` lists, counted and summed per debt notice and
    currency (outbox row, currency, items, amount): every open item of the company summed
    per debtor and currency from ``ix_receivables_open_customer`` alone, in one pass, then
    joined to the day's notices, rather than each item joined to its debtor's notice."""
    o, r = t.outbox.c, t.receivables.c
    per_debtor = select(
        r.customer_id,
        r.currency,
        func.count().label("items"),
        func.sum(r.balance_minor).label("amount"),
    ).where(r.company_id == company_id, r.balance_minor > 0)
    keep = not_left_out(r.id, paused)
    if keep is not None:
        per_debtor = per_debtor.where(keep)
    debt = per_debtor.group_by(r.customer_id, r.currency).subquery()
    return (
        select(o.id, debt.c.currency, debt.c["items"], debt.c.amount)
        .select_from(t.outbox)
        .join(debt, debt.c.customer_id == o.customer_id)
        .where(
            o.company_id == company_id,
            o.step == action.step_id,
            o.occurrence_on == occ,
            o.status == "planned",
        )
    )


def _task_webhooks(
    conn: Connection, company_id: int, action: ScheduledAction, occ: date, now: datetime
) -> list[str]:
    """``task.created`` of the tasks an action just opened, and the tickets it requests
    (``webhook:``); the reason a ticket could not be requested, if any."""
    wanted = subscribed(conn, company_id)
    if "task.created" not in wanted and action.webhook is None:
        return []
    k = t.tasks.c
    ids = list(
        conn.execute(
            select(k.id).where(
                k.company_id == company_id,
                k.action_key == action.key,
                k.created_on == occ,
                k.created_at == now,
            )
        ).scalars()
    )
    events = task_events(conn, company_id, ids)
    if "task.created" in wanted:
        emit(conn, company_id, events)
    if action.webhook is None:
        return []
    tickets = [
        Event(
            TICKET,
            f"task-{e.ref}",
            e.customer_id,
            e.at,
            {"action": {"key": action.key, "name": action.description}, **e.data},
        )
        for e in events
    ]
    problem = request_ticket(conn, company_id, action.webhook, tickets)
    return [f"actions.{action.key}: {problem}"] if problem else []
