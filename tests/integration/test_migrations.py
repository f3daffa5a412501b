"""The Alembic migrations build exactly the schema the code declares, on each database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cobro.store import tables as t
from cobro.workspace import Workspace


def test_migrations_match_the_declared_tables(ws: Workspace) -> None:
    with ws.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, t.metadata)
    assert diff == []
