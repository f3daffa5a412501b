"""Engines and schema migrations: the one place database connections are built."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Executable,
    MetaData,
    Select,
    String,
    Table,
    UpdateBase,
    bindparam,
    column,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from cobro.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

SUPPORTED_URLS = "sqlite:///PATH or postgresql://USER@HOST/DATABASE"
CONNECT_TIMEOUT_S = 10  # PostgreSQL, unless the URL sets connect_timeout


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _sqlite_query_only(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_conn.execute("PRAGMA query_only=ON")
    # Many reading connections are kept open (READING_POOL): each gets a smaller page
    # cache than a writer's, the operating system's file cache serves the rest.
    dbapi_conn.execute("PRAGMA cache_size=-16384")


@contextmanager
def page_cache(conn: Connection, kib: int) -> Iterator[None]:
    """SQLite: a page cache of ``kib`` KiB for this connection while the block runs, then
    the connection's own again (every connection gets 64 MiB, ``_sqlite_pragmas``). For a
    long transaction that writes much more than that: its pages would otherwise be read
    back from the write-ahead log. PostgreSQL: nothing (its shared buffers are the
    server's)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size=-{int(kib)}")
    try:
        yield
    finally:
        if not conn.closed and not conn.invalidated:
            conn.exec_driver_sql(f"PRAGMA cache_size={before}")


def temporary_table(name: str, *columns: Column[Any]) -> Table:
    """A table of this transaction's connection alone (``CREATE TEMPORARY TABLE``), on
    a metadata of its own: the planner's scratch tables."""
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def insert_ignoring(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can skip rows violating a unique key (``on_conflict_do_nothing``)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"database {dialect!r} is not supported")


def lock_company(conn: Connection, company_id: int) -> None:
    """Serialise one company's writers (planning, evidence, events) until commit.

    ``FOR NO KEY UPDATE`` on PostgreSQL: it does not conflict with the shared
    locks that foreign-key checks take on the company row, so a transaction
    that already inserted a row pointing at the company cannot deadlock with
    another one. SQLite needs nothing: BEGIN IMMEDIATE serialises writers.
    """
    if conn.dialect.name == "sqlite":
        return
    conn.execute(_lock_company(), {"company_id": company_id})


@cache
def _lock_company() -> Select[tuple[int]]:
    from cobro.store.tables import companies

    c = companies.c
    return select(c.id).where(c.id == bindparam("company_id")).with_for_update(key_share=True)


def like_literal(text: str) -> str:
    """``text`` for a LIKE pattern with ``escape="/"``: ``%`` and ``_`` match themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def execute_rows(
    conn: Connection, statement: UpdateBase, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``statement`` once for each row of ``rows``, in one executemany; each row holds the
    values of the bind parameters ``names``, in that order (other parameters keep the
    values written in the statement).

    The same as ``conn.execute(statement, [dict(zip(names, row)) for row in rows])``, but
    on SQLite each column's values are converted at once by its type's processor, where
    SQLAlchemy builds and converts a dictionary per row (most of the time of a write of
    thousands of rows)."""
    if not rows:
        return
    dialect = conn.dialect
    if dialect.paramstyle != "qmark":
        conn.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])
        return
    compiled = _compiled(statement, dialect)
    order = compiled.positiontup or []
    columns = list(zip(*rows, strict=True))
    converted: list[Sequence[Any]] = []
    for name in order:
        kind = compiled.binds[name].type
        process = kind.dialect_impl(dialect).bind_processor(dialect)
        values: Sequence[Any]
        if name in names:
            values = columns[names.index(name)]
        elif compiled.binds[name].required:
            raise ValueError(f"no value for the bind parameter {name!r}")
        else:  # a value written in the statement itself: the same for every row
            values = [compiled.params[name]] * len(rows)
        converted.append(values if process is None else _each(process, values))
    conn.exec_driver_sql(compiled.string, list(zip(*converted, strict=True)))


@lru_cache(maxsize=64)
def _compiled(statement: UpdateBase, dialect: Any) -> Any:
    """``statement`` compiled for ``dialect`` (once for the statements built once)."""
    return statement.compile(dialect=dialect)


def _element(kind: Any) -> Any:
    """An array's element type: text without its length, since a cast to ``VARCHAR(n)[]``
    cuts longer values where a single value's ``VARCHAR(n)`` column refuses them."""
    return String() if isinstance(kind, String) and kind.length is not None else kind


def _unnested(table: Table, names: Sequence[str]) -> Any:
    """PostgreSQL: rows as a table in one statement, an array a column taken apart by
    ``unnest``, typed as ``table``'s columns ``names``: the array of ``names[i]`` is the
    bind parameter ``rows_i`` (``_arrays``)."""
    from sqlalchemy.dialects.postgresql import ARRAY  # loaded on PostgreSQL only

    arrays = [
        bindparam(f"rows_{i}", type_=ARRAY(_element(table.c[name].type)))
        for i, name in enumerate(names)
    ]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived()
    )


def _arrays(rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """The bind parameters of ``_unnested`` for ``rows``: a list per column."""
    return {f"rows_{i}": list(values) for i, values in enumerate(zip(*rows, strict=True))}


# The statements of ``insert_rows`` and ``update_rows``, built once for each table, columns
# and dialect: building one and computing its cache key cost about a millisecond, more than
# executing it for a few rows. (Bounded: planning writes temporary tables made per run.)
@lru_cache(maxsize=64)
def _insert_statement(
    table: Table, names: tuple[str, ...], fixed: tuple[str, ...], postgresql: bool
) -> Any:
    values = {k: bindparam(f"f_{k}", type_=table.c[k].type) for k in fixed}
    if not postgresql:
        return table.insert().values({**{k: bindparam(f"v_{k}") for k in names}, **values})
    src = _unnested(table, names)
    return table.insert().from_select(
        [*names, *fixed], select(*(src.c[k] for k in names), *values.values())
    )


@lru_cache(maxsize=64)
def _update_statement(
    table: Table,
    keys: tuple[str, ...],
    names: tuple[str, ...],
    fixed: tuple[str, ...],
    postgresql: bool,
) -> Any:
    # ``+ 0``: the rows are found by their key, never through an index led by the company.
    company = table.c.company_id + 0 == bindparam("f_company", type_=table.c.company_id.type)
    values = {k: bindparam(f"f_{k}", type_=table.c[k].type) for k in fixed}
    if not postgresql:
        return (
            update(table)
            .where(*(table.c[k] == bindparam(f"k_{k}") for k in keys), company)
            .values({**{k: bindparam(f"v_{k}") for k in names}, **values})
        )
    src = _unnested(table, [*keys, *names])
    return (
        update(table)
        .where(*(table.c[k] == src.c[k] for k in keys), company)
        .values({**{k: src.c[k] for k in names}, **values})
    )


# PostgreSQL's cost of a random page read, relative to a sequential one, in a planning
# transaction: its default, 4, is made for spinning disks; 1.1 is the usual figure for SSDs
# and for data held in memory.
RANDOM_PAGE_COST = 1.1


def favour_indexes(conn: Connection) -> None:
    """PostgreSQL: for the rest of the transaction, a random page read costs
    ``RANDOM_PAGE_COST`` sequential ones, unless the server is set lower already. With the
    default cost, finding the day's debtors hashed the whole table of levels once for each
    phase where a few thousand index look-ups do (0.22 s against 0.09 s of a 0.96 s plan)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "SELECT set_config('random_page_cost', :cost, true) "
                "WHERE CAST(current_setting('random_page_cost') AS float) > CAST(:cost AS float)"
            ),
            {"cost": str(RANDOM_PAGE_COST)},
        )


def insert_rows(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    **fixed: Any,
) -> None:
    """Insert ``rows`` (values of the columns ``names``, in that order) into ``table``, with
    the values ``fixed`` the same in every row. On PostgreSQL in one ``INSERT ... SELECT``
    from arrays, where a statement a row (even pipelined) costs some 25 µs each on the
    server; elsewhere in one executemany (``execute_rows``)."""
    if not rows:
        return
    postgresql = conn.dialect.name == "postgresql"
    statement = _insert_statement(table, tuple(names), tuple(fixed), postgresql)
    constants = {f"f_{k}": v for k, v in fixed.items()}
    if not postgresql:
        execute_rows(
            conn,
            statement,
            [*(f"v_{k}" for k in names), *constants],
            [(*row, *constants.values()) for row in rows],
        )
        return
    conn.execute(statement, {**_arrays(rows), **constants})


def update_rows(
    conn: Connection,
    table: Table,
    company_id: int,
    key: str | Sequence[str],
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    **fixed: Any,
) -> None:
    """Update the company's rows of ``table`` found by the column ``key`` (or the columns,
    when ``key`` is a sequence of names): each of ``rows`` holds the key's values, then the
    new values of the columns ``names``; the values ``fixed`` are the same for every row.
    One ``UPDATE ... FROM`` arrays on PostgreSQL, one executemany elsewhere (as
    ``insert_rows``). A key of another company's row changes nothing."""
    if not rows:
        return
    keys = (key,) if isinstance(key, str) else tuple(key)
    postgresql = conn.dialect.name == "postgresql"
    statement = _update_statement(table, keys, tuple(names), tuple(fixed), postgresql)
    constants = {"f_company": company_id, **{f"f_{k}": v for k, v in fixed.items()}}
    if not postgresql:
        execute_rows(
            conn,
            statement,
            [*(f"k_{k}" for k in keys), *(f"v_{k}" for k in names), *constants],
            [(*row, *constants.values()) for row in rows],
        )
        return
    conn.execute(statement, {**_arrays(rows), **constants})


def _each(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """``process`` of each value, once per distinct value (a column written by a run
    holds few: its day, its time)."""
    done: dict[Any, Any] = {}
    try:
        return [done[v] if v in done else done.setdefault(v, process(v)) for v in values]
    except TypeError:  # values that cannot be dictionary keys
        return [process(v) for v in values]


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


def shown_url(url: str) -> str:
    """``url`` as it may be printed: its password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(?<=://)[^@/]*@", "***@", url)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs; refuse a URL Cobro cannot use."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"database URL {shown_url(url)!r} is not a URL; use {SUPPORTED_URLS}"
        ) from None
    backend, _, driver = u.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        u = u.set(drivername="postgresql+psycopg")
    elif not (backend == "sqlite" and driver in ("", "pysqlite")):
        raise DatabaseUnavailable(
            f"database URL {shown_url(url)!r}: Cobro does not run on {u.drivername!r}; "
            f"use {SUPPORTED_URLS}"
        )
    return u.render_as_string(hide_password=False)


def _create_private_file(database: str | None) -> None:
    """Create a SQLite database file that does not exist yet readable by its owner only
    (an empty file is an empty database; SQLite gives its -wal and -shm files the same
    permissions)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the database file {Path(database).resolve()}: {exc.strerror}"
        ) from None
    os.close(fd)


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Report a database that cannot be reached or opened as ``DatabaseUnavailable``,
    on one line, the URL's password masked."""
    try:
        yield
    except DBAPIError as exc:
        reason = " ".join(str(exc.orig if exc.orig is not None else exc).split())
        raise DatabaseUnavailable(f"cannot open the database {shown_url(url)}: {reason}") from exc


# Connections a reading engine keeps open: one per thread the web server runs blocking
# work in (anyio's default limit, 40), so that a busy server never opens and closes a
# connection per request (an overflow connection is closed when given back).
READING_POOL = 40


def make_engine(url: str, *, reads_only: bool = False) -> Engine:
    """An engine for ``url`` with Cobro's connection settings; a SQLite file is created
    readable by its owner only. On SQLite every transaction takes the write lock up front
    (``BEGIN IMMEDIATE``), except on an engine made ``reads_only``: its transactions read a
    snapshot beside the writers (WAL) and cannot write, which is what concurrent web
    requests need."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        _create_private_file(make_url(url).database)
        pool: dict[str, Any] = {"pool_size": READING_POOL} if reads_only else {}
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        if reads_only:
            event.listen(engine, "connect", _sqlite_query_only)
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        else:
            # Let SQLAlchemy issue BEGIN so write transactions take the lock up front.
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _rec: ConnectionPoolEntry) -> None:
            dbapi_conn.isolation_level = None

        return engine
    # Plans made while a table was small must not stick: no server-side prepared statements.
    connect_args: dict[str, Any] = {"prepare_threshold": None}
    if "connect_timeout" not in make_url(url).query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


_WRITE = re.compile(
    r"\s*(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)"
    r"|\s*(?:CREATE|ALTER|DROP|TRUNCATE|COPY|MERGE)\b"
    r"|\s*WITH\b.*\b(?:INSERT|UPDATE|DELETE)\b",
    re.IGNORECASE | re.DOTALL,
)
# What staff and API clients' requests write about themselves (when a session or a key
# was last used): it changes no figure, so it does not move ``data_version``.
UNCOUNTED = frozenset({"staff_sessions", "api_keys", "data_version"})


_COUNT_CHANGE = "UPDATE data_version SET version = version + 1 WHERE id = 1"
# PostgreSQL: the update and the COMMIT in one message (the simple query protocol runs both,
# the COMMIT only if the update succeeded), where each would wait for the server's answer;
# the driver then finds the transaction over, and its own commit sends nothing.
_COUNT_AND_COMMIT = f"{_COUNT_CHANGE}; COMMIT"


def count_changes(engine: Engine) -> None:
    """Move ``data_version`` on in every transaction of ``engine`` that wrote something,
    just before it commits (so a reader sees the new number with the new data, never
    before it). Writes are known from the statements run through SQLAlchemy (a write to
    ``UNCOUNTED`` tables alone does not count). Call once the schema is migrated.

    On PostgreSQL the update is sent with the COMMIT (``_COUNT_AND_COMMIT``): one round
    trip to the server for both."""

    def began(conn: Connection) -> None:
        conn.info["cobro_wrote"] = False

    def ran(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        found = _WRITE.match(statement)
        if found and (found[1] or "").lower() not in UNCOUNTED:
            conn.info["cobro_wrote"] = True

    def committing(conn: Connection) -> None:
        if conn.info.pop("cobro_wrote", True):
            dbapi_conn: Any = conn.connection.dbapi_connection
            cursor = dbapi_conn.cursor()
            statement = _COUNT_AND_COMMIT if conn.dialect.name == "postgresql" else _COUNT_CHANGE
            try:
                cursor.execute(statement)
            except conn.dialect.loaded_dbapi.Error as exc:
                raise driver_error(conn, exc, statement, cursor) from exc
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

    event.listen(engine, "begin", began)
    event.listen(engine, "after_cursor_execute", ran)
    event.listen(engine, "commit", committing)


def driver_error(conn: Connection, exc: Any, statement: str, cursor: Any = None) -> Exception:
    """The driver's error ``exc``, raised by ``statement`` run on ``conn``'s driver
    connection directly, as SQLAlchemy raises a driver's error: so that a connection lost
    there (a server restarting, a terminated backend) is retried like any (``retrying``)."""
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    error: Exception = DBAPIError.instance(
        statement,
        None,
        exc,
        conn.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    return error


def data_version(conn: Connection) -> int:
    """The counter ``count_changes`` moves on: equal numbers, the same data."""
    return int(conn.exec_driver_sql("SELECT version FROM data_version WHERE id = 1").scalar_one())


_MIGRATING = threading.Lock()  # Alembic's upgrade keeps process-wide state
_MIGRATION_LOCK_KEY = 0x636F62726F  # "cobro": one migration at a time across processes


_REVISION = re.compile(r"""^revision\b[^=\n]*=\s*["']([^"']+)["']""", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"""^down_revision\b[^=\n]*=\s*(?:["']([^"']+)["']|None\s*$)""", re.MULTILINE
)


@cache
def head_revision() -> str | None:
    """The newest migration, read from the files of ``migrations/versions`` without
    loading Alembic; None when they are not a plain chain (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for entry in (resources.files("cobro.store") / "migrations" / "versions").iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("__"):
            continue
        source = entry.read_text(encoding="utf-8")
        revision, parent = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or parent is None:
            return None
        revisions.add(revision[1])
        if parent[1]:
            parents.add(parent[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = head_revision()
    if head is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return found == [head]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (safe from several threads or processes).

    A database already at the newest revision is left alone without loading Alembic,
    which keeps every command's start-up short."""
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", "cobro.store:migrations")
    with _MIGRATING, engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite migrations rebuild tables (batch mode) that other tables reference;
            # foreign keys are checked once at the end instead. The pragma only takes
            # effect outside a transaction, hence on the driver connection before BEGIN.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                cfg.attributes["connection"] = conn
                try:
                    command.upgrade(cfg, "head")
                except CommandError as exc:  # e.g. a database made by a newer Cobro
                    raise DatabaseUnavailable(
                        f"the database schema cannot be brought up to date: {exc}"
                    ) from exc
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise DatabaseUnavailable(
                        "the database schema cannot be brought up to date: a migration "
                        "left rows whose references do not hold; nothing was changed"
                    )
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
