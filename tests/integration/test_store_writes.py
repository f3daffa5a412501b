"""Store helpers of the planner: ``execute_rows`` (many rows in one executemany) writes
what SQLAlchemy's own executemany writes; ``insert_rows`` and ``update_rows`` (one statement
from arrays on PostgreSQL) write the same; ``ordered_join`` keeps SQLite's join order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, bindparam, event, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import StatementError

from cobro.engine import claims
from cobro.store import tables as t
from cobro.store.db import (
    RANDOM_PAGE_COST,
    execute_rows,
    favour_indexes,
    insert_rows,
    page_cache,
    update_rows,
)
from cobro.store.joins import ordered_join, written_join_order
from cobro.workspace import Workspace

from .support import load

NOW = datetime(2025, 3, 4, 9, 30, 15, 123456, tzinfo=UTC)
COLUMNS = ("customer_id", "policy", "phase_key", "reached_on", "repeats", "review_on")


def levels(ws: Workspace) -> list[tuple[object, ...]]:
    lv = t.dunning_levels.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(*(lv[c] for c in COLUMNS), lv.updated_at, lv.company_id).order_by(lv.customer_id)
        )
        return [tuple(r) for r in rows]


def test_rows_written_and_updated_as_sqlalchemy_writes_them(ws: Workspace) -> None:
    load(
        ws,
        "customers",
        *({"external_id": f"C{i}", "name": f"Debtor {i}", "kind": "business"} for i in range(4)),
    )
    with ws.engine.connect() as conn:
        ids = list(conn.execute(select(t.customers.c.id).order_by(t.customers.c.id)).scalars())
    day = date(2025, 3, 4)
    rows = [
        (ids[0], "b2b", "03-reminder", day, 2, day + timedelta(days=7), NOW),
        (ids[1], "b2b", None, None, 0, None, NOW + timedelta(hours=1)),  # NULLs pass through
    ]
    names = [f"b_{c}" for c in (*COLUMNS, "updated_at")]
    lv = t.dunning_levels.c
    insert = t.dunning_levels.insert().values(
        company_id=ws.company_id,  # written in the statement: the same for every row
        **{c: bindparam(f"b_{c}") for c in (*COLUMNS, "updated_at")},
    )
    with ws.engine.begin() as conn:
        execute_rows(conn, insert, names, rows)
        execute_rows(conn, insert, names, [])  # nothing to write: nothing happens
    assert levels(ws) == [(*row, ws.company_id) for row in rows]

    # The same rows through SQLAlchemy's own executemany, for two other debtors.
    other = [(ids[2], *rows[0][1:]), (ids[3], *rows[1][1:])]
    with ws.engine.begin() as conn:
        conn.execute(insert, [dict(zip(names, row, strict=True)) for row in other])
    written = levels(ws)
    assert [r[1:] for r in written[2:]] == [r[1:] for r in written[:2]]

    # An UPDATE whose key comes last in the statement but first in the rows.
    change = [(ids[0], "b2b", "04-final", day + timedelta(days=1), 0, None, NOW)]
    with ws.engine.begin() as conn:
        execute_rows(
            conn,
            update(t.dunning_levels)
            .where(lv.customer_id == bindparam("b_customer_id"))
            .values({c: bindparam(f"b_{c}") for c in (*COLUMNS[1:], "updated_at")}),
            names,
            change,
        )
    assert levels(ws)[0] == (*change[0], ws.company_id)
    assert levels(ws)[1:] == written[1:]


def test_rows_inserted_and_updated_by_key_in_one_statement(ws: Workspace) -> None:
    load(
        ws,
        "customers",
        *({"external_id": f"C{i}", "name": f"Debtor {i}", "kind": "business"} for i in range(3)),
    )
    with ws.engine.connect() as conn:
        ids = list(conn.execute(select(t.customers.c.id).order_by(t.customers.c.id)).scalars())
    day = date(2025, 3, 4)
    columns = (*COLUMNS, "updated_at")
    rows = [
        (ids[0], "b2b", "03-reminder", day, 2, day + timedelta(days=7), NOW),
        (ids[1], "b2b", None, None, 0, None, NOW + timedelta(hours=1)),  # NULLs pass through
        (ids[2], "consumer", "due", day, 0, day, NOW),
    ]
    with ws.engine.begin() as conn:
        insert_rows(conn, t.dunning_levels, columns, rows, company_id=ws.company_id)
        insert_rows(conn, t.dunning_levels, columns, [], company_id=ws.company_id)
    assert levels(ws) == [(*row, ws.company_id) for row in rows]

    # Another company's debtor with a level of its own.
    with ws.engine.begin() as conn:
        other = conn.execute(
            t.companies.insert()
            .values(slug="other", name="Other Co", created_at=NOW)
            .returning(t.companies.c.id)
        ).scalar_one()
        stranger = conn.execute(
            t.customers.insert()
            .values(
                company_id=other, external_id="X1", name="Stranger", created_at=NOW, updated_at=NOW
            )
            .returning(t.customers.c.id)
        ).scalar_one()
        insert_rows(conn, t.dunning_levels, columns, [(stranger, *rows[0][1:])], company_id=other)

    # Two of the company's rows change, found by their debtor, at the same time, in one
    # statement; its third row and the other company's row (its key given too) stay.
    later = NOW + timedelta(days=1)
    change = [
        (ids[2], "consumer", None, None, 0, None),
        (ids[0], "b2b", "04-final", day + timedelta(days=1), 3, None),
        (stranger, "consumer", None, None, 0, None),
    ]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with ws.engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", count)
        update_rows(
            conn,
            t.dunning_levels,
            ws.company_id,
            "customer_id",
            COLUMNS[1:],
            change,
            updated_at=later,
        )
        update_rows(
            conn, t.dunning_levels, ws.company_id, "customer_id", COLUMNS[1:], [], updated_at=NOW
        )
        event.remove(conn, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].startswith("UPDATE dunning_levels")
    assert levels(ws) == [
        (*change[1], later, ws.company_id),
        (*rows[1], ws.company_id),
        (*change[0], later, ws.company_id),
        (stranger, *rows[0][1:], other),
    ]


def test_a_bind_parameter_the_rows_do_not_name_is_refused(ws: Workspace) -> None:
    lv = t.dunning_levels.c
    statement = (
        update(t.dunning_levels)
        .where(lv.customer_id == bindparam("b_customer"))
        .values(policy=bindparam("b_policy"))
    )
    with ws.engine.begin() as conn, pytest.raises((ValueError, StatementError)):
        execute_rows(conn, statement, ["b_customer_id", "b_policy"], [(1, "b2b")])


def test_an_ordered_join_is_a_cross_join_on_sqlite_and_a_join_elsewhere() -> None:
    cand = claims._candidates_table()
    statement = select(t.customers.c.name).select_from(
        ordered_join(cand, t.customers, t.customers.c.id == cand.c.customer_id)
    )
    assert "FROM cobro_candidates CROSS JOIN customers ON" in str(
        statement.compile(dialect=sqlite.dialect())
    )
    on_postgres = str(statement.compile(dialect=postgresql.dialect()))
    assert "FROM cobro_candidates JOIN customers ON" in on_postgres
    assert "CROSS" not in on_postgres


def test_index_reads_are_favoured_for_the_planning_transaction_only(ws: Workspace) -> None:
    if ws.engine.dialect.name != "postgresql":
        pytest.skip("random_page_cost: PostgreSQL's planner")

    def cost(conn: Connection) -> float:
        return float(conn.execute(text("SHOW random_page_cost")).scalar_one())

    with ws.engine.connect() as conn:
        conn.execute(text("SET random_page_cost = 4"))  # PostgreSQL's default
        conn.commit()
        with conn.begin():
            favour_indexes(conn)
            assert cost(conn) == RANDOM_PAGE_COST
        assert cost(conn) == 4  # the transaction is over: the session's own again

        conn.execute(text("SET random_page_cost = 1.0"))  # an operator's lower setting
        conn.commit()
        with conn.begin():
            favour_indexes(conn)
            assert cost(conn) == 1.0  # kept, never raised
        conn.execute(text("RESET random_page_cost"))
        conn.commit()


def test_joins_keep_their_written_order_inside_the_block_only(ws: Workspace) -> None:
    if ws.engine.dialect.name != "postgresql":
        with ws.engine.begin() as conn, written_join_order(conn):
            pass  # nothing to set on SQLite (CROSS JOIN keeps its order)
        pytest.skip("join_collapse_limit: PostgreSQL's planner")

    def limit(conn: Connection) -> str:
        return str(conn.execute(text("SHOW join_collapse_limit")).scalar_one())

    with ws.engine.begin() as conn:
        before = limit(conn)
        assert before != "1"
        with written_join_order(conn):
            assert limit(conn) == "1"
        assert limit(conn) == before  # as it was, for the rest of the transaction
    with ws.engine.connect() as conn:
        assert limit(conn) == before


def test_a_larger_page_cache_lasts_for_its_block_only_on_sqlite(ws: Workspace) -> None:
    statements: list[str] = []

    def seen(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with ws.engine.connect() as conn:
        if ws.engine.dialect.name != "sqlite":
            event.listen(conn, "before_cursor_execute", seen)
            with page_cache(conn, 1024):
                pass
            assert statements == []  # PostgreSQL's buffers are the server's
            return

        def size() -> int:
            return int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

        before = size()
        assert before == -65536  # every connection's 64 MiB
        conn.rollback()
        with conn.begin():
            with page_cache(conn, 262144):
                assert size() == -262144
            assert size() == before  # as it was, for the rest of the transaction
        with pytest.raises(LookupError), page_cache(conn, 131072):
            raise LookupError("a block that fails")
        assert size() == before


def test_rows_updated_by_a_key_of_two_columns_in_one_statement(ws: Workspace) -> None:
    """``update_rows`` finds rows by two columns (a claim's item: its claim and its
    receivable), changing those pairs only, of the company only."""
    ci = t.claim_items.c
    items = [  # (company, claim, receivable, balance)
        (ws.company_id, 1, 10, 500),
        (ws.company_id, 1, 11, 600),
        (ws.company_id, 2, 10, 700),  # the same receivable in another claim
        (ws.company_id + 1, 3, 12, 800),  # another company's
    ]
    with ws.engine.begin() as conn:
        conn.execute(
            t.claim_items.insert(),
            [
                {
                    "company_id": company,
                    "outbox_id": claim,
                    "receivable_id": receivable,
                    "step": f"b2b/01/{claim}",
                    "repeat_no": 0,
                    "balance_minor": balance,
                }
                for company, claim, receivable, balance in items
            ],
        )
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with ws.engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", count)
        update_rows(
            conn,
            t.claim_items,
            ws.company_id,
            ("outbox_id", "receivable_id"),
            ["balance_minor"],
            [(1, 11, 0), (2, 10, 650), (3, 12, 0), (2, 11, 1)],  # the last two: not the company's
        )
        event.remove(conn, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].startswith("UPDATE claim_items")
    with ws.engine.connect() as conn:
        found = conn.execute(
            select(ci.company_id, ci.outbox_id, ci.receivable_id, ci.balance_minor).order_by(
                ci.outbox_id, ci.receivable_id
            )
        ).all()
    assert [tuple(r) for r in found] == [
        (ws.company_id, 1, 10, 500),
        (ws.company_id, 1, 11, 0),
        (ws.company_id, 2, 10, 650),
        (ws.company_id + 1, 3, 12, 800),
    ]
