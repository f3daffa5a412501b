"""The daily run's first half: everything due on a date becomes outbox rows, set-based.

The domain (``cobro.domain.policy``) turns each policy into ranges of due
dates; this module selects the matching open receivables with one indexed
query per range, writes them to a temporary table, and from there inserts
one outbox row per debtor and phase (``INSERT ... SELECT`` with ``ON
CONFLICT DO NOTHING`` on the idempotency key) and one claim item per
receivable. No Python loop over receivables; no clock read: the date and
the instant are arguments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from cobro.config import CobroConfig
from cobro.domain.policy import DueWindow, due_windows
from cobro.engine.accounts import release_paid_blocks
from cobro.engine.claims import plan_claims
from cobro.engine.scheduled import plan_actions
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


def earliest_open_due(conn: Connection, company_id: int) -> date | None:
    r = t.receivables.c
    value: date | None = conn.execute(
        select(func.min(r.due_on)).where(r.company_id == company_id, r.balance_minor > 0)
    ).scalar()
    return value


def windows_for(
    conn: Connection, config: CobroConfig, company_id: int, run_on: date
) -> list[DueWindow]:
    covered = conn.execute(
        select(t.companies.c.covered_through).where(t.companies.c.id == company_id)
    ).scalar()
    earliest = earliest_open_due(conn, company_id)
    if earliest is None:
        return []
    out: list[DueWindow] = []
    for policy in config.all_policies():
        out.extend(due_windows(policy, run_on, covered, config.company.max_catch_up_days, earliest))
    return out


COMPOUND_LIMIT = 400  # SQLite refuses a UNION of more than 500 SELECTs


def window_chunks(windows: list[DueWindow]) -> list[list[DueWindow]]:
    """The windows in groups small enough for one compound SELECT."""
    return [windows[i : i + COMPOUND_LIMIT] for i in range(0, len(windows), COMPOUND_LIMIT)]


def due_select(
    company_id: int, windows: list[DueWindow], *, with_amounts: bool = False
) -> Select[Any]:
    """Open receivables reaching a step: (receivable_id, customer_id, step, repeat_no).

    One range scan of the open-due index per window, carrying the window's
    policy as a constant; the debtors are joined once, over the union, to keep
    those whose policy it is. ``with_amounts`` adds (balance_minor, currency)
    and leaves out occurrences already claimed, for simulations.
    """
    r, c = t.receivables.c, t.customers.c
    parts = []
    for w in windows:
        cols: list[Any] = [
            r.id.label("receivable_id"),
            r.customer_id.label("customer_id"),
            literal(w.phase.step_id, String).label("step"),
            literal(w.repeat_no, Integer).label("repeat_no"),
            literal(w.phase.policy, String).label("policy"),
        ]
        if with_amounts:
            cols += [r.balance_minor.label("balance_minor"), r.currency.label("currency")]
        q = select(*cols).where(
            r.company_id == company_id,
            r.balance_minor > 0,  # the condition of the open-due index
            r.balance_minor >= max(1, w.phase.min_balance_minor),
            r.due_on >= w.due_from,
            r.due_on <= w.due_to,
        )
        if with_amounts:
            ci = t.claim_items.c
            q = q.where(
                ~exists().where(
                    ci.receivable_id == r.id,
                    ci.step == w.phase.step_id,
                    ci.repeat_no == w.repeat_no,
                )
            )
        parts.append(q)
    u = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("due")
    out = [u.c.receivable_id, u.c.customer_id, u.c.step, u.c.repeat_no]
    if with_amounts:
        out += [u.c.balance_minor, u.c.currency]
    return select(*out).join(
        t.customers, and_(c.id == u.c.customer_id, c.effective_policy == u.c.policy)
    )


def _due_table() -> Table:
    return Table(
        "cobro_due",
        MetaData(),
        Column("receivable_id", Integer, nullable=False),
        Column("customer_id", Integer, nullable=False),
        Column("step", String(90), nullable=False),
        Column("repeat_no", Integer, nullable=False),
        Index("ix_cobro_due_customer_step", "customer_id", "step"),
        prefixes=["TEMPORARY"],
    )


def plan_day(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    now: datetime,
    run_id: int | None = None,
) -> PlanResult:
    """Plan everything due on ``run_on`` into the outbox, inside the caller's transaction."""
    # Serialise planning per company (SQLite: the write lock taken by BEGIN IMMEDIATE).
    lock_company(conn, company_id)
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
    claims = plan_claims(conn, config, company_id, run_on, covered_before, go_live_on, now, run_id)
    actions = plan_actions(conn, config, company_id, run_on, covered_before, now, run_id)
    subs = plan_subscriptions(conn, config, company_id, run_on, now, run_id)
    if covered_before is None or covered_before < run_on:
        conn.execute(update(t.companies).where(co.id == company_id).values(covered_through=run_on))
    return PlanResult(
        run_on,
        claims.claims + actions.messages + subs.reminders,
        claims.items + actions.items,
        claims.candidates,
        unblocked,
        actions.tasks,
        claims.held,
        claims.deferred,
    )
