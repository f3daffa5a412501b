"""Writing the items of the day's claims: the receivables each outbox row lists.

The planner writes them into ``claim_items`` (``write_items``), skipping an item already
listed by the same step on the same day. The simulation (``cobro.engine.simulate``)
rolls back whatever it plans and needs only each message's number of items and amount
per currency: given a ``totals_table``, ``write_items`` adds those to it instead, one
row per outbox row and currency, and writes nothing to ``claim_items``. On a statement
day that is one row per notice and currency instead of one per open receivable, in a
table with no index. Unlike ``claim_items``, the totals do not skip an item already
listed by the same step on the same day; a new outbox row's item can have been listed
only by a run of that day for another debtor, the item's debtor having changed since.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    String,
    Table,
    func,
    insert,
    select,
)

from cobro.store import tables as t
from cobro.store.db import counted, insert_ignoring, temporary_table

# The columns of an item's row, in the order of the planner's item selects.
ITEM_COLUMNS = ["company_id", "outbox_id", "receivable_id", "step", "repeat_no"]


def totals_table() -> Table:
    """A temporary table of message totals: (outbox row, currency, items, amount)."""
    return temporary_table(
        "cobro_item_totals",
        Column("outbox_id", Integer, nullable=False),
        Column("currency", String(3), nullable=False),
        Column("items", Integer, nullable=False),
        Column("balance_minor", BigInteger, nullable=False),
    )


def write_items(
    conn: Connection,
    rows: Any,
    totals: Table | None,
    conflict: list[str] | None = None,
) -> int:
    """Write the items ``rows`` selects (``ITEM_COLUMNS``, the outbox row labelled
    ``outbox_id``, the receivable read from ``receivables``) and return how many.

    Without ``totals``: into ``claim_items``, an item already there for its step and day
    skipped (``conflict``: the unique index's columns, or any unique key). With it: each
    outbox row's items counted and summed per currency into ``totals``."""
    if totals is None:
        statement = insert_ignoring(conn, t.claim_items).from_select(ITEM_COLUMNS, rows)
        return counted(conn, statement.on_conflict_do_nothing(index_elements=conflict))
    r = t.receivables.c
    listed = (
        rows.order_by(None)
        .add_columns(r.currency.label("currency"), r.balance_minor.label("amount"))
        .subquery()
    )
    per_message = select(
        listed.c.outbox_id, listed.c.currency, func.count(), func.sum(listed.c.amount)
    ).group_by(listed.c.outbox_id, listed.c.currency)
    return add_totals(conn, totals, per_message)


def add_totals(conn: Connection, totals: Table, per_message: Any) -> int:
    """Add the rows ``per_message`` selects (outbox row, currency, items, amount) to
    ``totals`` and return how many items they count."""
    before = _items(conn, totals)
    conn.execute(
        insert(totals).from_select(["outbox_id", "currency", "items", "balance_minor"], per_message)
    )
    return _items(conn, totals) - before


def _items(conn: Connection, totals: Table) -> int:
    n = conn.execute(select(func.coalesce(func.sum(totals.c["items"]), 0))).scalar_one()
    return int(n)
