"""Planning the day's claims, one per debtor at the debtor's phase (debtor-level escalation).

Set-based around a small Python decision per debtor:

1. **Candidates**: the debtors that may need a claim today. Those with an open item
   whose due date plus a phase's offset falls in the days not planned yet (one
   indexed range scan per phase), those whose ``review_on`` has come (a gap to the
   next phase ended, a repeat is due, the go-live ramp deferred them), and on the
   first run or after a long gap every debtor with open debt. A shard of the day
   (``cobro.engine.plan_shards``) looks at a range of debtor ids only: each of these
   selections is bounded by it.
2. **Their debt**, one aggregate query per policy: for each phase the oldest open
   item big enough for it and whether an item reaches it exactly today. Items that
   are disputed or promised (``cobro.engine.pauses``) are left out of it, and of the
   claims; the oldest paused item of each debtor still holds its level.
3. **The decision** (``cobro.domain.escalation.decide``, pure) against the debtor's
   ``dunning_levels`` row, then the go-live ramp (at most ``go_live.max_claims_per_day``
   claims a day during the first ``go_live.days`` days; the oldest debt first).
4. **Writing**: one outbox row per debtor claimed (key: company, debtor, phase, date),
   listing every open item of the debtor that is not paused, and the debtors' new
   levels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    select,
    true,
    union_all,
)

from cobro.config import CobroConfig
from cobro.domain.calendar import DueDates, send_instant
from cobro.domain.escalation import DebtSummary, Decision, Level, decide
from cobro.domain.model import Policy
from cobro.engine.claim_items import write_items
from cobro.engine.outbox import insert_planned
from cobro.engine.pauses import not_left_out
from cobro.store import tables as t
from cobro.store.db import (
    favour_indexes,
    insert_ignoring,
    insert_rows,
    temporary_table,
    update_rows,
)
from cobro.store.joins import ordered_join, written_join_order

KEEP_DUE_DATES = DueDates()  # due dates count as stored


@dataclass(frozen=True)
class DebtorRange:
    """The debtors whose ids run from ``first`` to ``last`` (both included; None: no bound)."""

    first: int | None = None
    last: int | None = None

    def where(self, customer_id: Any, by_index: bool = True) -> list[Any]:
        """The conditions keeping ``customer_id`` in the range; ``by_index=False``: written
        so that no index is chosen for them (SQLite), where another condition's index
        should be read and the debtor checked in it."""
        if not by_index:
            customer_id = customer_id + 0
        out = []
        if self.first is not None:
            out.append(customer_id >= self.first)
        if self.last is not None:
            out.append(customer_id <= self.last)
        return out


EVERY_DEBTOR = DebtorRange()


@dataclass(frozen=True)
class ClaimsPlanned:
    claims: int  # outbox rows written
    items: int  # open items they list
    candidates: int  # debtors looked at
    held: int  # debtors whose next phase waits for its gap
    deferred: int  # debtors left for tomorrow by the go-live ramp


def _candidates_table() -> Table:
    return temporary_table(
        "cobro_candidates", Column("customer_id", Integer, primary_key=True, autoincrement=False)
    )


def _claims_table() -> Table:
    return temporary_table(
        "cobro_claims",
        Column("customer_id", Integer, primary_key=True, autoincrement=False),
        Column("step", String(90), nullable=False),
    )


def full_scan(config: CobroConfig, run_on: date, covered: date | None) -> bool:
    """Whether every debtor with open debt is looked at: the first run (go-live), or a run
    after more than ``max_catch_up_days`` without one."""
    return covered is None or (run_on - covered).days > config.company.max_catch_up_days


def _crossing_select(
    company_id: int,
    policies: list[Policy],
    run_on: date,
    covered: date,
    due: DueDates = KEEP_DUE_DATES,
    debtors: DebtorRange = EVERY_DEBTOR,
    by_index: bool = False,
) -> Any:
    """Debtors with an open item reaching one of their policy's phases on a day after
    ``covered`` and up to ``run_on``: one range scan of the open-due index per phase.
    ``debtors`` is checked in the day's range of the index; ``by_index`` (PostgreSQL): on
    a single day, the debtor column bounds the scan itself (a shard reads its own
    debtors' items, not the whole day's).

    An item reaching an after-due phase no higher than the one its debtor already stands
    at changes nothing (it is overdue, so the level stands, and it reaches no higher
    phase): those debtors are left out, with one look-up of their level each."""
    r, c, lv = t.receivables.c, t.customers.c, t.dunning_levels.c
    first = min(covered, run_on - timedelta(days=1)) + timedelta(days=1)
    parts = []
    for policy in policies:
        keys = [ph.key for ph in policy.phases]
        for j, ph in enumerate(policy.phases):
            # Stored due dates that count as due from lo to hi (calendar.due_dates).
            lo = due.due_by(first - timedelta(days=ph.offset_days + 1)) + timedelta(days=1)
            hi = due.due_by(run_on - timedelta(days=ph.offset_days))
            days = [r.due_on == lo] if lo == hi else [r.due_on >= lo, r.due_on <= hi]
            q = select(
                r.customer_id.label("customer_id"), literal(policy.name).label("policy")
            ).where(
                r.company_id == company_id,
                r.balance_minor > 0,
                r.balance_minor >= max(1, ph.min_balance_minor),
                *days,
                # Checked in the day's range of the index, never read by debtor
                # (SQLite would read every open item of the range's debtors).
                *debtors.where(r.customer_id, by_index=by_index and lo == hi),
            )
            if ph.offset_days > 0:
                q = q.where(
                    ~exists().where(
                        lv.customer_id == r.customer_id,
                        lv.policy == policy.name,
                        lv.phase_key.in_(keys[j:]),
                    )
                )
            parts.append(q)
    u = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("crossing")
    # A debtor may come out more than once (several items, several phases): the
    # candidates' table keeps one. No DISTINCT here, which would lead SQLite to read the
    # open items in debtors' order (every open item) rather than the days' ranges.
    return select(u.c.customer_id).join(
        t.customers, and_(c.id == u.c.customer_id, c.effective_policy == u.c.policy)
    )


def _fill_candidates(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    covered: date | None,
    cand: Table,
    debtors: DebtorRange = EVERY_DEBTOR,
) -> None:
    r, lv = t.receivables.c, t.dunning_levels.c
    sources: list[Any] = []
    if full_scan(config, run_on, covered):
        sources.append(
            select(r.customer_id)
            .where(r.company_id == company_id, r.balance_minor > 0, *debtors.where(r.customer_id))
            .distinct()
        )
    else:
        assert covered is not None
        policies = config.all_policies()
        for i in range(0, len(policies), 20):  # SQLite: at most 500 SELECTs in a UNION
            sources.append(
                _crossing_select(
                    company_id,
                    policies[i : i + 20],
                    run_on,
                    covered,
                    config.calendar.due_calendar(),
                    debtors,
                    by_index=conn.dialect.name == "postgresql",
                )
            )
    sources.append(
        select(lv.customer_id).where(
            lv.company_id == company_id, lv.review_on <= run_on, *debtors.where(lv.customer_id)
        )
    )
    for source in sources:
        conn.execute(_add_candidates(conn, cand, source))


def _add_candidates(conn: Connection, cand: Table, source: Any) -> Any:
    """INSERT the debtors ``source`` selects into ``cand``, those already there skipped."""
    rows = source.subquery()
    # SQLite reads "SELECT ... FROM x ON CONFLICT" as a join unless the SELECT has a WHERE:
    # an always-true one, which leaves SQLite's choice of indexes to the source alone.
    return (
        insert_ignoring(conn, cand)
        .from_select(["customer_id"], select(rows.c.customer_id).where(true()))
        .on_conflict_do_nothing()
    )


def _debt_select(
    company_id: int,
    policy: Policy,
    run_on: date,
    cand: Table,
    paused: Table | None = None,
    due: DueDates = KEEP_DUE_DATES,
) -> Any:
    """Per candidate on ``policy``: the oldest open item at least as big as each minimum
    balance the phases ask for (``m<minor units>``; ``m1`` is the oldest open item), and
    for each phase sent only on its own day whether an item reaches it today (``d<i>``);
    paused items left out."""
    r, c = t.receivables.c, t.customers.c
    cols: list[Any] = [cand.c.customer_id]
    for least in _minimums(policy):
        cols.append(func.min(case((r.balance_minor >= least, r.due_on))).label(f"m{least}"))
    for i, ph in enumerate(policy.phases):
        if not ph.catch_up:
            big = r.balance_minor >= max(1, ph.min_balance_minor)
            exactly = due.due_exactly(run_on - timedelta(days=ph.offset_days))
            if exactly is None:  # no due date counts as due on that day
                hit = func.max(literal(0))
            elif exactly[0] == exactly[1]:
                hit = func.max(case((and_(big, r.due_on == exactly[0]), 1), else_=0))
            else:
                on = r.due_on.between(*exactly)
                hit = func.max(case((and_(big, on), 1), else_=0))
            cols.append(hit.label(f"d{i}"))
    # Candidate after candidate (a few thousand), each debtor's open items read from
    # ix_receivables_open_customer alone.
    debtors = ordered_join(
        cand,
        t.customers,
        and_(
            c.company_id == company_id,
            c.effective_policy == policy.name,
            c.id == cand.c.customer_id,
        ),
    )
    items = ordered_join(
        debtors,
        t.receivables,
        and_(
            r.company_id == company_id,
            r.customer_id == cand.c.customer_id,
            r.balance_minor > 0,
        ),
    )
    q = select(*cols).select_from(items).group_by(cand.c.customer_id)
    keep = not_left_out(r.id, paused)
    return q if keep is None else q.where(keep)


def _minimums(policy: Policy) -> list[int]:
    """The distinct minimum balances of the policy's phases (1: any open item)."""
    return sorted({1, *(max(1, ph.min_balance_minor) for ph in policy.phases)})


def _debts(
    conn: Connection,
    company_id: int,
    policy: Policy,
    run_on: date,
    cand: Table,
    paused: Table | None,
    resting: dict[int, tuple[str, date]],
    due: DueDates = KEEP_DUE_DATES,
) -> dict[int, DebtSummary]:
    """The debt of every candidate on ``policy``, as escalation needs it; ``resting``
    (debtor -> policy, oldest paused item) adds the candidates' paused items. Due dates
    are those they count as (``calendar.due_dates``)."""
    query = _debt_select(company_id, policy, run_on, cand, paused, due)
    at = {col.name: i for i, col in enumerate(query.selected_columns)}
    least = [at[f"m{max(1, ph.min_balance_minor)}"] for ph in policy.phases]
    day = [at.get(f"d{i}") for i in range(len(policy.phases))]
    oldest = at["m1"]
    moved = due.moves
    out = {}
    for row in conn.execute(query).all():
        dates = [row[k] for k in least]
        first = row[oldest]
        if moved:
            dates = [None if d is None else due.effective(d) for d in dates]
            first = None if first is None else due.effective(first)
        out[row[0]] = DebtSummary(
            tuple(dates), tuple(False if k is None else bool(row[k]) for k in day), first
        )
    n = len(policy.phases)
    for cid, (name, due_on) in resting.items():
        if name == policy.name:
            debt = out.get(cid) or DebtSummary((None,) * n, (False,) * n, None)
            out[cid] = replace(debt, paused_oldest=due.effective(due_on))
    return out


def _resting(conn: Connection, cand: Table, paused: Table | None) -> dict[int, tuple[str, date]]:
    """Candidates with paused items: debtor -> (policy, earliest due date of them)."""
    if paused is None:
        return {}
    r, c = t.receivables.c, t.customers.c
    rows = conn.execute(
        select(paused.c.customer_id, c.effective_policy, func.min(r.due_on))
        .select_from(paused)
        .join(cand, cand.c.customer_id == paused.c.customer_id)
        .join(t.customers, c.id == paused.c.customer_id)
        .join(t.receivables, r.id == paused.c.receivable_id)
        .where(paused.c.void.is_(False))
        .group_by(paused.c.customer_id, c.effective_policy)
    )
    return {int(row[0]): (str(row[1]), row[2]) for row in rows}


def _levels(conn: Connection, cand: Table) -> dict[int, tuple[str, Level | None, date | None]]:
    """The stored (policy, level, review day) of every candidate that has one."""
    lv = t.dunning_levels.c
    out: dict[int, tuple[str, Level | None, date | None]] = {}
    rows = conn.execute(
        select(
            lv.customer_id, lv.policy, lv.phase_key, lv.reached_on, lv.repeats, lv.review_on
        ).select_from(ordered_join(cand, t.dunning_levels, lv.customer_id == cand.c.customer_id))
    ).all()
    for customer_id, policy, phase_key, reached_on, repeats, review_on in rows:
        level = (
            Level(phase_key, reached_on, repeats)
            if phase_key is not None and reached_on is not None
            else None
        )
        out[customer_id] = (policy, level, review_on)
    return out


def go_live_ramp(config: CobroConfig, run_on: date, go_live_on: date) -> bool:
    """Whether ``run_on`` is a day of the go-live ramp, whose claims are limited company-wide."""
    gl = config.company.go_live
    return gl.max_claims_per_day is not None and run_on < go_live_on + timedelta(days=gl.days)


def _go_live_room(
    conn: Connection, config: CobroConfig, company_id: int, run_on: date, go_live_on: date
) -> int | None:
    """How many more claims the go-live ramp allows today (None: no limit)."""
    gl = config.company.go_live
    if gl.max_claims_per_day is None or not go_live_ramp(config, run_on, go_live_on):
        return None
    o = t.outbox.c
    steps = [ph.step_id for p in config.all_policies() for ph in p.phases]
    done = conn.execute(
        select(func.count()).where(
            o.company_id == company_id, o.occurrence_on == run_on, o.step.in_(steps)
        )
    ).scalar_one()
    return max(0, gl.max_claims_per_day - int(done))


def plan_claims(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    covered: date | None,
    go_live_on: date,
    now: datetime,
    run_id: int | None,
    paused: Table | None = None,
    debtors: DebtorRange = EVERY_DEBTOR,
    totals: Table | None = None,
) -> ClaimsPlanned:
    """Plan the claims of ``run_on`` inside the caller's transaction (see the module);
    ``paused``: the items left out (``cobro.engine.pauses.paused_table``); ``debtors``:
    the debtors looked at (a shard of the day; the go-live ramp's limit holds for the
    claims of the whole company only when one shard plans them all); ``totals``: the
    claims' items counted there instead of written (``cobro.engine.claim_items``)."""
    favour_indexes(conn)
    cand = _candidates_table()
    cand.drop(conn, checkfirst=True)
    cand.create(conn)
    _fill_candidates(conn, config, company_id, run_on, covered, cand, debtors)
    levels = _levels(conn, cand)
    resting = _resting(conn, cand, paused)
    decided: list[tuple[int, str, Decision, DebtSummary]] = []
    due = config.calendar.due_calendar()
    for policy in config.all_policies():
        debts = _debts(conn, company_id, policy, run_on, cand, paused, resting, due)
        for customer_id, debt in debts.items():
            stored = levels.get(customer_id)
            level = stored[1] if stored is not None and stored[0] == policy.name else None
            decided.append((customer_id, policy.name, decide(policy, level, debt, run_on), debt))
    # Debtors with a level but no open debt any more: their episode is over.
    looked_at = {d[0] for d in decided}
    gone = [cid for cid in levels if cid not in looked_at]
    room = _go_live_room(conn, config, company_id, run_on, go_live_on)
    sending = [x for x in decided if x[2].send is not None]
    deferred: set[int] = set()
    if room is not None and len(sending) > room:
        # The oldest debt first; the rest wait for tomorrow, where they stand now.
        sending.sort(key=lambda x: (x[3].oldest_open or run_on, x[0]))
        deferred = {x[0] for x in sending[room:]}
        sending = sending[:room]
    claims = _claims_table()
    claims.drop(conn, checkfirst=True)
    claims.create(conn)
    insert_rows(
        conn,
        claims,
        ["customer_id", "step"],
        [(cid, d.send.step_id) for cid, _, d, _ in sending if d.send is not None],
    )
    at = send_instant(run_on, config.company.send_time, config.company.timezone)
    planned = insert_planned(
        conn,
        select(
            literal(company_id),
            claims.c.customer_id,
            claims.c.step,
            literal(run_on),
            literal("planned"),
            literal(at, t.UTCDateTime),
            literal(at, t.UTCDateTime),
            literal(run_id, Integer),
            literal(now, t.UTCDateTime),
        ).where(claims.c.customer_id.is_not(None)),
    )
    items = _claim_open_items(conn, company_id, run_on, claims, paused, totals)
    _store_levels(conn, company_id, decided, deferred, gone, levels, run_on, now)
    claims.drop(conn)
    cand.drop(conn)
    return ClaimsPlanned(
        planned,
        items,
        len(decided),
        sum(1 for x in decided if x[2].held),
        len(deferred),
    )


def _claim_open_items(
    conn: Connection,
    company_id: int,
    run_on: date,
    claims: Table,
    paused: Table | None,
    totals: Table | None,
) -> int:
    """Every open item of each claimed debtor that is not paused goes in the claim (its
    statement).

    ``repeat_no`` holds the claim's day (as an ordinal), so an item is listed once per
    claim and day, as statements do."""
    rows = open_items_select(company_id, run_on, claims, paused)
    with written_join_order(conn):  # the day's claims, then their outbox rows and items
        return write_items(conn, rows, totals, ["receivable_id", "step", "repeat_no"])


def open_items_select(
    company_id: int, run_on: date, claims: Table, paused: Table | None = None
) -> Any:
    """The claim items of the day's claims: (company, outbox row, receivable, step, day).

    The items are read debtor after debtor from ``ix_receivables_open_customer`` alone and
    come out in the order of the receivables' ids, so that the unique index of the claim
    items is written from one end to the other rather than at random places."""
    o, r = t.outbox.c, t.receivables.c
    rows = (
        select(
            literal(company_id),
            o.id.label("outbox_id"),
            r.id.label("receivable_id"),
            claims.c.step,
            literal(run_on.toordinal(), Integer),
        )
        .select_from(claims)
        .join(
            t.outbox,
            and_(
                o.company_id == company_id,
                o.customer_id == claims.c.customer_id,
                o.step == claims.c.step,
                o.occurrence_on == run_on,
                o.status == "planned",
            ),
        )
        .join(
            t.receivables,
            and_(r.company_id == company_id, r.customer_id == claims.c.customer_id),
        )
        .where(r.balance_minor > 0)
        .order_by(r.id)
    )
    keep = not_left_out(r.id, paused)
    return rows if keep is None else rows.where(keep)


def _store_levels(
    conn: Connection,
    company_id: int,
    decided: list[tuple[int, str, Decision, DebtSummary]],
    deferred: set[int],
    gone: list[int],
    stored: dict[int, tuple[str, Level | None, date | None]],
    run_on: date,
    now: datetime,
) -> None:
    """Write each candidate's level and next review day (only rows that change)."""
    # Rows of (debtor, policy, phase, reached on, repeats, review on); updated ``now``.
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    for cid, policy, d, _debt in decided:
        before = stored.get(cid)
        level = before[1] if before is not None and before[0] == policy else None
        review: date | None
        if cid in deferred:
            new_level, review = level, run_on + timedelta(days=1)
        else:
            new_level, review = d.level, d.review_on
        if before is None:
            if new_level is None and review is None:
                continue
        elif (before[0], before[1], before[2]) == (policy, new_level, review):
            continue
        row = (
            cid,
            policy,
            new_level.phase_key if new_level else None,
            new_level.reached_on if new_level else None,
            new_level.repeats if new_level else 0,
            review,
        )
        (inserts if before is None else updates).append(row)
    for cid in gone:
        if stored[cid][1] is None and stored[cid][2] is None:
            continue
        updates.append((cid, stored[cid][0], None, None, 0, None))
    update_rows(
        conn, t.dunning_levels, company_id, "customer_id", _LEVEL[1:], updates, updated_at=now
    )
    insert_rows(conn, t.dunning_levels, _LEVEL, inserts, company_id=company_id, updated_at=now)


# The columns of a level row that planning writes, in the order of its rows.
_LEVEL = ("customer_id", "policy", "phase_key", "reached_on", "repeats", "review_on")
