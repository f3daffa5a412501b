"""What the scheduler hands the workers: each company's daily run, owed once, and the
outbox rows ready now, cut into shards of consecutive debtors.

A daily run is recorded in ``daily_runs`` by the first scheduler to get there, and
queued again when it has not finished in time (its task lost, a shard of its plan that
failed). The run's plan is cut into shards of debtors of its own, planned by any worker
(``cobro.engine.plan_shards``); the rows it plans are queued here once they are ready.

Only ids travel through the broker, and only of rows that are ready: a row due later
is queued by the tick after it becomes due, never with a days-long ETA (Redis would deliver
it again after its visibility timeout). A queued row is marked ``queued_until``; if its
task is lost (a broker that lost its queue), the row is queued again after that. Sending
a shard twice, or two shards holding one row, sends nothing twice: the dispatcher claims
each row under a lease."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, and_, or_, select, update

from cobro.domain.calendar import send_instant
from cobro.domain.model import OutboxStatus
from cobro.engine.leases import gone_holders
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.store import tables as t
from cobro.store.db import insert_ignoring
from cobro.workspace import Workspace


@dataclass(frozen=True)
class DailyRun:
    """A company's run owed for ``run_on`` (the row of ``daily_runs``)."""

    id: int
    run_on: date


def due_day(ws: Workspace, now: datetime) -> date | None:
    """The company's day whose send time has come by ``now`` (its time zone), else None."""
    from zoneinfo import ZoneInfo

    company = ws.config.company
    today = now.astimezone(ZoneInfo(company.timezone)).date()
    if send_instant(today, company.send_time, company.timezone) <= now:
        return today
    return None


def claim_daily_run(
    conn: Connection, company_id: int, run_on: date, now: datetime, retry_after: timedelta
) -> DailyRun | None:
    """The daily run of ``run_on`` when this caller is the one to queue it: the first to
    record it (two schedulers: one wins), or the first to take over a run queued more
    than ``retry_after`` ago that has not finished (its task was lost). Else None."""
    d = t.daily_runs.c
    inserted = conn.execute(
        insert_ignoring(conn, t.daily_runs)
        .values(company_id=company_id, run_on=run_on, queued_at=now)
        .on_conflict_do_nothing()
        .returning(d.id)
    ).first()
    row = conn.execute(
        select(d.id, d.queued_at, d.finished_at).where(
            d.company_id == company_id, d.run_on == run_on
        )
    ).one()
    if inserted is not None:
        return DailyRun(row.id, run_on)
    if row.finished_at is not None or row.queued_at > now - retry_after:
        return None
    taken = conn.execute(
        update(t.daily_runs)
        .where(d.id == row.id, d.queued_at == row.queued_at, d.finished_at.is_(None))
        .values(queued_at=now)
    ).rowcount
    return DailyRun(row.id, run_on) if taken == 1 else None


def daily_run_done(
    conn: Connection, company_id: int, run_on: date, run_id: int, at: datetime
) -> None:
    d = t.daily_runs.c
    conn.execute(
        update(t.daily_runs)
        .where(d.company_id == company_id, d.run_on == run_on)
        .values(run_id=run_id, finished_at=at)
    )


def daily_run_finished(conn: Connection, company_id: int, run_on: date) -> bool:
    d = t.daily_runs.c
    return (
        conn.execute(
            select(d.finished_at).where(d.company_id == company_id, d.run_on == run_on)
        ).scalar()
        is not None
    )


def ready_shards(
    conn: Connection,
    company_id: int,
    now: datetime,
    debtors: int,
    hold: timedelta,
    prompt: bool = False,
) -> list[list[int]]:
    """The ids of the company's outbox rows ready at ``now`` and not queued already, cut
    into shards of at most ``debtors`` consecutive debtors (a debtor's rows stay in one
    shard); they are marked queued until ``now + hold``. Ready: planned and due, or being
    sent by a dispatcher whose lease is over or that is gone (a worker of this host that
    was killed); webhook deliveries go by company (``webhooks_ready``). ``prompt``: only
    the debtors with a row no day's run planned (an event's notice, a resend, a pay link
    asked for on a call), which have a queue of their own ahead of the day's rows
    (``cobro.workers``); each with all its ready rows, so that no two tasks hold rows of one
    debtor (a dispatcher passes by a debtor another holds, ``cobro.engine.leases``)."""
    o = t.outbox.c
    free = o.lease_until <= now
    gone = gone_holders(conn, company_id, now)
    if gone:
        free = or_(free, o.holder.in_(gone))
    ready = and_(
        o.company_id == company_id,
        o.step.not_like(IS_WEBHOOK),
        or_(
            and_(o.status == OutboxStatus.PLANNED.value, o.next_attempt_at <= now),
            and_(o.status == OutboxStatus.SENDING.value, free),
        ),
        or_(o.queued_until.is_(None), o.queued_until <= now),
    )
    q = (
        select(o.id, o.customer_id)
        .where(ready)
        .order_by(o.customer_id, o.id)
        .with_for_update(skip_locked=True, of=t.outbox)
    )
    if prompt:
        q = q.where(o.customer_id.in_(select(o.customer_id).where(ready, o.run_id.is_(None))))
    rows = conn.execute(q).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 1000):
        conn.execute(
            update(t.outbox)
            .where(o.id.in_(ids[start : start + 1000]))
            .values(queued_until=now + hold)
        )
    shards: list[list[int]] = []
    current: list[int] = []
    seen = 0
    last: int | None = None
    for r in rows:
        if r.customer_id != last:
            if seen == debtors:
                shards.append(current)
                current, seen = [], 0
            seen += 1
            last = r.customer_id
        current.append(r.id)
    shards.append(current)
    return shards


def webhooks_ready(conn: Connection, company_id: int, now: datetime) -> bool:
    """Whether the company has webhook deliveries to post at ``now``."""
    o = t.outbox.c
    return (
        conn.execute(
            select(o.id)
            .where(
                o.company_id == company_id,
                o.step.like(IS_WEBHOOK),
                or_(
                    and_(o.status == OutboxStatus.PLANNED.value, o.next_attempt_at <= now),
                    and_(o.status == OutboxStatus.SENDING.value, o.lease_until <= now),
                ),
            )
            .limit(1)
        ).first()
        is not None
    )
