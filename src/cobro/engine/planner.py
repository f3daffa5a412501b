"""The daily run's first half: everything due on a date becomes outbox rows, set-based.

In one transaction, serialised per company (``plan_day``): debtors' policies are
re-resolved when the assignment rules changed, paid-up accounts are released, promises to
pay are settled (kept or broken, ``cobro.engine.pauses``), then the day's claims (one per
debtor at its phase, ``cobro.engine.claims``), scheduled actions and subscription
reminders are written to the outbox (``INSERT ... SELECT`` with ``ON CONFLICT DO
NOTHING`` on the idempotency key). No clock read: the date and the instant are arguments.

The day is three steps, which the workers run as separate transactions
(``cobro.engine.plan_shards``): its start (``start_day``, company-wide), the claims of
ranges of debtors, and its end (``end_day``: the scheduled actions, which merge a debt
notice into a claim of the same day and so come after every claim, the reminders, and
the day marked covered).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from cobro.config import CobroConfig
from cobro.engine.accounts import release_paid_blocks
from cobro.engine.claims import ClaimsPlanned, plan_claims
from cobro.engine.pauses import paused_table, settle_promises
from cobro.engine.scheduled import ActionsPlanned, plan_actions
from cobro.engine.subscriptions import plan_subscriptions
from cobro.store import tables as t
from cobro.store.db import like_literal, lock_company


@dataclass(frozen=True)
class PlanResult:
    run_on: date
    planned: int  # outbox rows this run created
    items: int  # receivables those rows claim
    candidates: int  # debtors looked at
    unblocked: int = 0  # accounts released because their overdue debt was paid
    tasks: int = 0  # staff tasks created by scheduled actions
    held: int = 0  # debtors whose next phase waits for its gap after the previous one
    deferred: int = 0  # debtors left for the next day by the go-live ramp
    promises_kept: int = 0  # promises to pay settled as kept by this run ...
    promises_broken: int = 0  # ... and as broken (their items are claimed again)
    problems: tuple[str, ...] = ()  # webhook tickets that could not be requested, and why


def assignment_fingerprint(config: CobroConfig) -> str:
    data = {"rules": [r.model_dump() for r in config.assign], "default": config.default_policy}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def refresh_policies(conn: Connection, config: CobroConfig, company_id: int) -> bool:
    """Re-resolve every debtor's policy when the assignment rules changed. Set-based."""
    fp = assignment_fingerprint(config)
    current = conn.execute(
        select(t.companies.c.policy_fingerprint).where(t.companies.c.id == company_id)
    ).scalar_one()
    if current == fp:
        return False
    c = t.customers.c
    whens = []
    for rule in config.assignment_rules():
        conds: list[ColumnElement[bool]] = []
        for field, value in rule.where:
            if field == "tag":
                pattern = f"%,{like_literal(value.lower())},%"
                conds.append(("," + c.tags + ",").like(pattern, escape="/"))
            elif field == "language" and "_" not in value:
                lang = func.lower(c.language)
                conds.append(
                    or_(lang == value.lower(), lang.like(f"{value.lower()}/_%", escape="/"))
                )
            else:
                col = {"kind": c.kind, "group": c.group_name, "language": c.language}[field]
                conds.append(func.lower(col) == value.lower())
        whens.append((and_(*conds), literal(rule.policy)))
    policy_expr = case(
        (c.policy.is_not(None), c.policy), *whens, else_=literal(config.default_policy)
    )
    conn.execute(
        update(t.customers).where(c.company_id == company_id).values(effective_policy=policy_expr)
    )
    conn.execute(
        update(t.companies).where(t.companies.c.id == company_id).values(policy_fingerprint=fp)
    )
    return True


@dataclass(frozen=True)
class DayStarted:
    """What the start of a day's plan found and did, company-wide. Every part of the day's
    claims plans from ``covered_before`` and ``go_live_on``, whenever it runs."""

    covered_before: date | None  # the company's covered_through before this day's run
    go_live_on: date
    unblocked: int = 0
    promises_kept: int = 0
    promises_broken: int = 0


@dataclass(frozen=True)
class DayEnded:
    """What the end of a day's plan wrote: scheduled actions and subscription reminders."""

    actions: ActionsPlanned
    reminders: int


def start_day(
    conn: Connection, config: CobroConfig, company_id: int, run_on: date, now: datetime
) -> DayStarted:
    """The start of ``run_on``'s plan, for the whole company (the caller holds the company
    lock): policies re-resolved, paid-up accounts released, the go-live day recorded,
    promises settled."""
    refresh_policies(conn, config, company_id)
    unblocked = release_paid_blocks(conn, company_id, run_on, now)
    co = t.companies.c
    company = conn.execute(
        select(co.covered_through, co.go_live_on).where(co.id == company_id)
    ).one()
    covered_before, go_live_on = company.covered_through, company.go_live_on
    if go_live_on is None:
        go_live_on = run_on
        conn.execute(update(t.companies).where(co.id == company_id).values(go_live_on=run_on))
    settled = settle_promises(conn, company_id, run_on, now)
    return DayStarted(covered_before, go_live_on, unblocked, len(settled.kept), len(settled.broken))


def end_day(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    covered_before: date | None,
    now: datetime,
    run_id: int | None,
    paused: Table | None,
    totals: Table | None = None,
) -> DayEnded:
    """The end of ``run_on``'s plan, once every debtor's claim is planned (a debt notice
    due the day of a claim is merged into it): scheduled actions, subscription reminders,
    and the day marked covered."""
    actions = plan_actions(
        conn, config, company_id, run_on, covered_before, now, run_id, paused, totals
    )
    subs = plan_subscriptions(conn, config, company_id, run_on, now, run_id)
    co = t.companies.c
    conn.execute(
        update(t.companies)
        .where(co.id == company_id, or_(co.covered_through.is_(None), co.covered_through < run_on))
        .values(covered_through=run_on)
    )
    return DayEnded(actions, subs.reminders)


def day_result(
    run_on: date, started: DayStarted, claims: ClaimsPlanned, ended: DayEnded
) -> PlanResult:
    """The plan of a day from its three steps (``claims``: of all its debtors)."""
    actions = ended.actions
    return PlanResult(
        run_on,
        claims.claims + actions.messages + ended.reminders,
        claims.items + actions.items,
        claims.candidates,
        started.unblocked,
        actions.tasks,
        claims.held,
        claims.deferred,
        promises_kept=started.promises_kept,
        promises_broken=started.promises_broken,
        problems=actions.problems,
    )


def plan_day(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    now: datetime,
    run_id: int | None = None,
    totals: Table | None = None,
) -> PlanResult:
    """Plan everything due on ``run_on`` into the outbox, inside the caller's transaction:
    the day's start, the claims of every debtor, then the day's end. ``totals``: the
    claims' items counted there instead of written (the simulation,
    ``cobro.engine.claim_items``)."""
    # Serialise planning per company (SQLite: the write lock taken by BEGIN IMMEDIATE).
    lock_company(conn, company_id)
    started = start_day(conn, config, company_id, run_on, now)
    paused = paused_table(conn, company_id)  # disputed or promised: left out of the claims
    claims = plan_claims(
        conn,
        config,
        company_id,
        run_on,
        started.covered_before,
        started.go_live_on,
        now,
        run_id,
        paused,
        totals=totals,
    )
    ended = end_day(
        conn, config, company_id, run_on, started.covered_before, now, run_id, paused, totals
    )
    if paused is not None:
        paused.drop(conn)
    return day_result(run_on, started, claims, ended)
