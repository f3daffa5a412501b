"""A company's day planned in shards of debtors, which any worker may run (``cobro.workers``).

The day's plan (``cobro.engine.planner``) goes in three steps, each one transaction:

1. **The start** (``begin_day``), under the company lock: the start of the day
   (``start_day``: policies, paid-up accounts, promises), the run recorded, what every
   shard plans from kept on the day's ``daily_runs`` row (``covered_through`` before the
   day, ``go_live_on``: the end of the day moves the first), and the day cut into
   ``plan_shards``: ranges of about ``COBRO_PLAN_SHARD_DEBTORS`` consecutive debtor ids
   (one range of every debtor during the go-live ramp, whose limit is company-wide). A
   second start of the same day (its task delivered again) finds the day started and
   only hands back the shards not planned yet.
2. **A shard** (``plan_shard``): its row locked (``FOR UPDATE``; SQLite's ``BEGIN
   IMMEDIATE`` serialises writers anyway), nothing done when it is planned already,
   else the claims of its debtors (``plan_claims`` bounded by the range) and the row
   marked planned with what it wrote. No company lock: the shards of a company run at
   the same time. They write disjoint debtors' rows (outbox, claim items, levels; a
   replay is skipped by the unique keys and ``ON CONFLICT DO NOTHING``), and the row
   locks they take on the company and its debtors for the foreign keys are shared ones
   (``KEY SHARE``, which the company lock ``FOR NO KEY UPDATE`` does not conflict with
   either): two shards wait for each other only for the moment of a commit (the
   ``data_version`` row every writing transaction moves on last), and no cycle of
   waits, hence no deadlock, can form between them.
3. **The end** (``finish_day``), tried after every shard commits: under the company
   lock, nothing done when the day has ended or a shard is not planned yet, else the
   scheduled actions (a debt notice is merged into a claim of the same day, so they come
   after every claim), the subscription reminders, ``covered_through`` moved on and the
   day marked finished. Of two shards committing at once, each tries the end after its
   own commit, one after the other under the lock: the second of them sees every shard
   planned, and whichever comes first of those that do ends the day; the others find it
   ended.

A worker killed mid-shard commits nothing of it (its transaction is rolled back with
its connection); the shard is planned again by the task's next delivery, or by the
shards the scheduler queues again for a day not finished in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, func, insert, select, update

from cobro.config import CobroConfig
from cobro.engine.claims import ClaimsPlanned, DebtorRange, go_live_ramp, plan_claims
from cobro.engine.pauses import paused_table
from cobro.engine.planner import DayStarted, PlanResult, day_result, end_day, start_day
from cobro.store import tables as t
from cobro.store.db import insert_ignoring, lock_company


@dataclass(frozen=True)
class DayBegun:
    """A day whose plan has started: its run, and the shards not planned yet."""

    run_id: int
    pending: tuple[int, ...]


@dataclass(frozen=True)
class DayFinished:
    """A day this caller finished: its run, the instant it was planned as of, when its
    plan started, and the plan of the whole day (the shards' claims added up)."""

    run_id: int
    as_of: datetime
    started_at: datetime
    plan: PlanResult


def begin_day(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    as_of: datetime,
    at: datetime,
    debtors_per_shard: int,
) -> DayBegun | None:
    """Start the plan of ``run_on`` as of ``as_of`` (at ``at``) and cut it into shards of
    about ``debtors_per_shard`` debtors, once; the day's run and its shards left to plan
    (a day started already: those of that start). None when the day has finished."""
    lock_company(conn, company_id)
    d = t.daily_runs.c
    conn.execute(
        insert_ignoring(conn, t.daily_runs)
        .values(company_id=company_id, run_on=run_on, queued_at=at)
        .on_conflict_do_nothing()
    )
    day = conn.execute(
        select(d.id, d.run_id, d.started_at, d.finished_at).where(
            d.company_id == company_id, d.run_on == run_on
        )
    ).one()
    if day.finished_at is not None:
        return None
    run_id = day.run_id
    if day.started_at is None:
        run_id = int(
            conn.execute(
                insert(t.runs)
                .values(company_id=company_id, run_on=run_on, as_of=as_of, started_at=at)
                .returning(t.runs.c.id)
            ).scalar_one()
        )
        started = start_day(conn, config, company_id, run_on, as_of)
        conn.execute(
            update(t.daily_runs)
            .where(d.id == day.id)
            .values(
                run_id=run_id,
                started_at=at,
                covered_before=started.covered_before,
                go_live_on=started.go_live_on,
                unblocked=started.unblocked,
                promises_kept=started.promises_kept,
                promises_broken=started.promises_broken,
            )
        )
        cut_shards(
            conn,
            company_id,
            run_on,
            debtors_per_shard,
            go_live_ramp(config, run_on, started.go_live_on),
        )
    s = t.plan_shards.c
    pending = conn.execute(
        select(s.id)
        .where(s.company_id == company_id, s.run_on == run_on, s.planned_at.is_(None))
        .order_by(s.first_customer_id)
    ).scalars()
    return DayBegun(int(run_id), tuple(pending))


def shard_bounds(
    conn: Connection, company_id: int, debtors_per_shard: int, one: bool = False
) -> list[DebtorRange]:
    """The company's debtors cut into ranges of ``debtors_per_shard`` consecutive ids (the
    last one without an upper bound, for debtors added since); ``one``: a single range of
    them all. No debtor: no range."""
    c = t.customers.c
    if one:
        first = conn.execute(select(func.min(c.id)).where(c.company_id == company_id)).scalar()
        return [] if first is None else [DebtorRange(int(first), None)]
    numbered = (
        select(c.id, func.row_number().over(order_by=c.id).label("n"))
        .where(c.company_id == company_id)
        .subquery()
    )
    firsts = [
        int(x)
        for x in conn.execute(
            select(numbered.c.id)
            .where((numbered.c.n - 1) % debtors_per_shard == 0)
            .order_by(numbered.c.id)
        ).scalars()
    ]
    return [
        DebtorRange(first, firsts[i + 1] - 1 if i + 1 < len(firsts) else None)
        for i, first in enumerate(firsts)
    ]


def cut_shards(
    conn: Connection, company_id: int, run_on: date, debtors_per_shard: int, one: bool = False
) -> int:
    """Record the shards of ``run_on`` (``shard_bounds``); a shard recorded already is
    kept as it is. How many there are."""
    bounds = shard_bounds(conn, company_id, debtors_per_shard, one)
    if bounds:
        conn.execute(
            insert_ignoring(conn, t.plan_shards).on_conflict_do_nothing(),
            [
                {
                    "company_id": company_id,
                    "run_on": run_on,
                    "first_customer_id": b.first,
                    "last_customer_id": b.last,
                }
                for b in bounds
            ],
        )
    return len(bounds)


def plan_shard(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    shard_id: int,
    at: datetime,
) -> ClaimsPlanned | None:
    """Plan the claims of shard ``shard_id`` of ``run_on`` (at ``at``), unless it is planned
    already (then None): see the module."""
    s, d, r = t.plan_shards.c, t.daily_runs.c, t.runs.c
    shard = conn.execute(
        select(s.first_customer_id, s.last_customer_id, s.planned_at)
        .where(s.id == shard_id, s.company_id == company_id, s.run_on == run_on)
        .with_for_update()
    ).one_or_none()
    if shard is None or shard.planned_at is not None:
        return None
    day = conn.execute(
        select(d.run_id, d.covered_before, d.go_live_on, r.as_of)
        .join(t.runs, r.id == d.run_id)
        .where(d.company_id == company_id, d.run_on == run_on)
    ).one()
    paused = paused_table(conn, company_id)
    claims = plan_claims(
        conn,
        config,
        company_id,
        run_on,
        day.covered_before,
        day.go_live_on,
        day.as_of,
        day.run_id,
        paused,
        DebtorRange(shard.first_customer_id, shard.last_customer_id),
    )
    if paused is not None:
        paused.drop(conn)
    conn.execute(
        update(t.plan_shards)
        .where(s.id == shard_id)
        .values(
            planned_at=at,
            planned=claims.claims,
            items=claims.items,
            candidates=claims.candidates,
            held=claims.held,
            deferred=claims.deferred,
        )
    )
    return claims


def finish_day(
    conn: Connection, config: CobroConfig, company_id: int, run_on: date, at: datetime
) -> DayFinished | None:
    """End the plan of ``run_on`` (at ``at``) when every shard of it is planned and nobody
    ended it yet; else None. See the module."""
    lock_company(conn, company_id)
    d, s, r = t.daily_runs.c, t.plan_shards.c, t.runs.c
    day = conn.execute(
        select(t.daily_runs, r.as_of)
        .join(t.runs, r.id == d.run_id)
        .where(d.company_id == company_id, d.run_on == run_on)
    ).one_or_none()
    if day is None or day.started_at is None or day.finished_at is not None:
        return None
    shards = conn.execute(
        select(
            func.count(),
            func.count(s.planned_at),
            *(
                func.coalesce(func.sum(col), 0)
                for col in (s.planned, s["items"], s.candidates, s.held, s.deferred)
            ),
        ).where(s.company_id == company_id, s.run_on == run_on)
    ).one()
    if shards[0] != shards[1]:
        return None
    paused = paused_table(conn, company_id)
    ended = end_day(
        conn, config, company_id, run_on, day.covered_before, day.as_of, day.run_id, paused
    )
    if paused is not None:
        paused.drop(conn)
    conn.execute(update(t.daily_runs).where(d.id == day.id).values(finished_at=at))
    started = DayStarted(
        day.covered_before,
        day.go_live_on,
        day.unblocked,
        day.promises_kept,
        day.promises_broken,
    )
    claims = ClaimsPlanned(*(int(x) for x in shards[2:]))
    return DayFinished(
        day.run_id, day.as_of, day.started_at, day_result(run_on, started, claims, ended)
    )
