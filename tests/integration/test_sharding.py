"""What the scheduler queues for the workers (cobro.engine.sharding), on each database:
the day's run once, and the rows ready now in shards of consecutive debtors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update

from cobro.engine.sharding import claim_daily_run, daily_run_done, due_day, ready_shards
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import business, d

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=10)


def _customers(ws: Workspace, n: int) -> list[int]:
    for i in range(n):
        business(ws, f"C{i}", f"c{i}@debtors.example")
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(t.customers.c.id)
                .where(t.customers.c.company_id == ws.company_id)
                .order_by(t.customers.c.id)
            ).scalars()
        )


def _row(ws: Workspace, customer_id: int, step: str, due: datetime, status: str = "planned") -> int:
    with ws.engine.begin() as conn:
        return int(
            conn.execute(
                insert(t.outbox)
                .values(
                    company_id=ws.company_id,
                    customer_id=customer_id,
                    step=step,
                    occurrence_on=due.date(),
                    status=status,
                    due_at=due,
                    next_attempt_at=due,
                    created_at=due,
                )
                .returning(t.outbox.c.id)
            ).scalar_one()
        )


def test_ready_rows_are_cut_by_debtor_and_queued_once(ws: Workspace) -> None:
    customers = _customers(ws, 5)
    hour_ago = NOW - timedelta(hours=1)
    rows = {c: [_row(ws, c, "b2b/00", hour_ago)] for c in customers}
    rows[customers[1]].append(_row(ws, customers[1], "b2b/01", hour_ago))  # two for one debtor
    later = _row(ws, customers[0], "b2b/02", NOW + timedelta(days=3))  # due in three days
    with ws.engine.begin() as conn:
        shards = ready_shards(conn, ws.company_id, NOW, 2, HOLD)
    expected = [
        rows[customers[0]] + rows[customers[1]],
        rows[customers[2]] + rows[customers[3]],
        rows[customers[4]],
    ]
    assert shards == expected  # a debtor's rows stay together; the row due later waits
    assert later not in {i for s in shards for i in s}
    with ws.engine.begin() as conn:  # queued already: a second scheduler queues nothing
        assert ready_shards(conn, ws.company_id, NOW, 2, HOLD) == []
    with ws.engine.begin() as conn:  # still not sent once the hold is over: queued again
        again = ready_shards(conn, ws.company_id, NOW + HOLD, 2, HOLD)
    assert again == expected


def test_a_row_held_by_a_worker_is_queued_again_only_once_its_lease_is_over(
    ws: Workspace,
) -> None:
    (customer,) = _customers(ws, 1)
    row = _row(ws, customer, "b2b/00", NOW - timedelta(hours=1), status="sending")
    with ws.engine.begin() as conn:
        conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == row)
            .values(lease_until=NOW + timedelta(minutes=5), holder="elsewhere/1/1/x")
        )
    with ws.engine.begin() as conn:
        assert ready_shards(conn, ws.company_id, NOW, 10, HOLD) == []
    with ws.engine.begin() as conn:
        assert ready_shards(conn, ws.company_id, NOW + timedelta(minutes=6), 10, HOLD) == [[row]]


def test_a_day_is_owed_once_and_taken_over_only_when_its_task_was_lost(ws: Workspace) -> None:
    day = due_day(ws, NOW)
    assert day == d("2025-03-03")  # 13:00 in Madrid: the 09:00 send time has passed
    assert due_day(ws, datetime(2025, 3, 3, 7, 0, tzinfo=UTC)) is None  # 08:00 in Madrid
    with ws.engine.begin() as conn:
        first = claim_daily_run(conn, ws.company_id, day, NOW, HOLD)
        second = claim_daily_run(conn, ws.company_id, day, NOW, HOLD)
    assert first is not None and second is None
    with ws.engine.begin() as conn:  # not finished after the hold: queued again, once
        taken = claim_daily_run(conn, ws.company_id, day, NOW + HOLD, HOLD)
        again = claim_daily_run(conn, ws.company_id, day, NOW + HOLD, HOLD)
    assert taken == first and again is None
    with ws.engine.begin() as conn:
        run_id = int(
            conn.execute(
                insert(t.runs)
                .values(company_id=ws.company_id, run_on=day, as_of=NOW, started_at=NOW)
                .returning(t.runs.c.id)
            ).scalar_one()
        )
        daily_run_done(conn, ws.company_id, day, run_id, NOW)
    with ws.engine.begin() as conn:  # finished: never again that day
        assert claim_daily_run(conn, ws.company_id, day, NOW + 10 * HOLD, HOLD) is None
