"""Exactly once, whatever happens: overlapping senders, kill -9, outages, a stalled server and
a database that drops its connections. Every message is counted at a real SMTP server by
(claim, recipient)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cobro.domain.calendar import send_instant
from cobro.engine.dispatch import DispatchReport
from cobro.engine.requeue import failed_claims, requeue
from cobro.engine.runs import dispatch_due, run_day, watch
from cobro.engine.tasks import list_tasks
from cobro.store import tables as t
from cobro.workspace import Workspace, open_workspace, utcnow
from fakes.twilio import FakeTwilio
from local_smtp import LocalSMTP

from .conftest import Received, RecordingHandler, SmtpServer, _libpq_url
from .support import d, deliveries, load, outbox
from .test_channels import PHONE, gym_with, remind, subscribe, twilio  # noqa: F401 (fixtures)

CONNECTIONS = 4  # the starter's smtp.connections: messages on the wire at once
DAY = d("2025-03-03")  # phase 00 of b2b for invoices due 2025-03-10


# --------------------------------------------------------------------------- the server


class Counting(RecordingHandler):
    """The recording handler, which can also wait for a number of messages, refuse every
    recipient, and call ``on_message`` with the count so far before answering."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()
        self.refuse_all: str | None = None
        self.on_message: Callable[[int], None] | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.refuse_all:
            return self.refuse_all
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await super().handle_DATA(server, session, envelope)
        with self.changed:
            count = len(self.received)
            self.changed.notify_all()
        if self.on_message is not None:
            self.on_message(count)
        return reply

    def wait_for(self, n: int, timeout: float = 60) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= n, timeout)


@pytest.fixture
def server() -> Iterator[tuple[Counting, int]]:
    handler = Counting()
    controller = LocalSMTP(handler)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def smtp_to(port: int, extra: str = "") -> dict[str, str]:
    """``make_ws`` replacements: mail to 127.0.0.1:``port``; ``extra`` YAML at the top level."""
    found = {"host: capture": "host: 127.0.0.1", "port: 587": f"port: {port}"}
    if extra:
        found["default_policy: consumer"] = f"{extra}default_policy: consumer"
    return found


def tally(received: list[Received]) -> Counter[tuple[str, str]]:
    """How many times each (claim, recipient) arrived."""
    return Counter((str(m.message["X-Cobro-Claim"]), rcpt) for m in received for rcpt in m.rcpt_tos)


def duplicates(received: list[Received]) -> int:
    return sum(n - 1 for n in tally(received).values())


def debtors(ws: Workspace, n: int, due_on: date, prefix: str = "C") -> set[str]:
    """``n`` business debtors, one invoice each due ``due_on``; their addresses."""
    load(
        ws,
        "customers",
        *(
            {
                "external_id": f"{prefix}{i}",
                "name": f"Debtor {prefix}{i}",
                "kind": "business",
                "email": f"{prefix.lower()}{i}@debtors.example",
            }
            for i in range(n)
        ),
    )
    load(
        ws,
        "receivables",
        *(
            {
                "external_id": f"{prefix}F{i}",
                "customer": f"{prefix}{i}",
                "due_on": due_on.isoformat(),
                "amount": "100.00",
            }
            for i in range(n)
        ),
    )
    return {f"{prefix.lower()}{i}@debtors.example" for i in range(n)}


def statuses(ws: Workspace) -> Counter[str]:
    return Counter(row.status for row in outbox(ws))


def day_already_due(ws: Workspace) -> date:
    """The latest day whose send time has passed (a cron job running after it)."""
    company = ws.config.company
    now = utcnow()
    today = now.astimezone(ZoneInfo(company.timezone)).date()
    if send_instant(today, company.send_time, company.timezone) <= now:
        return today
    return today - timedelta(days=1)


class Watcher:
    """``watch`` in a thread, as ``cobro dispatch --watch`` runs it."""

    def __init__(self, ws: Workspace) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.report = DispatchReport()
        self.thread = threading.Thread(target=self._run, args=(ws,), daemon=True)
        self.thread.start()

    def _run(self, ws: Workspace) -> None:
        try:
            self.report = watch(ws, self.stop, 0.02, on_error=self.errors.append)
        except BaseException as exc:
            self.failure = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert self.failure is None, repr(self.failure)


# --------------------------------------------------------------------------- overlaps


def test_watch_and_a_run_started_after_the_send_time_send_each_claim_once(
    make_ws: Callable[..., Workspace],
    reopen: Callable[[Workspace], Workspace],
    server: tuple[Counting, int],
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    day = day_already_due(ws)
    addresses = debtors(ws, 60, day + timedelta(days=7))
    watcher = Watcher(reopen(ws))
    try:
        report = run_day(ws, day)  # as of the day's send time, hours ago perhaps
        assert handler.wait_for(60)
    finally:
        watcher.close()

    assert report.planned == 60
    assert duplicates(handler.received) == 0
    assert {r for m in handler.received for r in m.rcpt_tos} == addresses
    assert statuses(ws) == {"sent": 60}
    assert len(deliveries(ws)) == 60
    assert report.sent + watcher.report.sent == 60


def test_a_run_for_a_past_date_and_a_dispatch_at_the_same_time_send_each_claim_once(
    make_ws: Callable[..., Workspace],
    reopen: Callable[[Workspace], Workspace],
    server: tuple[Counting, int],
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    addresses = debtors(ws, 60, DAY + timedelta(days=7))
    other = reopen(ws)
    reports: list[DispatchReport] = []
    started = threading.Event()

    def dispatch_while_running() -> None:
        started.wait(10)
        while len(handler.received) < 60:
            reports.append(dispatch_due(other, utcnow()))

    thread = threading.Thread(target=dispatch_while_running, daemon=True)
    thread.start()
    handler.on_message = lambda _n: started.set()
    run = run_day(ws, DAY)
    thread.join(60)

    assert duplicates(handler.received) == 0
    assert {r for m in handler.received for r in m.rcpt_tos} == addresses
    assert statuses(ws) == {"sent": 60}
    assert len(deliveries(ws)) == 60
    assert run.sent + sum(r.sent for r in reports) == 60


def test_two_watchers_send_each_claim_once(
    make_ws: Callable[..., Workspace],
    reopen: Callable[[Workspace], Workspace],
    server: tuple[Counting, int],
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    addresses = debtors(ws, 80, DAY + timedelta(days=7))
    run_day(ws, DAY, as_of=datetime(2025, 3, 3, 6, 0, tzinfo=UTC))  # planned, not yet due
    first, second = Watcher(reopen(ws)), Watcher(reopen(ws))
    try:
        assert handler.wait_for(80)
    finally:
        first.close()
        second.close()

    assert duplicates(handler.received) == 0
    assert {r for m in handler.received for r in m.rcpt_tos} == addresses
    assert statuses(ws) == {"sent": 80}
    assert first.report.sent + second.report.sent == 80
    assert len(deliveries(ws)) == 80


# --------------------------------------------------------------------------- kill -9


def _child(root: str, url: str, command: str) -> None:
    """The killed process: ``cobro run --date DAY`` or ``cobro dispatch``, in-process."""
    ws = open_workspace(root, url)  # type: ignore[arg-type]
    if command == "run":
        run_day(ws, DAY)
    else:
        dispatch_due(ws, utcnow())
    os._exit(0)  # no clean-up of what the parent opened before the fork


TRIALS = 13  # per command and database: 52 in all
PER_TRIAL = 24  # debtors, each with one claim of one message


@pytest.mark.parametrize("command", ["run", "dispatch"])
def test_kill_9_at_random_moments_loses_nothing_and_resends_at_most_one_message_per_connection(
    make_ws: Callable[..., Workspace],
    server: tuple[Counting, int],
    command: str,
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    fork = multiprocessing.get_context("fork")
    url = ws.engine.url.render_as_string(hide_password=False)
    kills = 0
    for n in range(TRIALS):
        # Each trial has debtors of its own; the earlier trials' claims are all sent.
        addresses = debtors(ws, PER_TRIAL, DAY + timedelta(days=7), prefix=f"T{n}X")
        if command == "dispatch":  # planned by an earlier run, not sent yet
            run_day(ws, DAY, as_of=datetime(2025, 3, 3, 6, 0, tzinfo=UTC))
        handler.received.clear()
        child = fork.Process(target=_child, args=(str(ws.root), url, command))
        at_message = rng.randint(1, PER_TRIAL) if rng.random() < 0.7 else None

        def kill(count: int, at: int | None = at_message, p: Any = child) -> None:
            if count == at and p.pid:
                os.kill(p.pid, signal.SIGKILL)  # before the server says 250

        handler.on_message = kill
        child.start()
        timer = None
        if at_message is None:  # a moment anywhere in the run, planning included
            timer = threading.Timer(rng.uniform(0, 0.6), os.kill, (child.pid, signal.SIGKILL))
            timer.start()
        child.join(60)
        if timer is not None:
            timer.cancel()
        handler.on_message = None
        killed = child.exitcode == -signal.SIGKILL
        kills += killed
        context = f"seed {seed}, trial {n}, killed {killed}"
        # The operator runs the same command again.
        if command == "run":
            run_day(ws, DAY)
        else:
            dispatch_due(ws, utcnow())
        assert statuses(ws) == {"sent": PER_TRIAL * (n + 1)}, context
        got = handler.received
        assert {r for m in got for r in m.rcpt_tos} == addresses, context  # no miss
        assert duplicates(got) <= (CONNECTIONS if killed else 0), context
        by_key: dict[tuple[str, str], set[str]] = {}
        for m in got:
            key = (str(m.message["X-Cobro-Claim"]), m.rcpt_tos[0])
            by_key.setdefault(key, set()).add(str(m.message["Message-ID"]))
        assert all(len(ids) == 1 for ids in by_key.values()), context  # same Message-ID
    assert kills >= TRIALS // 2, f"seed {seed}: only {kills} of {TRIALS} trials were killed"


# --------------------------------------------------------------------------- outages


def test_a_421_outage_of_four_hours_delays_the_claims_and_then_each_is_delivered_once(
    make_ws: Callable[..., Workspace], server: tuple[Counting, int]
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    addresses = debtors(ws, 20, DAY + timedelta(days=7))
    handler.refuse_all = "421 4.3.2 service not available"
    start = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)

    first = run_day(ws, DAY)
    assert (first.sent, first.failed, first.retrying) == (0, 0, 20)

    passes = 0
    while statuses(ws).get("planned"):
        at = min(row.next_attempt_at for row in outbox(ws) if row.status == "planned")
        if at >= start + timedelta(hours=4):
            handler.refuse_all = None  # the server is back
        report = dispatch_due(ws, at)
        assert report.failed == 0
        passes += 1
        assert passes < 30

    assert statuses(ws) == {"sent": 20}
    assert duplicates(handler.received) == 0
    assert {r for m in handler.received for r in m.rcpt_tos} == addresses
    # The circuit breaker kept each pass from trying every message against the dead server:
    # the messages on the wire when it opened, and those already past it, not all 20.
    failed_tries = [x for x in deliveries(ws) if x.status == "failed"]
    assert len(failed_tries) <= (2 * CONNECTIONS - 1) * (passes + 1) < 20 * (passes + 1)


def test_a_550_fails_that_claim_names_its_debtor_opens_a_task_and_requeue_sends_it(
    make_ws: Callable[..., Workspace], server: tuple[Counting, int]
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    debtors(ws, 3, DAY + timedelta(days=7))
    handler.refuse("c1@debtors.example", "550 5.1.1 no such user")

    report = run_day(ws, DAY)

    assert (report.sent, report.failed, report.retrying) == (2, 1, 0)
    assert [(x[1], x[2]) for x in report.failures] == [("C1", "Debtor C1")]
    assert "C1 Debtor C1" in report.errors[0] and "550" in report.errors[0]
    with ws.engine.connect() as conn:
        (task,) = list_tasks(conn, ws.company_id)
    assert task.customer == "C1" and task.action == f"delivery_failed/{found_id(ws, 'C1')}"
    assert "550" in task.message and "cobro requeue" in task.message

    # Requeued before the cause is fixed, it fails again; once fixed, it goes out once.
    handler.clear()
    with ws.engine.begin() as conn:
        found = failed_claims(conn, ws.company_id, reason="NO SUCH USER")
        assert [c.customer for c in found] == ["C1"]
        assert requeue(conn, ws.company_id, found, utcnow()) == 1
    assert dispatch_due(ws, utcnow()).sent == 1
    assert statuses(ws) == {"sent": 3}
    assert sorted(m.rcpt_tos[0] for m in handler.received) == [
        "c0@debtors.example",
        "c1@debtors.example",
        "c2@debtors.example",
    ]


def test_a_550_on_email_moves_the_message_to_the_next_channel_of_the_phase(
    gym_with: Callable[..., Workspace],  # noqa: F811
    twilio: FakeTwilio,  # noqa: F811
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.refuse("lucia@example.com", "550 5.1.1 no such user")
    ws = gym_with("email, sms", tw=twilio)
    subscribe(ws)
    remind(ws)

    assert [m["to"] for m in twilio.messages] == [PHONE]
    (row,) = [r for r in outbox(ws) if r.step.startswith("upcoming/")]
    assert row.status == "sent"
    email, sms = [x for x in deliveries(ws) if x.outbox_id == row.id]
    assert (email.channel, email.status, sms.channel, sms.status) == (
        "email",
        "failed",
        "sms",
        "sent",
    )
    assert "550" in (email.error or "")


def found_id(ws: Workspace, customer: str) -> int:
    (row,) = [r for r in outbox(ws) if r.customer == customer]
    return int(row.id)


# --------------------------------------------------------------------------- tarpit


class Tarpit:
    """A TCP server in front of the SMTP server: while ``stalled`` it accepts connections
    and never says a word; otherwise it passes bytes both ways."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.stalled = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.closed = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.closed:
                conn.close()
                return
            if self.stalled:
                self.held.append(conn)
                continue
            far = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((conn, far), (far, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # Wake the accepting thread before the socket goes: a closed descriptor may be
        # reused by the next test's server while a thread still waits on it.
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.acceptor.join(10)
        assert not self.acceptor.is_alive()
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_server_that_never_answers_cannot_stall_the_pass_and_the_mail_goes_out_later(
    make_ws: Callable[..., Workspace],
    server: tuple[Counting, int],
    reopen: Callable[[Workspace], Workspace],
) -> None:
    handler, port = server
    tarpit = Tarpit(port)
    try:
        ws = make_ws(
            replace={
                **smtp_to(tarpit.port, "dispatch:\n  connection_deadline_s: 2\n"),
                "      connections: 4\n": "      connections: 4\n      timeout_s: 1\n",
            }
        )
        debtors(ws, 40, DAY + timedelta(days=7))
        report = run_day(ws, DAY)

        # One timeout per connection, then the channel is left alone: not 40 timeouts.
        assert len(tarpit.held) <= 8, len(tarpit.held)
        assert (report.sent, report.failed, report.retrying) == (0, 0, 40)
        assert handler.received == []

        tarpit.stalled = False
        # The next pass runs without the 1 s SMTP timeout and the 2 s connection deadline,
        # which a busy machine (other tests running beside this one) can reach through the
        # relay: the mail the server would not take goes out in it, once.
        config = ws.root / "cobro.yaml"
        text = config.read_text(encoding="utf-8")
        for short in ("dispatch:\n  connection_deadline_s: 2\n", "      timeout_s: 1\n"):
            assert short in text
            text = text.replace(short, "")
        config.write_text(text, encoding="utf-8")
        again = dispatch_due(reopen(ws), max(row.next_attempt_at for row in outbox(ws)))
        assert again.sent == 40
        assert duplicates(handler.received) == 0 and len(handler.received) == 40
    finally:
        tarpit.close()


def test_the_pass_deadline_leaves_the_messages_not_started_for_the_next_pass(
    make_ws: Callable[..., Workspace],
    server: tuple[Counting, int],
    reopen: Callable[[Workspace], Workspace],
) -> None:
    handler, port = server
    tarpit = Tarpit(port)
    try:
        ws = make_ws(
            replace={
                **smtp_to(
                    tarpit.port,
                    "dispatch:\n  connection_deadline_s: 1\n  pass_deadline_s: 0.5\n"
                    "  breaker_failures: 1000\n",  # so that only the deadline stops it
                ),
            }
        )
        debtors(ws, 40, DAY + timedelta(days=7))
        report = run_day(ws, DAY)

        # The pass stopped at its deadline, not after 10 rounds of 4 connections waiting
        # 1 s each: most messages were never started, and nothing failed for good.
        assert (report.sent, report.failed) == (0, 0) and report.retrying < 40
        assert statuses(ws) == {"planned": 40}
        left = [row for row in outbox(ws) if row.failing_since is None]
        assert len(left) >= 40 - CONNECTIONS  # never tried: due again at once, not failing

        tarpit.stalled = False
        # The next pass runs without the half-second pass deadline and the 1 s connection
        # deadline, which a busy machine (other tests running beside this one) can reach
        # before 40 messages are out: every message the first pass left goes out in it,
        # once.
        config = ws.root / "cobro.yaml"
        text = config.read_text(encoding="utf-8")
        for deadline in ("  pass_deadline_s: 0.5\n", "  connection_deadline_s: 1\n"):
            assert deadline in text
            text = text.replace(deadline, "")
        config.write_text(text, encoding="utf-8")
        again = dispatch_due(reopen(ws), max(row.next_attempt_at for row in outbox(ws)))
        assert again.sent == 40
        assert duplicates(handler.received) == 0 and len(handler.received) == 40
    finally:
        tarpit.close()


# --------------------------------------------------------------------------- database


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_watch_keeps_running_while_its_database_connections_are_terminated(
    make_ws: Callable[..., Workspace],
    reopen: Callable[[Workspace], Workspace],
    server: tuple[Counting, int],
    db_url: str,
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    first = debtors(ws, 40, DAY + timedelta(days=7))
    run_day(ws, DAY, as_of=datetime(2025, 3, 3, 6, 0, tzinfo=UTC))
    database = make_url(db_url).database
    watcher = Watcher(reopen(ws))
    rounds = threading.Event()
    terminated = 0
    try:
        with psycopg.connect(_libpq_url(db_url), autocommit=True) as admin:
            for _ in range(15):
                terminated += admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchone()[0]  # type: ignore[index]
                rounds.wait(0.05)
        assert handler.wait_for(40)
        # Claims planned after the terminations are sent too.
        later = debtors(ws, 20, DAY + timedelta(days=7), prefix="L")
        run_day(ws, DAY, as_of=datetime(2025, 3, 3, 6, 0, tzinfo=UTC))
        assert handler.wait_for(60)
    finally:
        watcher.close()

    assert terminated > 0
    got = {r for m in handler.received for r in m.rcpt_tos}
    assert got == first | later
    with ws.engine.connect() as conn:
        pending = conn.execute(
            select(func.count()).select_from(t.outbox).where(t.outbox.c.status != "sent")
        ).scalar_one()
    assert pending == 0
