"""Integration fixtures: every database Cobro supports, and a real SMTP server.

``db_url`` runs a test once on SQLite (a file in the test's directory) and once on
PostgreSQL (a fresh database per test, named at random, so that pytest-xdist workers
sharing a server never meet). The PostgreSQL server is found once per session (with
pytest-xdist, once per worker), in this order:

1. the URL in ``COBRO_TEST_POSTGRES_URL`` (a superuser connection: databases are
   created and dropped on it);
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if it accepts a connection;
3. a private server started with pytest-postgresql's executor from the binaries
   under ``/usr/lib/postgresql/*/bin`` (with pytest-xdist, each worker starts its own).

When none of them works the PostgreSQL tests are skipped, except in CI
(``CI=true``), where nothing may be skipped: they fail with the reason.

``smtp_server`` is an aiosmtpd server on 127.0.0.1 that keeps every message it
receives and can be told to refuse given recipients with a given reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from cobro.workspace import Workspace, open_workspace
from local_smtp import LocalSMTP
from migrated import copy_sqlite, pg_template

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTER_CONFIG = Path(str(resources.files("cobro") / "starter" / "cobro.yaml"))


def top_level_block(text: str, key: str) -> str | None:
    """The text of the top-level YAML mapping entry ``key:`` (up to the next top-level key)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(f"{key}:"):
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#-"):
                end += 1
            return "".join(lines[i:end])
    return None


def _without(*keys: str) -> dict[str, str]:
    text = STARTER_CONFIG.read_text(encoding="utf-8")
    return {block: "" for key in keys if (block := top_level_block(text, key))}


# The tests exercise the collection policies; the starter's scheduled actions (monthly
# notes, statements, staff tasks on given days of the month) would add messages of their
# own to every run, so the integration workspaces leave them out.
WITHOUT_ACTIONS = _without("actions")


# --------------------------------------------------------------------------- PostgreSQL


def _libpq_url(url: str) -> str:
    """``url`` as libpq understands it (no SQLAlchemy ``+driver`` suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _accepts_connection(url: str) -> str | None:
    """None when ``url`` accepts a connection, else why not."""
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{make_url(url).render_as_string(hide_password=True)}: {exc}".strip()
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_private_server(tmp: Path) -> tuple[Any, str]:
    """A throw-away PostgreSQL server from the newest local binaries: (executor, url)."""
    try:
        from pytest_postgresql.executors import PostgreSQLExecutor
    except ImportError:  # pytest-postgresql before 7
        from pytest_postgresql.executor import PostgreSQLExecutor

    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if not candidates:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        raise RuntimeError("pg_ctl refuses to run as root; run the tests as another user")
    port = _free_port()
    socket_dir = tmp / "sockets"
    socket_dir.mkdir()
    executor = PostgreSQLExecutor(
        executable=candidates[-1],
        host="127.0.0.1",
        port=port,
        datadir=str(tmp / "data"),
        unixsocketdir=str(socket_dir),
        logfile=str(tmp / "postgresql.log"),
        startparams="-w",
        dbname="postgres",
    )
    try:
        executor.start()
    except BaseException:
        with contextlib.suppress(Exception):  # keep the reason it did not start
            executor.stop()
        raise
    return executor, f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases on."""
    problems: list[str] = []
    executor = None
    url = os.environ.get("COBRO_TEST_POSTGRES_URL")
    if url:
        problem = _accepts_connection(url)
        if problem:
            problems.append(f"COBRO_TEST_POSTGRES_URL: {problem}")
            url = None
    else:
        problem = _accepts_connection(DEFAULT_POSTGRES)
        if problem is None:
            url = DEFAULT_POSTGRES
        else:
            problems.append(problem)
            try:
                executor, url = _start_private_server(tmp_path_factory.mktemp("postgres"))
            except Exception as exc:  # any failure to start just means "not available"
                problems.append(f"private server (pytest-postgresql): {exc!r}")
                url = None
    if url is None:
        message = "no PostgreSQL server for the integration tests:\n  " + "\n  ".join(problems)
        message += (
            "\nSet COBRO_TEST_POSTGRES_URL to a superuser URL, or run PostgreSQL on"
            " 127.0.0.1:5432 with trust authentication for 'postgres'."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield url
    finally:
        if executor is not None:
            executor.stop()


# A test database's commits do not wait for the disk (the server's own safety is not what
# the tests are about; a commit is as visible and as ordered as with the default).
NO_WAIT_FOR_DISK = 'ALTER DATABASE "{name}" SET synchronous_commit = off'


def _database(request: pytest.FixtureRequest, tmp_path: Path, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "cobro-test.db"
        if migrated:
            copy_sqlite(path)
        yield f"sqlite:///{path}"
        return
    server: str = request.getfixturevalue("postgres_server")
    name = f"cobro_t_{uuid.uuid4().hex[:16]}"
    admin = _libpq_url(server)
    template = f' TEMPLATE "{pg_template(server)}"' if migrated else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{template}')
        conn.execute(NO_WAIT_FOR_DISK.format(name=name))
    try:
        yield _with_database(server, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL at the newest schema: an SQLite file, or a fresh PostgreSQL
    database dropped afterwards (both copies of a template migrated once, ``migrated``)."""
    yield from _database(request, tmp_path, migrated=True)


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with nothing in it, for the tests of the migrations themselves."""
    yield from _database(request, tmp_path, migrated=False)


@pytest.fixture
def is_postgres(db_url: str) -> bool:
    return db_url.startswith("postgresql")


# --------------------------------------------------------------------------- workspaces


@pytest.fixture
def make_ws(make_workspace: Callable[..., Workspace], db_url: str) -> Callable[..., Workspace]:
    """``make_ws(name, replace={...})``: a starter workspace (no scheduled actions) on the
    test's database; mail is caught in its ``mail/`` directory."""

    def _make(name: str = "ws", replace: dict[str, str] | None = None) -> Workspace:
        return make_workspace(name, replace={**WITHOUT_ACTIONS, **(replace or {})}, db_url=db_url)

    return _make


@pytest.fixture
def ws(make_ws: Callable[..., Workspace]) -> Workspace:
    return make_ws()


@pytest.fixture
def reopen() -> Iterator[Callable[[Workspace], Workspace]]:
    """Open another ``Workspace`` on the same directory and database (closed afterwards)."""
    opened: list[Workspace] = []

    def _reopen(ws: Workspace) -> Workspace:
        other = open_workspace(ws.root, ws.engine.url.render_as_string(hide_password=False))
        opened.append(other)
        return other

    yield _reopen
    for other in opened:
        other.close()


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Received:
    """One SMTP transaction that reached DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=default_policy).parsebytes(self.data)
        assert isinstance(msg, EmailMessage)
        return msg


class RecordingHandler:
    """Keeps every message; answers chosen recipients with a chosen reply.

    ``refuse("a@x", "451 4.3.0 try later", at="RCPT", times=1)`` refuses the next
    RCPT TO for that address once; ``times=None`` refuses it until ``clear()``.
    Messages refused at DATA are kept in ``refused``.

    ``hold(2)`` answers no DATA until two messages have reached it (a rendezvous of two
    senders: each has handed its message over before either hears the answer).
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused: list[Received] = []
        self._rules: dict[tuple[str, str], list[Any]] = {}
        self._held = 0  # how many messages the rendezvous still waits for
        self._timeout = 0.0
        self._released: asyncio.Event | None = None

    def hold(self, parties: int, *, timeout: float = 30.0) -> None:
        """Answer the first ``parties`` messages only once all of them have reached DATA
        (or ``timeout`` seconds after the first one arrived)."""
        self._held = parties
        self._timeout = timeout
        self._released = None

    def refuse(self, address: str, reply: str, *, at: str = "RCPT", times: int | None = None):
        assert at in ("RCPT", "DATA"), at
        self._rules[(at, address.lower())] = [reply, times]

    def clear(self) -> None:
        self._rules.clear()

    def _take(self, stage: str, address: str) -> str | None:
        rule = self._rules.get((stage, address.lower()))
        if rule is None:
            return None
        reply, times = rule
        if times is not None:
            if times <= 0:
                return None
            rule[1] = times - 1
        return str(reply)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._take("RCPT", address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        item = Received(
            envelope.mail_from,
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content),
        )
        if self._held:
            if self._released is None:
                self._released = asyncio.Event()
            self._held -= 1
            if not self._held:
                self._released.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self._timeout)
        for address in envelope.rcpt_tos:
            reply = self._take("DATA", address)
            if reply is not None:
                self.refused.append(item)
                return reply
        self.received.append(item)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def replace(self) -> dict[str, str]:
        """``make_workspace(replace=...)`` text pointing the starter config at this server."""
        return {"host: capture": f"host: {self.host}", "port: 587": f"port: {self.port}"}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    controller = LocalSMTP(handler)
    controller.start()  # returns once the server answers
    try:
        yield SmtpServer(controller.hostname, controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_ws(make_ws: Callable[..., Workspace], smtp_server: SmtpServer) -> Workspace:
    """The starter workspace on the test's database, sending to ``smtp_server``."""
    return make_ws(replace=smtp_server.replace)


# --------------------------------------------------------------------------- broker


DEFAULT_BROKERS = ("amqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/15")


def _broker_answers(url: str) -> str | None:
    """None when the broker at ``url`` accepts a connection, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The URL of a Celery broker: ``COBRO_TEST_BROKER_URL``, else RabbitMQ on
    127.0.0.1:5672, else Redis on 127.0.0.1:6379. None answering: the tests that need one
    are skipped, except in CI (``CI=true``), where they fail with the reason."""
    candidates = (
        [os.environ["COBRO_TEST_BROKER_URL"]]
        if os.environ.get("COBRO_TEST_BROKER_URL")
        else list(DEFAULT_BROKERS)
    )
    problems: list[str] = []
    for url in candidates:
        problem = _broker_answers(url)
        if problem is None:
            return url
        problems.append(problem)
    message = "no Celery broker for the worker tests:\n  " + "\n  ".join(problems)
    message += "\nSet COBRO_TEST_BROKER_URL, or run RabbitMQ on 5672 or Redis on 6379."
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for a whole test module, dropped afterwards."""
    name = f"cobro_m_{uuid.uuid4().hex[:16]}"
    admin = _libpq_url(postgres_server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(NO_WAIT_FOR_DISK.format(name=name))
    try:
        yield _with_database(postgres_server, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
