"""A company's day planned in shards of debtors (cobro.engine.plan_shards), on each
database: the same rows as one transaction, each shard once, the day ended once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from cobro.domain.calendar import send_instant
from cobro.engine.dispatch import DispatchReport
from cobro.engine.plan_shards import DayBegun, DayFinished, begin_day, finish_day, plan_shard
from cobro.engine.planner import PlanResult, plan_day
from cobro.engine.responses import open_dispute
from cobro.engine.runs import record_report, run_report
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import d, load, rendezvous

AT = datetime(2025, 3, 20, 10, 0, tzinfo=UTC)  # when the shards' work is recorded
DAYS = (d("2025-03-18"), d("2025-03-19"), d("2025-03-20"))  # the 20th: the statements' day
SHARD = 3  # debtors per shard

# (debtor, kind, [(invoice, due date, amount)]): debtors at every phase on the days run.
PORTFOLIO: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("B00", "business", [("F00", "2025-03-27", "120.00")]),  # 00 on the 20th
    ("P00", "person", [("G00", "2025-03-23", "40.00")]),  # "before" on the 20th
    ("B01", "business", [("F01", "2025-03-26", "80.00"), ("F01b", "2025-04-30", "10.00")]),
    ("B02", "business", [("F02", "2025-03-13", "300.00")]),  # 01 on the 20th
    ("P01", "person", [("G01", "2025-03-20", "55.00")]),  # "due" on the 20th
    ("B03", "business", [("F03", "2025-03-12", "75.00")]),
    ("B04", "business", [("F04", "2025-03-05", "640.00")]),  # 02 on the 20th
    ("P02", "person", [("G02", "2025-03-15", "25.00")]),  # "after" on the 20th
    ("B05", "business", [("F05", "2025-03-04", "90.00")]),
    # 03 on the 20th, 30 days overdue: the day's statement merged into the claim
    ("B06", "business", [("F06", "2025-02-18", "700.00"), ("F06b", "2025-03-10", "60.00")]),
    ("B07", "business", [("F07", "2025-02-17", "45.00")]),  # 30 days overdue on the 19th
    ("P03", "person", [("G03", "2025-03-05", "30.00")]),  # a repeat of "after" on the 20th
    ("B08", "business", [("F08", "2025-02-03", "5000.00")]),  # 04 on the 20th
    ("B09", "business", [("F09", "2025-01-19", "150.00")]),  # 05 on the 20th
    ("B10", "business", [("F10", "2025-01-05", "220.00")]),  # 05, repeated on the 20th
    ("P04", "person", [("G04", "2025-02-20", "99.00")]),
    ("B11", "business", [("F11", "2024-12-01", "30.00")]),  # 05's minimum not reached
    # disputed: its oldest item paused; the other claimed
    ("B12", "business", [("F12", "2025-02-18", "400.00"), ("F12b", "2025-03-13", "70.00")]),
    ("P05", "person", [("G05", "2025-03-19", "18.00")]),
    ("B13", "business", [("F13", "2025-03-25", "65.00")]),  # nothing due on these days
    ("B14", "business", []),  # owes nothing
]


# Imported before the 20th's run: 30 days overdue that day, its first claim and the
# statement of the same day merged into it.
LATE = [("B15", "business", [("F15", "2025-02-18", "800.00")])]


def portfolio(
    ws: Workspace, debtors: list[tuple[str, str, list[tuple[str, str, str]]]] = PORTFOLIO
) -> None:
    for debtor, kind, invoices in debtors:
        load(
            ws,
            "customers",
            {"external_id": debtor, "name": debtor, "kind": kind, "email": f"{debtor}@x.example"},
        )
        for number, due_on, amount in invoices:
            load(
                ws,
                "receivables",
                {"external_id": number, "customer": debtor, "due_on": due_on, "amount": amount},
            )
    if debtors is not PORTFOLIO:
        return
    r, c = t.receivables.c, t.customers.c
    with ws.engine.begin() as conn:
        customer, item = conn.execute(
            select(c.id, r.id)
            .join(t.receivables, r.customer_id == c.id)
            .where(c.company_id == ws.company_id, r.external_id == "F12")
        ).one()
        open_dispute(conn, ws.company_id, customer, item, "not delivered", AT, source="staff")


def as_of(ws: Workspace, day: date) -> datetime:
    company = ws.config.company
    return send_instant(day, company.send_time, company.timezone)


def plan_in_one(ws: Workspace, day: date) -> PlanResult:
    with ws.engine.begin() as conn:
        return plan_day(conn, ws.config, ws.company_id, day, as_of(ws, day))


def begin(ws: Workspace, day: date, size: int = SHARD) -> DayBegun:
    with ws.engine.begin() as conn:
        begun = begin_day(conn, ws.config, ws.company_id, day, as_of(ws, day), AT, size)
    assert begun is not None
    return begun


def shard(ws: Workspace, day: date, shard_id: int) -> Any:
    with ws.engine.begin() as conn:
        return plan_shard(conn, ws.config, ws.company_id, day, shard_id, AT)


def finish(ws: Workspace, day: date) -> DayFinished | None:
    with ws.engine.begin() as conn:
        done = finish_day(conn, ws.config, ws.company_id, day, AT)
        if done is not None:
            record_report(
                conn, done.run_id, run_report(day, done.as_of, done.plan, DispatchReport())
            )
        return done


def outbox_rows(ws: Workspace, day: date | None = None) -> list[tuple[Any, ...]]:
    o, c = t.outbox.c, t.customers.c
    q = (
        select(c.external_id, o.step, o.occurrence_on, o.status, o.due_at, o.created_at)
        .join(t.customers, c.id == o.customer_id)
        .where(o.company_id == ws.company_id)
    )
    if day is not None:
        q = q.where(o.occurrence_on == day)
    with ws.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(q))


def claim_items(ws: Workspace) -> list[tuple[Any, ...]]:
    o, c, r, ci = t.outbox.c, t.customers.c, t.receivables.c, t.claim_items.c
    with ws.engine.connect() as conn:
        return sorted(
            tuple(row)
            for row in conn.execute(
                select(c.external_id, o.step, o.occurrence_on, r.external_id, ci.repeat_no)
                .select_from(t.claim_items)
                .join(t.outbox, o.id == ci.outbox_id)
                .join(t.customers, c.id == o.customer_id)
                .join(t.receivables, r.id == ci.receivable_id)
                .where(ci.company_id == ws.company_id)
            )
        )


def levels(ws: Workspace) -> list[tuple[Any, ...]]:
    lv, c = t.dunning_levels.c, t.customers.c
    with ws.engine.connect() as conn:
        return sorted(
            tuple(row)
            for row in conn.execute(
                select(
                    c.external_id,
                    lv.policy,
                    lv.phase_key,
                    lv.reached_on,
                    lv.repeats,
                    lv.review_on,
                    lv.updated_at,
                )
                .join(t.customers, c.id == lv.customer_id)
                .where(lv.company_id == ws.company_id)
            )
        )


def company_days(ws: Workspace) -> tuple[Any, ...]:
    co = t.companies.c
    with ws.engine.connect() as conn:
        return tuple(
            conn.execute(
                select(co.covered_through, co.go_live_on).where(co.id == ws.company_id)
            ).one()
        )


@pytest.fixture
def twins(make_workspace: Callable[..., Workspace], db_url: str) -> tuple[Workspace, Workspace]:
    """Two companies on one database with the same starter configuration (scheduled
    actions included) and the same debtors: one planned in one transaction, one in
    shards."""
    one = make_workspace("one", db_url=db_url)
    sharded = make_workspace("sharded", replace={"  id: demo ": "  id: twin "}, db_url=db_url)
    assert one.company_id != sharded.company_id
    portfolio(one)
    portfolio(sharded)
    return one, sharded


def test_a_day_planned_in_shards_writes_what_one_transaction_writes(
    twins: tuple[Workspace, Workspace],
) -> None:
    one, sharded = twins
    shards_cut = []
    for day in DAYS:
        if day == DAYS[-1]:
            portfolio(one, LATE)
            portfolio(sharded, LATE)
        whole = plan_in_one(one, day)
        begun = begin(sharded, day)
        shards_cut.append(len(begun.pending))
        # In any order; the day ends only after its last shard, with the actions.
        for n, shard_id in enumerate(reversed(begun.pending)):
            assert shard(sharded, day, shard_id) is not None
            if n < len(begun.pending) - 1:
                assert finish(sharded, day) is None
                assert [r for r in outbox_rows(sharded, day) if r[1].startswith("action/")] == []
        done = finish(sharded, day)
        assert done is not None
        assert done.plan == whole, day  # every count, the shards' claims added up
        with sharded.engine.connect() as conn:
            report = conn.execute(
                select(t.runs.c.planned, t.runs.c.report).where(t.runs.c.id == done.run_id)
            ).one()
        assert report.planned == whole.planned and report.report["items"] == whole.items
        assert finish(sharded, day) is None  # ended once
    assert shards_cut == [7, 7, 8]  # 21 debtors, then 22; 3 a shard

    assert outbox_rows(sharded) == outbox_rows(one)
    assert claim_items(sharded) == claim_items(one)
    assert levels(sharded) == levels(one)
    assert company_days(sharded) == company_days(one) == (DAYS[-1], DAYS[0])

    # What the comparison covers: claims at several phases, the statement merged into
    # the claim of a debtor 30 days overdue that day and sent alone to those claimed
    # before, and the disputed item left out of its debtor's claim.
    on_20th = {(r[0], r[1]) for r in outbox_rows(one, DAYS[-1])}
    assert ("B07", "action/statement") in on_20th
    assert [step for who, step in on_20th if who == "B15"] == ["b2b/01"]
    assert len({row[1] for row in outbox_rows(one)}) >= 6
    assert [x for x in claim_items(one) if x[0] == "B12"] and all(
        x[3] != "F12" for x in claim_items(one) if x[0] == "B12"
    )


def test_a_shard_planned_again_plans_nothing(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws()
    portfolio(ws)
    day = DAYS[0]
    begun = begin(ws, day)
    first = shard(ws, day, begun.pending[2])
    assert first is not None and first.claims > 0
    rows = outbox_rows(ws)
    assert shard(ws, day, begun.pending[2]) is None
    assert outbox_rows(ws) == rows
    again = begin(ws, day)  # the day's task delivered again: the same shards, one fewer
    assert again == DayBegun(begun.run_id, begun.pending[:2] + begun.pending[3:])
    s = t.plan_shards.c
    with ws.engine.connect() as conn:
        planned = conn.execute(select(s.planned).where(s.id == begun.pending[2])).scalar_one()
    assert planned == first.claims == len(rows)


def test_the_go_live_ramp_plans_the_day_in_one_shard(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        replace={
            "  # go_live:": "  go_live:",
            "  #   days: 30": "    days: 30",
            "  #   max_claims_per_day: 500": "    max_claims_per_day: 4",
        }
    )
    portfolio(ws)
    day = DAYS[0]
    (only,) = begin(ws, day).pending
    claims = shard(ws, day, only)
    assert claims.claims == 4 and claims.deferred > 0  # the company's limit, oldest first
    assert finish(ws, day) is not None


def test_a_day_without_debtors_ends_at_once(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws()
    assert begin(ws, DAYS[0]).pending == ()
    done = finish(ws, DAYS[0])
    assert done is not None and done.plan.planned == 0
    assert company_days(ws)[0] == DAYS[0]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_ws(make_ws: Callable[..., Workspace], is_postgres: bool) -> Workspace:
    if not is_postgres:
        pytest.skip("concurrent transactions: PostgreSQL (SQLite serialises its writers)")
    ws = make_ws()
    portfolio(ws)
    return ws


def _together(work: Callable[[], Any], parties: int = 2) -> list[Any]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(parties)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    return results


def _locks_shard(statement: str) -> bool:
    return "FROM plan_shards" in statement and "FOR UPDATE" in statement


def test_two_workers_planning_one_shard_at_once_plan_it_once(pg_ws: Workspace) -> None:
    day = DAYS[0]
    begun = begin(pg_ws, day)
    target = begun.pending[2]
    with rendezvous([pg_ws.engine], 2, _locks_shard):  # both ask for the row together
        results = _together(lambda: shard(pg_ws, day, target))
    planned = [r for r in results if r is not None]
    assert len(results) == 2 and len(planned) == 1 and planned[0].claims > 0
    s = t.plan_shards.c
    with pg_ws.engine.connect() as conn:
        counted = conn.execute(select(s.planned).where(s.id == target)).scalar_one()
    assert counted == planned[0].claims == len(outbox_rows(pg_ws))


def test_the_day_ends_once_when_its_last_shards_finish_together(pg_ws: Workspace) -> None:
    day = DAYS[-1]
    begun = begin(pg_ws, day)
    *first, a, b = begun.pending
    for shard_id in first:
        shard(pg_ws, day, shard_id)
    last = iter([a, b])
    guard = threading.Lock()

    def worker() -> DayFinished | None:
        with guard:
            mine = next(last)
        assert shard(pg_ws, day, mine) is not None
        return finish(pg_ws, day)

    with rendezvous([pg_ws.engine], 2, _locks_shard):  # the two last shards at once
        results = _together(worker)
    ended = [r for r in results if r is not None]
    assert len(results) == 2 and len(ended) == 1
    rows = outbox_rows(pg_ws, day)
    assert ended[0].plan.planned == len(rows)
    # The statement of the day merged into each claim (the actions came after them all).
    debtors = [r[0] for r in rows]
    assert "B07" in debtors and len(debtors) == len(set(debtors))
    d_ = t.daily_runs.c
    with pg_ws.engine.connect() as conn:
        finished = conn.execute(
            select(d_.finished_at).where(d_.company_id == pg_ws.company_id, d_.run_on == day)
        ).scalar_one()
        runs = conn.execute(select(func.count()).select_from(t.runs)).scalar_one()
    assert finished == AT and runs == 1
    assert finish(pg_ws, day) is None


def test_the_run_of_a_day_started_twice_is_one(pg_ws: Workspace) -> None:
    """Two deliveries of the day's task at once: one starts it, the other finds it started."""
    day = DAYS[0]
    with rendezvous([pg_ws.engine], 2, lambda sql: "FROM companies" in sql and "FOR" in sql):
        results = _together(lambda: begin(pg_ws, day))
    assert results[0] == results[1] and len(results[0].pending) == 7
    with pg_ws.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.plan_shards)).scalar_one() == 7
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar_one() == 1
