"""A join that SQLite runs in the order it is written.

SQLite's planner knows nothing of a temporary table's size and assumes it is large, so
a join of a small temporary table of keys (the day's candidates) with an indexed table
is often run the other way round: every index entry of the big table, each probed in
the small one. ``CROSS JOIN`` is SQLite's documented way to keep the left side the outer
loop (https://sqlite.org/optoverview.html#manual_control_of_join_order); on other
databases the join is a plain inner join, left to their planners.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FromClause, Join


class OrderedJoin(Join):
    """``left JOIN right ON onclause``, rendered ``CROSS JOIN`` on SQLite."""

    inherit_cache = True


def ordered_join(left: FromClause, right: FromClause, onclause: ColumnElement[bool]) -> Join:
    """An inner join whose left side stays the outer loop on SQLite (see the module)."""
    return OrderedJoin(left, right, onclause)


@compiles(OrderedJoin)
def _plain(join: OrderedJoin, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.visit_join(join, **kw))  # type: ignore[no-untyped-call]


@compiles(OrderedJoin, "sqlite")
def _cross(join: OrderedJoin, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLCompiler.visit_join with " CROSS JOIN " for " JOIN ".
    kw.pop("asfrom", None)
    linter = kw.pop("from_linter", None)
    if linter is not None:
        linter.edges.update(itertools.product(join.left._from_objects, join.right._from_objects))
    on = join.onclause
    assert on is not None  # ordered_join always has one
    return str(
        join.left._compiler_dispatch(compiler, asfrom=True, from_linter=linter, **kw)
        + " CROSS JOIN "
        + join.right._compiler_dispatch(compiler, asfrom=True, from_linter=linter, **kw)
        + " ON "
        + on._compiler_dispatch(compiler, from_linter=linter, **kw)
    )


@contextmanager
def written_join_order(conn: Connection) -> Iterator[None]:
    """PostgreSQL: the statements run inside join their tables in the order written
    (``join_collapse_limit`` 1, for the transaction, then as it was). Its statistics know
    nothing of the rows the transaction itself wrote: a day's outbox rows, planned shard
    after shard, were taken for none, so each shard's claim items were found by reading
    every outbox row of the day before its own claims (each shard slower than the last).
    SQLite: nothing (``ordered_join`` keeps its order)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    before = str(conn.execute(text("SHOW join_collapse_limit")).scalar_one())
    conn.execute(text("SELECT set_config('join_collapse_limit', '1', true)"))
    try:
        yield
    finally:
        conn.execute(text("SELECT set_config('join_collapse_limit', :v, true)"), {"v": before})
