"""Engines and schema migrations: the one place database connections are built."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Executable, Table, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def insert_ignoring(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can skip rows violating a unique key (``on_conflict_do_nothing``)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database {dialect!r} is not supported")


def lock_company(conn: Connection, company_id: int) -> None:
    """Serialise one company's writers (planning, evidence, events) until commit.

    ``FOR NO KEY UPDATE`` on PostgreSQL: it does not conflict with the shared
    locks that foreign-key checks take on the company row, so a transaction
    that already inserted a row pointing at the company cannot deadlock with
    another one. SQLite needs nothing: BEGIN IMMEDIATE serialises writers.
    """
    from cobro.store.tables import companies

    conn.execute(
        select(companies.c.id).where(companies.c.id == company_id).with_for_update(key_share=True)
    )


def like_literal(text: str) -> str:
    """``text`` for a LIKE pattern with ``escape="/"``: ``%`` and ``_`` match themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def counted(conn: Connection, statement: Executable) -> int:
    """Execute ``statement`` and return how many rows it wrote (INSERT ... SELECT too)."""
    result = conn.execute(statement.execution_options(preserve_rowcount=True))
    return max(int(result.rowcount), 0)


T = TypeVar("T")


def connection_lost(exc: BaseException) -> bool:
    """True for errors a new connection may cure: a dropped or refused connection, a
    server restarting, a busy SQLite file."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


def retrying(
    work: Callable[[], T],
    *,
    tries: int = 8,
    first_wait_s: float = 0.05,
    max_wait_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work()``, again after a lost connection (waits doubling from ``first_wait_s`` up to
    ``max_wait_s``), at most ``tries`` times. ``work`` must be one whole transaction, so that
    running it again after a failure is safe."""
    wait = first_wait_s
    for attempt in range(1, tries + 1):
        try:
            return work()
        except Exception as exc:
            if attempt == tries or not connection_lost(exc):
                raise
        sleep(wait)
        wait = min(wait * 2, max_wait_s)
    raise AssertionError("unreachable")


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with Cobro's connection settings."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy issue BEGIN so write transactions take the lock up front.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _rec: ConnectionPoolEntry) -> None:
            dbapi_conn.isolation_level = None

        return engine
    # Plans made while a table was small must not stick: no server-side prepared statements.
    return create_engine(url, pool_pre_ping=True, connect_args={"prepare_threshold": None})


_MIGRATING = threading.Lock()  # Alembic's upgrade keeps process-wide state
_MIGRATION_LOCK_KEY = 0x636F62726F  # "cobro": one migration at a time across processes


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (safe from several threads or processes)."""
    cfg = Config()
    cfg.set_main_option("script_location", "cobro.store:migrations")
    with _MIGRATING, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
