"""The planner's selection is indexed (SQLite only: its query plan can be inspected cheaply)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import Connection

from cobro.domain.policy import DueWindow
from cobro.engine import planner
from cobro.workspace import Workspace

from .support import d, load

RUN_ON = d("2025-03-03")


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


def query_plan(conn: Connection, windows: list[DueWindow], company_id: int) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of the planner's selection, with its real parameters."""
    compiled = planner.due_select(company_id, windows).compile(dialect=conn.dialect)
    params = tuple(
        v.isoformat() if isinstance(v, date) else v
        for v in (compiled.params[name] for name in compiled.positiontup or ())
    )
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params).all()
    return [str(r[3]) for r in rows]


def windows(ws: Workspace, conn: Connection) -> list[DueWindow]:
    planner.refresh_policies(conn, ws.config, ws.company_id)
    found = planner.windows_for(conn, ws.config, ws.company_id, RUN_ON)
    assert found
    return found


def receivable_lookups(plan: list[str]) -> list[str]:
    lookups = [step for step in plan if " receivables" in step]
    assert lookups, plan
    return lookups


def test_planning_uses_the_open_due_index(sqlite_ws: Workspace) -> None:
    with sqlite_ws.engine.begin() as conn:
        found = windows(sqlite_ws, conn)
        plain = [w for w in found if w.phase.min_balance_minor == 0]
        whole = query_plan(conn, plain, sqlite_ws.company_id)
        each = {w: query_plan(conn, [w], sqlite_ws.company_id) for w in plain}

    assert any("ix_receivables_open_due" in step for step in whole)
    for step in receivable_lookups(whole):
        assert "USING INDEX ix_receivables_open_due" in step, whole
    for w, plan in each.items():
        for step in receivable_lookups(plan):
            assert "USING INDEX ix_receivables_open_due" in step, (w, plan)


def test_planning_a_phase_with_a_minimum_balance_uses_the_open_due_index(
    sqlite_ws: Workspace,
) -> None:
    with sqlite_ws.engine.begin() as conn:
        found = [w for w in windows(sqlite_ws, conn) if w.phase.min_balance_minor > 0]
        assert found, "the starter's phase 05 has a minimum balance"
        plans = [query_plan(conn, [w], sqlite_ws.company_id) for w in found]

    for plan in plans:
        for step in receivable_lookups(plan):
            assert "USING INDEX ix_receivables_open_due" in step, plan
