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


def test_a_database_made_by_the_previous_release_is_brought_up_to_date_with_its_rows(
    empty_db_url: str,
) -> None:
    """A workspace at revision 0005 (the schema before dunning levels, evidence messages,
    leases and credit notes), with a payment allocated to an invoice: the migrations
    rebuild tables that others reference, and every row and reference survives."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import func, select, text

    from cobro.store.db import make_engine, migrate

    engine = make_engine(empty_db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", "cobro.store:migrations")
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
        now = "2026-01-01 09:00:00"
        with engine.begin() as conn:
            for sql in (
                "INSERT INTO companies (id, slug, name, created_at) VALUES (1, 'co', 'Co', :now)",
                "INSERT INTO customers (id, company_id, external_id, name, created_at, updated_at)"
                " VALUES (1, 1, 'C1', 'Uno', :now, :now)",
                "INSERT INTO receivables (id, company_id, customer_id, external_id, number,"
                " due_on, currency, amount_minor, balance_minor, updated_at)"
                " VALUES (1, 1, 1, 'F1', 'F1', '2026-01-10', 'EUR', 1000, 400, :now)",
                "INSERT INTO payments (id, company_id, customer_id, external_id, receivable_id,"
                " paid_on, currency, amount_minor, unallocated_minor, created_at)"
                " VALUES (1, 1, 1, 'P1', 1, '2026-01-05', 'EUR', 600, 0, :now)",
                "INSERT INTO payment_allocations (id, payment_id, receivable_id, amount_minor)"
                " VALUES (1, 1, 1, 600)",
            ):
                conn.execute(text(sql), {"now": now})

        migrate(engine)

        with engine.connect() as conn:
            for table in (t.companies, t.customers, t.receivables, t.payments, t.allocations):
                assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 1
            assert conn.execute(select(t.allocations.c.payment_id)).scalar_one() == 1
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").first() is None
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, t.metadata) == []
    finally:
        engine.dispose()
