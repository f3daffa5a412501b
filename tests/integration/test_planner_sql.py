"""The planner's selections, and the API's list of debtors, are indexed (SQLite only: its query
plan can be inspected cheaply)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, select

from cobro.domain.model import Policy
from cobro.engine import claims, planner, scheduled
from cobro.engine.accounts import blocking, releasing
from cobro.engine.pauses import paused_table
from cobro.engine.responses import open_dispute
from cobro.engine.runs import dispatch_due, run_day
from cobro.store import tables as t
from cobro.web.api.customers import customers_page
from cobro.workspace import Workspace

from .support import d, load

RUN_ON = d("2025-03-03")
NOW = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_ws(make_workspace: Callable[..., Workspace]) -> Workspace:
    """A workspace on its own SQLite file, with a few hundred open receivables."""
    ws = make_workspace("plan")
    assert ws.engine.dialect.name == "sqlite"
    load(
        ws,
        "customers",
        *(
            {
                "external_id": f"C{i}",
                "name": f"Debtor {i}",
                "kind": "business" if i % 2 else "person",
                "email": f"c{i}@example.com",
            }
            for i in range(40)
        ),
    )
    start = date(2024, 12, 1)
    load(
        ws,
        "receivables",
        *(
            {
                "external_id": f"R{i}",
                "customer": f"C{i % 40}",
                "due_on": (start + timedelta(days=i % 120)).isoformat(),
                "amount": f"{10 + i % 300}.00",
            }
            for i in range(800)
        ),
    )
    return ws


def query_plan(conn: Connection, statement: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a planner statement, with its real parameters."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = tuple(
        v.isoformat() if isinstance(v, date) else v
        for v in (compiled.params[name] for name in compiled.positiontup or ())
    )
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params).all()
    return [str(r[3]) for r in rows]


def receivable_lookups(plan: list[str]) -> list[str]:
    lookups = [step for step in plan if " receivables" in step or " r " in step]
    assert lookups, plan
    return lookups


def test_finding_the_debtors_of_the_day_reads_the_open_due_index_alone(
    sqlite_ws: Workspace,
) -> None:
    policies = sqlite_ws.config.all_policies()
    assert any(ph.min_balance_minor > 0 for p in policies for ph in p.phases)
    with sqlite_ws.engine.begin() as conn:
        planner.refresh_policies(conn, sqlite_ws.config, sqlite_ws.company_id)
        covered = RUN_ON - timedelta(days=1)
        whole = query_plan(
            conn, claims._crossing_select(sqlite_ws.company_id, policies, RUN_ON, covered)
        )
        each = [
            query_plan(
                conn,
                claims._crossing_select(
                    sqlite_ws.company_id, [Policy(p.name, (ph,))], RUN_ON, covered
                ),
            )
            for p in policies
            for ph in p.phases
        ]
        # As run: inserted into the candidates' temporary table.
        cand = claims._candidates_table()
        cand.create(conn)
        crossing = claims._crossing_select(sqlite_ws.company_id, policies, RUN_ON, covered)
        inserted = query_plan(conn, claims._add_candidates(conn, cand, crossing))
    assert any("ix_receivables_open_due" in step for step in whole)
    for plan in [whole, inserted, *each]:
        for step in receivable_lookups(plan):
            assert "USING COVERING INDEX ix_receivables_open_due" in step, plan


def test_a_shards_debtors_of_the_day_are_found_in_the_open_due_index_bounded_by_its_range(
    sqlite_ws: Workspace,
) -> None:
    """A shard of the day (a range of debtor ids) finds its debtors in the same range scans
    of the open-due index, its debtor column bounding them; a first run's full scan reads
    the range of debtors from the open-customer index."""
    policies = sqlite_ws.config.all_policies()
    with sqlite_ws.engine.begin() as conn:
        planner.refresh_policies(conn, sqlite_ws.config, sqlite_ws.company_id)
        ids = sorted(conn.execute(select(t.customers.c.id)).scalars())
        covered = RUN_ON - timedelta(days=1)
        plans = []
        for debtors in (
            claims.DebtorRange(ids[10], ids[19]),
            claims.DebtorRange(ids[30], None),
            claims.DebtorRange(None, ids[9]),
        ):
            crossing = claims._crossing_select(
                sqlite_ws.company_id, policies, RUN_ON, covered, debtors=debtors
            )
            cand = claims._candidates_table()
            cand.drop(conn, checkfirst=True)
            cand.create(conn)
            plans.append(query_plan(conn, crossing))
            plans.append(query_plan(conn, claims._add_candidates(conn, cand, crossing)))
            whole = (
                select(t.receivables.c.customer_id)
                .where(
                    t.receivables.c.company_id == sqlite_ws.company_id,
                    t.receivables.c.balance_minor > 0,
                    *debtors.where(t.receivables.c.customer_id),
                )
                .distinct()
            )
            scan = query_plan(conn, claims._add_candidates(conn, cand, whole))
            assert all(
                "COVERING INDEX ix_receivables_open_customer" in step
                for step in receivable_lookups(scan)
            ), scan
    for plan in plans:
        for step in receivable_lookups(plan):
            assert "USING COVERING INDEX ix_receivables_open_due" in step, plan


@pytest.mark.parametrize("paused", [False, True])
def test_a_debtors_debt_is_read_candidate_by_candidate_from_the_open_customer_index(
    sqlite_ws: Workspace, paused: bool
) -> None:
    policy = sqlite_ws.config.policy("b2b")
    with sqlite_ws.engine.begin() as conn:
        cand = claims._candidates_table()
        cand.create(conn)
        conn.execute(cand.insert(), [{"customer_id": i} for i in range(1, 6)])
        left_out = None
        if paused:  # some items disputed: left out through the small temporary table
            c1 = conn.execute(select(t.customers.c.id).limit(1)).scalar_one()
            first = conn.execute(
                select(t.receivables.c.id).where(t.receivables.c.customer_id == c1)
            ).scalar()
            open_dispute(conn, sqlite_ws.company_id, c1, first, "no", NOW, source="staff")
            left_out = paused_table(conn, sqlite_ws.company_id)
            assert left_out is not None
        plan = query_plan(
            conn,
            claims._debt_select(sqlite_ws.company_id, policy, RUN_ON, cand, left_out),
        )
    # Candidate after candidate (the temporary table is read first, whatever its size),
    # each debtor's open items from the partial index of open items alone.
    assert plan[0] == "SCAN cobro_candidates", plan
    steps = [step for step in plan if "receivables" in step]
    assert steps and all("COVERING INDEX ix_receivables_open_customer" in step for step in steps), (
        plan
    )


def test_blocking_accounts_finds_its_debtors_by_id(sqlite_ws: Workspace) -> None:
    """A dispatch batch blocks a few hundred debtors: found by id, never by reading an
    index of every debtor of the company (200,000 of them at the largest)."""
    with sqlite_ws.engine.begin() as conn:
        ids = set(conn.execute(select(t.customers.c.id).limit(30)).scalars())
        plan = query_plan(conn, blocking(sqlite_ws.company_id, ids, NOW))
    assert plan and all("USING INTEGER PRIMARY KEY" in step for step in plan), plan


def test_releasing_paid_blocks_reads_the_blocked_debtors_alone(sqlite_ws: Workspace) -> None:
    """Each day starts by releasing the blocks of debtors who paid: read from the partial
    index of blocked debtors, never from an index of every debtor of the company."""
    with sqlite_ws.engine.begin() as conn:
        plan = query_plan(conn, releasing(sqlite_ws.company_id, RUN_ON, NOW))
    assert "ix_customers_blocked" in plan[0], plan


@pytest.mark.parametrize("paused", [False, True])
def test_the_items_a_claim_or_a_debt_notice_lists_are_read_from_the_open_customer_index(
    sqlite_ws: Workspace, paused: bool
) -> None:
    """The items of the day's claims and of a debt notice (every open item of each debtor,
    a million at the largest) are read debtor after debtor from the partial index of open
    items alone, never from the table nor from an index of every receivable."""
    notice = sqlite_ws.config.action("statement")
    with sqlite_ws.engine.begin() as conn:
        left_out = None
        if paused:
            first = conn.execute(select(t.receivables.c.customer_id, t.receivables.c.id)).first()
            assert first is not None
            open_dispute(conn, sqlite_ws.company_id, first[0], first[1], "no", NOW, source="staff")
            left_out = paused_table(conn, sqlite_ws.company_id)
            assert left_out is not None
        claimed = claims._claims_table()
        claimed.create(conn)
        plans = [
            query_plan(
                conn, claims.open_items_select(sqlite_ws.company_id, RUN_ON, claimed, left_out)
            ),
            query_plan(
                conn,
                scheduled.statement_items_select(sqlite_ws.company_id, notice, RUN_ON, left_out),
            ),
        ]
    for plan in plans:
        steps = receivable_lookups(plan)
        assert all("COVERING INDEX ix_receivables_open_customer" in step for step in steps), plan


@pytest.mark.parametrize("blocked", [None, False])
def test_the_apis_list_of_debtors_reads_them_in_id_order_from_an_index(
    sqlite_ws: Workspace, blocked: bool | None
) -> None:
    """A page of the API's list of debtors (50 of 200,000 at the largest) is read in the
    order of the debtors' ids from an index, never sorted after reading all of them."""
    with sqlite_ws.engine.connect() as conn:
        plans = [
            query_plan(conn, customers_page(sqlite_ws.company_id, after, blocked, None, None, 50))
            for after in (None, 17)
        ]
    for plan in plans:
        assert not any("TEMP B-TREE" in step for step in plan), plan
        assert any("USING INDEX ix_customers_company_id_id" in step for step in plan), plan


def test_on_postgresql_a_shards_range_bounds_the_scan_of_the_open_due_index(
    ws: Workspace,
) -> None:
    """PostgreSQL: on a single day (a daily run), the shard's debtors bound each phase's
    scan of the open-due index (``Index Cond``), so a shard reads its own debtors' items
    of the day and not every debtor's. (Index paths are forced: a few rows would be read
    sequentially, whatever the statement.)"""
    if ws.engine.dialect.name != "postgresql":
        pytest.skip("the index conditions of PostgreSQL's plan")
    import json

    load(
        ws,
        "customers",
        *({"external_id": f"C{i}", "name": f"D{i}", "kind": "business"} for i in range(4)),
    )
    policies = ws.config.all_policies()
    with ws.engine.begin() as conn:
        planner.refresh_policies(conn, ws.config, ws.company_id)
        ids = sorted(conn.execute(select(t.customers.c.id)).scalars())
        crossing = claims._crossing_select(
            ws.company_id,
            policies,
            RUN_ON,
            RUN_ON - timedelta(days=1),
            debtors=claims.DebtorRange(ids[1], ids[2]),
            by_index=True,
        )
        compiled = crossing.compile(
            dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        [[found]] = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params
        ).all()

    def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
        here = [node] if node.get("Relation Name") == "receivables" else []
        return here + [s for child in node.get("Plans", []) for s in scans(child)]

    plan = found if isinstance(found, list) else json.loads(found)
    receivables = scans(plan[0]["Plan"])
    assert len(receivables) == sum(len(p.phases) for p in policies)  # one scan a phase
    for scan in receivables:
        # Which index, the planner chooses by the table's size (the debtors' items of the
        # day in the open-due index on a large table); either way the range bounds it.
        bound = scan["Index Cond"]
        assert f"customer_id >= {ids[1]}" in bound and f"customer_id <= {ids[2]}" in bound
        if scan["Index Name"] == "ix_receivables_open_due":
            assert "due_on = " in bound
        else:
            assert scan["Index Name"] == "ix_receivables_open_customer", scan


def test_a_dispatcher_reads_each_batch_in_order_from_an_index_without_sorting_the_rows_due(
    ws: Workspace,
) -> None:
    """Each batch is claimed by up to three selections (rows no day's run planned, rows
    taken over from another dispatcher, the day's rows): each read in order from an
    index, never by sorting every row due (some 134,000 of the day's claims at the
    largest, which took 0.3-0.4 s a batch on PostgreSQL). The rows no run planned come
    from their own index. (PostgreSQL: index paths forced; a few rows would be read
    sequentially, whatever the statement.)"""
    load(
        ws,
        "customers",
        *({"external_id": f"C{i}", "name": f"D{i}", "kind": "business"} for i in range(6)),
    )
    load(
        ws,
        "receivables",
        *(
            {"external_id": f"R{i}", "customer": f"C{i}", "due_on": "2025-02-01", "amount": "90"}
            for i in range(6)
        ),
    )
    assert run_day(ws, RUN_ON, send=False).planned > 0
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        claim = "JOIN customers ON customers.id = outbox.customer_id" in statement
        if claim and "outbox.step NOT LIKE" in statement:  # not the webhook deliveries'
            seen.append((statement, params))

    event.listen(ws.engine, "before_cursor_execute", capture)
    try:
        dispatch_due(ws, NOW + timedelta(days=2))
    finally:
        event.remove(ws.engine, "before_cursor_execute", capture)

    def kind(statement: str, params: Any) -> str:
        values = set(params.values() if isinstance(params, dict) else params)
        if "run_id IS NULL" in statement:
            return "prompt"
        return "taken over" if "sending" in values else "due"

    kinds = {kind(st, params) for st, params in seen}
    assert kinds == {"prompt", "taken over", "due"}, [st for st, _ in seen]
    postgres = ws.engine.dialect.name == "postgresql"
    with ws.engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        for statement, params in seen:
            plan = [
                str(r[-1])
                for r in conn.exec_driver_sql(
                    ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, params
                )
            ]
            assert not any("Sort" in step or "TEMP B-TREE" in step for step in plan), (
                statement,
                plan,
            )
            if "run_id IS NULL" in statement:
                assert any("ix_outbox_prompt" in step for step in plan), plan
