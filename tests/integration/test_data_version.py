"""``data_version``: moved on by each transaction that writes data, not by reading, nor
by what a staff session writes about itself (when it was last seen)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cobro.engine.users import add_user, find_session, seen, start_session
from cobro.store import tables as t
from cobro.store.db import data_version
from cobro.workspace import Workspace

from .support import load


def test_writes_move_the_data_version_reads_and_session_bookkeeping_do_not(
    ws: Workspace,
) -> None:
    def version() -> int:
        with ws.engine.connect() as conn:
            return data_version(conn)

    now = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
    first = version()
    load(ws, "customers", {"external_id": "C1", "name": "Acme Industrial", "kind": "business"})
    after_import = version()
    assert after_import > first
    with ws.engine.begin() as conn:  # a transaction that only reads
        conn.execute(select(t.customers.c.id)).all()
    assert version() == after_import
    with ws.engine.begin() as conn:
        user = add_user(conn, ws.company_id, "ana@example.com", "read-only", "a-long-password", now)
    with ws.engine.begin() as conn:
        token = start_session(conn, user, now, None, None)
    signed_in = version()
    with ws.engine.begin() as conn:
        session = find_session(conn, token, now)
        assert session is not None
        seen(conn, session, now.replace(hour=10))
    assert version() == signed_in
    with ws.engine.connect() as conn:  # rolled back: nothing changed
        conn.execute(update(t.customers).values(name="Nobody"))
        conn.rollback()
    assert version() == signed_in
    with ws.engine.begin() as conn:
        conn.execute(update(t.customers).values(name="Acme Works"))
    assert version() == signed_in + 1


def test_opening_a_workspace_writes_only_a_changed_company_name(
    ws: Workspace, reopen: Callable[[Workspace], Workspace]
) -> None:
    def version() -> int:
        with ws.engine.connect() as conn:
            return data_version(conn)

    before = version()
    reopen(ws)  # the company's row is as cobro.yaml says: nothing is written
    assert version() == before
    cfg = ws.root / "cobro.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("Distribuciones Demo S.L.", "Demo Dos S.L."),
        encoding="utf-8",
    )
    reopen(ws)
    assert version() == before + 1
    with ws.engine.connect() as conn:
        name = conn.execute(select(t.companies.c.name).where(t.companies.c.id == ws.company_id))
        assert name.scalar_one() == "Demo Dos S.L."


def test_on_postgresql_the_count_travels_with_the_commit(ws: Workspace, tmp_path: Path) -> None:
    """One message to the server moves ``data_version`` and commits (the writes and the
    count land together); the driver sends no COMMIT of its own after it."""
    if ws.engine.dialect.name != "postgresql":
        pytest.skip("the messages of PostgreSQL's protocol")
    from psycopg import pq

    with ws.engine.connect() as conn:
        before = data_version(conn)
        conn.rollback()
    trace = tmp_path / "protocol.txt"
    with ws.engine.connect() as conn, trace.open("w") as out:
        pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            with conn.begin():
                conn.execute(
                    update(t.companies)
                    .where(t.companies.c.id == ws.company_id)
                    .values(name="Renamed Co")
                )
        finally:
            pgconn.untrace()
    sent = [line for line in trace.read_text().splitlines() if line.startswith("F")]
    commits = [line for line in sent if "COMMIT" in line]
    assert len(commits) == 1, sent
    assert "UPDATE data_version SET version = version + 1 WHERE id = 1; COMMIT" in commits[0]
    with ws.engine.connect() as conn:  # another connection sees the write and the count
        assert data_version(conn) == before + 1
        name = conn.execute(
            select(t.companies.c.name).where(t.companies.c.id == ws.company_id)
        ).scalar_one()
        assert name == "Renamed Co"
