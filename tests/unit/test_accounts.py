"""Phase 05 blocks the account; paying the overdue debt releases it at the next run."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from cobro.engine.accounts import blocked_accounts
from cobro.engine.runs import run_day
from cobro.evidence.chain import verify_chain
from cobro.intake.importer import import_records
from cobro.store import tables as t
from cobro.workspace import Workspace

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def setup(ws: Workspace) -> None:
    import_records(
        ws,
        "customers",
        [
            (
                2,
                {
                    "external_id": "B1",
                    "name": "Norte S.L.",
                    "kind": "business",
                    "email": "a@norte.example",
                },
            )
        ],
        NOW,
        "test",
    )
    import_records(
        ws,
        "receivables",
        [(2, {"external_id": "R1", "customer": "B1", "due_on": "2026-01-01", "amount": "500.00"})],
        NOW,
        "test",
    )


def run_daily(ws: Workspace, first: date, last: date) -> list[int]:
    """A run every day from ``first`` to ``last``: the accounts each one blocked."""
    blocked = []
    day = first
    while day <= last:
        blocked.append(run_day(ws, day).blocked)
        day += timedelta(days=1)
    return blocked


def test_last_notice_blocks_the_account_and_payment_releases_it(workspace: Workspace) -> None:
    setup(workspace)
    # Phases 01..04 go out on their days; nothing is blocked before phase 05 (60 days).
    assert run_daily(workspace, date(2026, 1, 1), date(2026, 3, 1)) == [0] * 60
    report = run_day(workspace, date(2026, 3, 2))  # 60 days after due: phase 05
    assert report.blocked == 1
    with workspace.engine.connect() as conn:
        assert blocked_accounts(conn, workspace.company_id) == ["B1"]
    import_records(
        workspace,
        "payments",
        [(2, {"external_id": "P1", "customer": "B1", "paid_on": "2026-03-05", "amount": "500.00"})],
        NOW,
        "test",
    )
    assert run_day(workspace, date(2026, 3, 6)).unblocked == 1
    with workspace.engine.connect() as conn:
        assert blocked_accounts(conn, workspace.company_id) == []
        kinds = (
            conn.execute(
                select(t.evidence.c.kind)
                .where(t.evidence.c.kind.like("account.%"))
                .order_by(t.evidence.c.seq)
            )
            .scalars()
            .all()
        )
        assert kinds == ["account.blocked", "account.unblocked"]
        assert verify_chain(conn, workspace.company_id).ok


def test_a_partly_paid_account_stays_blocked(workspace: Workspace) -> None:
    setup(workspace)
    assert sum(run_daily(workspace, date(2026, 1, 1), date(2026, 3, 2))) == 1
    import_records(
        workspace,
        "payments",
        [(2, {"external_id": "P1", "customer": "B1", "paid_on": "2026-03-05", "amount": "100.00"})],
        NOW,
        "test",
    )
    assert run_day(workspace, date(2026, 3, 6)).unblocked == 0
    with workspace.engine.connect() as conn:
        assert blocked_accounts(conn, workspace.company_id) == ["B1"]
