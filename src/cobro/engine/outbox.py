"""Writing planned rows to the outbox: one statement, existing keys skipped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, and_
from sqlalchemy.sql.elements import ColumnElement

from cobro.engine.webhooks import IS_WEBHOOK
from cobro.store import tables as t
from cobro.store.db import counted, insert_ignoring

# Rows no day's run planned (an event's notice such as a receipt, a resend, a pay link
# asked for on a call), webhook deliveries aside: they go ahead of the day's claims
# (``cobro.engine.dispatch``), read from ``ix_outbox_prompt``, whose condition this is.
IS_PROMPT: ColumnElement[bool] = and_(
    t.outbox.c.run_id.is_(None), t.outbox.c.step.not_like(IS_WEBHOOK)
)

# The order of the columns a planning SELECT gives for ``insert_planned``.
PLANNED_COLUMNS = (
    "company_id",
    "customer_id",
    "step",
    "occurrence_on",
    "status",
    "due_at",
    "next_attempt_at",
    "run_id",
    "created_at",
)


def insert_planned(conn: Connection, rows: Select[Any]) -> int:
    """Insert the selected rows; those whose key (company, debtor, step, date) exists are
    skipped. The SELECT needs a WHERE clause (SQLite would read ON CONFLICT as a join's ON).
    Returns how many rows were written."""
    return counted(
        conn,
        insert_ignoring(conn, t.outbox)
        .from_select(list(PLANNED_COLUMNS), rows)
        .on_conflict_do_nothing(),
    )
