"""Cobro on Celery: a real broker (RabbitMQ or Redis), PostgreSQL, one ``cobro worker``
process for the module, and a recording SMTP server counting every message by
(claim, recipient). Schedulers run in this process (``tick``), as beat would run them."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy import create_engine, func, select

from cobro.config.settings import WorkerSettings
from cobro.engine.pacing import SharedPace
from cobro.engine.runs import run_day
from cobro.engine.sharding import ready_shards
from cobro.intake.events import post_event
from cobro.store import tables as t
from cobro.workers import SEND_ROWS, Companies, make_app, queue_ready, tick
from cobro.workspace import Workspace, open_workspace, utcnow
from local_smtp import LocalSMTP

from .conftest import STARTER_CONFIG, WITHOUT_ACTIONS
from .test_exactly_once import Counting, debtors, duplicates, statuses

# The tests share one Celery worker process: with pytest-xdist one worker runs them all
# (--dist loadgroup, pyproject.toml).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("tests/integration/test_workers.py")]

DAY = datetime(2025, 3, 3).date()  # phase 00 of b2b for invoices due 2025-03-10
AFTER_SEND_TIME = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # 13:00 in Madrid, sent at 09:00
SHARD = 5  # debtors per shard: a day of a few dozen debtors makes several tasks
PLAN_SHARD = 7  # debtors per shard of a day's plan
CONNECTIONS = 4  # the starter's smtp.connections
CONCURRENCY = 2  # the worker's tasks at once
REQUEUE = timedelta(seconds=601)  # after COBRO_REQUEUE_AFTER_S (600 s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """``cobro worker`` as an operator starts it; ``kill()`` is SIGKILL."""

    def __init__(self, root: Path, db: str, env: dict[str, str], log: Path) -> None:
        self.root, self.db, self.env, self.log = root, db, env, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "cobro", "-w", str(self.root), "--db", self.db),
                *("worker", "--concurrency", str(CONCURRENCY)),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stream = self.proc.stderr
        assert stream is not None

        def drain() -> None:
            with self.log.open("a", encoding="utf-8") as out:
                for line in stream:
                    out.write(line)
                    out.flush()
                    if " ready." in line:
                        ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60):
            self.stop()
            pytest.fail(f"the worker did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[Counting]:
    handler = Counting()
    controller = LocalSMTP(handler)
    controller.start()
    handler.port = controller.port  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    module_postgres_url: str,
    broker_url: str,
    smtp: Counting,
) -> Iterator[dict[str, Any]]:
    """The module's workspace on PostgreSQL, its Celery app (this process: the schedulers)
    and its worker process."""
    root = tmp_path_factory.mktemp("cluster") / "ws"
    shutil.copytree(STARTER_CONFIG.parent, root)
    cfg = root / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    replace = {
        **WITHOUT_ACTIONS,
        "host: capture": "host: 127.0.0.1",
        "port: 587": f"port: {smtp.port}",  # type: ignore[attr-defined]
    }
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text, encoding="utf-8")
    queue = f"cobro-test-{uuid.uuid4().hex[:10]}"
    metrics_port = _free_port()
    settings = WorkerSettings(
        broker_url=broker_url,
        database_url=module_postgres_url,
        workspace=root,
        queue=queue,
        shard_debtors=SHARD,
        plan_shard_debtors=PLAN_SHARD,
        metrics_port=metrics_port,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRO_")}
    env.update(
        COBRO_BROKER_URL=broker_url,
        COBRO_QUEUE=queue,
        COBRO_SHARD_DEBTORS=str(SHARD),
        COBRO_PLAN_SHARD_DEBTORS=str(PLAN_SHARD),
        COBRO_METRICS_PORT=str(metrics_port),
    )
    app, companies = make_app(settings)
    ws = open_workspace(root, module_postgres_url)
    worker = WorkerProcess(root, module_postgres_url, env, root.parent / "worker.log")
    worker.start()
    try:
        yield {
            "ws": ws,
            "app": app,
            "companies": companies,
            "worker": worker,
            "metrics": f"http://127.0.0.1:{metrics_port}",
        }
    finally:
        worker.stop()
        companies.close()
        ws.close()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.queue_delete(settings.prompt_queue)


def _sent_everything(ws: Workspace, smtp: Counting, addresses: set[str]) -> None:
    """Wait until every address has a message, then until no row is left to send."""
    assert smtp.wait_for_addresses(addresses), sorted(  # type: ignore[attr-defined]
        addresses - {r for m in smtp.received for r in m.rcpt_tos}
    )


def _wait_for_addresses(self: Counting, addresses: set[str], timeout: float = 90) -> bool:
    with self.changed:
        return self.changed.wait_for(
            lambda: addresses <= {r for m in self.received for r in m.rcpt_tos}, timeout
        )


Counting.wait_for_addresses = _wait_for_addresses  # type: ignore[attr-defined]


def _one_message_id_per_claim(smtp: Counting) -> bool:
    by_key: dict[tuple[str, str], set[str]] = {}
    for m in smtp.received:
        key = (str(m.message["X-Cobro-Claim"]), m.rcpt_tos[0])
        by_key.setdefault(key, set()).add(str(m.message["Message-ID"]))
    return all(len(ids) == 1 for ids in by_key.values())


# --------------------------------------------------------------------------- tests


def test_two_schedulers_start_one_run_whose_messages_each_go_once(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    ws: Workspace = cluster["ws"]
    addresses = debtors(ws, 23, DAY + timedelta(days=7), prefix="S")
    smtp.received.clear()
    ticks: list[Any] = []
    barrier = threading.Barrier(2)

    def scheduler() -> None:
        companies = Companies(cluster["companies"].settings)
        try:
            barrier.wait()
            ticks.append(tick(cluster["app"], companies, AFTER_SEND_TIME))
        finally:
            companies.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(len(r.runs) for r in ticks) == [0, 1]  # one scheduler started the day

    _sent_everything(ws, smtp, addresses)
    assert duplicates(smtp.received) == 0
    assert _wait_until(lambda: statuses(ws) == {"sent": 23}), statuses(ws)
    with ws.engine.connect() as conn:
        runs = conn.execute(select(t.runs.c.planned, t.runs.c.report)).all()
        owed = conn.execute(select(t.daily_runs.c.finished_at)).scalars().all()
        shards = conn.execute(select(t.plan_shards.c.planned_at, t.plan_shards.c.planned)).all()
    assert len(runs) == 1 and len(owed) == 1 and owed[0] is not None
    # Planned in shards of 7 debtors by the worker, the run's report adding them up.
    assert len(shards) == 4 and all(s.planned_at is not None for s in shards)
    assert sum(s.planned for s in shards) == runs[0].planned == runs[0].report["planned"] == 23
    # Later ticks of the same day start nothing more.
    again = tick(cluster["app"], cluster["companies"], AFTER_SEND_TIME + timedelta(hours=1))
    assert again.runs == () and again.shards == 0


def test_the_worker_answers_healthz_and_reports_its_work_to_prometheus(
    cluster: dict[str, Any],
) -> None:
    """Right after the day the worker planned and sent (the first test)."""
    base = cluster["metrics"]
    health = httpx.get(f"{base}/healthz", timeout=10)
    assert health.status_code == 200 and health.text == "ok\n"
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    slug = cluster["ws"].config.company.id
    sent = [
        line
        for line in metrics.splitlines()
        if line.startswith(f'cobro_messages_sent_total{{channel="email",company="{slug}"}}')
    ]
    assert sent and float(sent[0].split()[-1]) >= 1
    assert f'cobro_queue_lag_seconds{{company="{slug}"}} 0.0' in metrics
    assert f'cobro_run_duration_seconds_count{{company="{slug}"}}' in metrics


def test_the_same_shard_on_two_workers_and_a_second_run_of_the_day_send_nothing_twice(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    ws: Workspace = cluster["ws"]
    addresses = debtors(ws, 20, DAY + timedelta(days=7), prefix="D")
    run_day(ws, DAY, send=False)
    run_day(ws, DAY, send=False)  # a second run of the same company and day
    smtp.received.clear()
    with ws.engine.begin() as conn:
        shards = ready_shards(conn, ws.company_id, AFTER_SEND_TIME, 10, timedelta(minutes=10))
    assert len(shards) == 2
    app: Celery = cluster["app"]
    queue = cluster["companies"].settings.queue
    for ids in shards:  # each shard twice: both copies run at once on the worker's threads
        for _ in range(2):
            app.send_task(SEND_ROWS, args=[str(ws.root), ids], queue=queue)
    _sent_everything(ws, smtp, addresses)
    assert duplicates(smtp.received) == 0
    assert _wait_until(lambda: statuses(ws) == {"sent": 23 + 20}), statuses(ws)


TRIALS = 3  # in the suite; bench/crash_trials.py --command worker runs more
PER_TRIAL = 20


def test_a_worker_killed_9_mid_task_loses_nothing_and_resends_only_what_was_on_the_wire(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    ws: Workspace = cluster["ws"]
    worker: WorkerProcess = cluster["worker"]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 0
    done = 23 + 20
    for n in range(TRIALS):
        addresses = debtors(ws, PER_TRIAL, DAY + timedelta(days=7), prefix=f"K{n}X")
        run_day(ws, DAY, send=False)
        smtp.received.clear()
        at_message = rng.randint(1, PER_TRIAL - 2)
        killed = threading.Event()

        def kill(count: int, at: int = at_message, flag: threading.Event = killed) -> None:
            if count == at:
                worker.kill()  # before the server says 250
                flag.set()

        smtp.on_message = kill
        report = tick(cluster["app"], cluster["companies"], AFTER_SEND_TIME)
        assert report.shards == PER_TRIAL // SHARD
        assert killed.wait(60), f"seed {seed}, trial {n}: message {at_message} never came"
        smtp.on_message = None
        kills += 1
        worker.start()  # the operator (or systemd) starts it again
        # RabbitMQ gives the killed worker's task back at once; Redis only after its
        # visibility timeout: the schedulers queue the rows again once their queued time
        # is over. Either way each row goes once.
        tick(cluster["app"], cluster["companies"], AFTER_SEND_TIME + REQUEUE)
        context = f"seed {seed}, trial {n}, killed at message {at_message}"
        _sent_everything(ws, smtp, addresses)
        done += PER_TRIAL
        want = {"sent": done}
        assert _wait_until(lambda w=want: statuses(ws) == w), (context, statuses(ws))
        assert duplicates(smtp.received) <= CONNECTIONS * CONCURRENCY, context
        assert _one_message_id_per_claim(smtp), context
    assert kills == TRIALS


def _wait_until(condition: Any, timeout: float = 60) -> bool:
    """True once ``condition()`` holds (the last rows are recorded just after their
    message is accepted)."""
    stop = threading.Event()
    deadline = threading.Timer(timeout, stop.set)
    deadline.start()
    try:
        while not stop.is_set():
            if condition():
                return True
            stop.wait(0.05)
        return bool(condition())
    finally:
        deadline.cancel()


def test_a_channel_rate_holds_across_workers(cluster: dict[str, Any]) -> None:
    """Two workers (two engines, two threads) share one channel at 4 messages a second:
    the slots they get are all different and a quarter of a second apart."""
    ws: Workspace = cluster["ws"]
    url = ws.engine.url.render_as_string(hide_password=False)
    engines = [create_engine(url), create_engine(url)]
    start = 2_000_000_000.0
    paces = [SharedPace(e, ws.company_id, {"sms": 4.0}, clock=lambda: start) for e in engines]
    slots: list[float] = []
    lock = threading.Lock()

    def take(pace: SharedPace) -> None:
        for _ in range(10):
            at = pace.slot("sms")
            assert at is not None
            with lock:
                slots.append(at)

    threads = [threading.Thread(target=take, args=(p,)) for p in paces]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for e in engines:
        e.dispose()
    assert sorted(slots) == [start + i * 0.25 for i in range(20)]
    assert paces[0].slot("email") is None  # a channel without a rate is not paced


def test_cobro_serve_reports_the_queue_lag_to_prometheus(cluster: dict[str, Any]) -> None:
    """``/metrics`` of the web server: the lag of the oldest ready row, read at the scrape."""
    from fastapi.testclient import TestClient

    from cobro.web.app import create_app

    ws: Workspace = cluster["ws"]
    slug = ws.config.company.id
    waiting = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # the send time of DAY (09:00 Madrid)
    with ws.engine.begin() as conn:  # a planned row nobody has sent for an hour
        conn.execute(
            t.outbox.update()
            .where(t.outbox.c.id == select(func.min(t.outbox.c.id)).scalar_subquery())
            .values(status="planned", next_attempt_at=waiting, queued_until=None)
        )
    try:
        app = create_app(ws, clock=lambda: waiting + timedelta(hours=1))
        with TestClient(app) as client:
            response = client.get("/metrics")
        assert response.status_code == 200
        assert f'cobro_queue_lag_seconds{{company="{slug}"}} 3600.0' in response.text
        assert f'cobro_outbox_ready{{company="{slug}"}} 1.0' in response.text
        assert "# HELP cobro_messages_sent_total " in response.text
    finally:
        with ws.engine.begin() as conn:
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.status == "planned")
                .values(status="sent", next_attempt_at=waiting)
            )


def test_webhook_deliveries_of_the_claims_sent_by_the_workers_are_posted_once(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    from cobro.engine.webhooks import add_endpoint
    from fakes.webhooks import WebhookReceiver

    ws: Workspace = cluster["ws"]
    with WebhookReceiver() as receiver:
        with ws.engine.begin() as conn:
            add_endpoint(conn, ws.company_id, receiver.url(), AFTER_SEND_TIME, events="claim.sent")
        addresses = debtors(ws, 6, DAY + timedelta(days=7), prefix="W")
        run_day(ws, DAY, send=False)
        smtp.received.clear()
        tick(cluster["app"], cluster["companies"], AFTER_SEND_TIME)
        _sent_everything(ws, smtp, addresses)
        # The claims' events are recorded with them, due when they were sent (the real
        # clock): the next tick's queueing has them posted.
        assert _wait_until(lambda: statuses(ws)["sending"] == 0)
        queue_ready(cluster["app"], cluster["companies"], ws, utcnow())
        assert receiver.wait_for(6, timeout=60)
        assert _wait_until(lambda: statuses(ws)["sending"] == 0 and statuses(ws)["planned"] == 0)
        events = [r.json()["data"]["customer"]["id"] for r in receiver.received]
    assert sorted(events) == [f"W{i}" for i in range(6)]


def test_a_claim_refused_for_good_is_counted_as_failed_on_its_channel(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    ws: Workspace = cluster["ws"]
    (address,) = debtors(ws, 1, DAY + timedelta(days=7), prefix="R")
    smtp.refuse(address, "550 5.1.1 no such mailbox", times=None)
    try:
        run_day(ws, DAY, send=False)
        tick(cluster["app"], cluster["companies"], AFTER_SEND_TIME)
        assert _wait_until(lambda: statuses(ws)["failed"] == 1), statuses(ws)
    finally:
        smtp.clear()
    metrics = httpx.get(f"{cluster['metrics']}/metrics", timeout=10).text
    slug = ws.config.company.id
    assert f'cobro_messages_failed_total{{channel="email",company="{slug}"}} 1.0' in metrics


def test_every_message_a_shard_sends_takes_a_slot_of_its_channel(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    """The dispatcher waits for the shared pace before each message: five messages at
    1000 a second take five slots of ``email``, a millisecond apart."""
    from cobro.engine.runs import dispatch_rows

    ws: Workspace = cluster["ws"]
    addresses = debtors(ws, 5, DAY + timedelta(days=7), prefix="P")
    run_day(ws, DAY, send=False)
    smtp.received.clear()
    with ws.engine.begin() as conn:
        (ids,) = ready_shards(conn, ws.company_id, AFTER_SEND_TIME, 100, timedelta(minutes=10))
    start = 3_000_000_000.0
    pace = SharedPace(ws.engine, ws.company_id, {"email": 1000.0}, clock=lambda: start)
    report = dispatch_rows(ws, frozenset(ids), utcnow(), pace=pace)
    assert report.sent == 5
    assert {r for m in smtp.received for r in m.rcpt_tos} == addresses
    with ws.engine.connect() as conn:
        next_at = conn.execute(
            select(t.rate_slots.c.next_at).where(t.rate_slots.c.channel == "email")
        ).scalar_one()
    assert next_at == pytest.approx(start + 5 * 0.001)


def _waiting_on_a_lock(ws: Workspace) -> bool:
    """Whether a session of the database waits for a row lock (a shard held up)."""
    with ws.engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).scalar_one()
        )


def test_a_worker_killed_9_while_planning_a_shard_plans_it_once_and_sends_it_once(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    """The worker is killed while a shard of the day's plan has written part of its rows:
    none of them is committed, the shard is planned again (the task delivered again, or
    queued again with the day by the scheduler) and each claim is planned and sent once."""
    ws: Workspace = cluster["ws"]
    worker: WorkerProcess = cluster["worker"]
    day = DAY + timedelta(days=1)
    at = AFTER_SEND_TIME + timedelta(days=1)
    addresses = debtors(ws, 20, day + timedelta(days=7), prefix="Q")
    smtp.received.clear()
    c, o = t.customers.c, t.outbox.c
    held = ws.engine.connect()
    try:
        # A row lock on one debtor holds its shard at the claims' INSERT (the foreign key's
        # shared lock on the debtor waits), after its candidates and debt were read.
        held.begin()
        held.execute(select(c.id).where(c.external_id == "Q12").with_for_update())
        report = tick(cluster["app"], cluster["companies"], at)
        assert report.runs == ((ws.config.company.id, day),)
        assert _wait_until(lambda: _waiting_on_a_lock(ws)), "no shard reached the held debtor"
        worker.kill()
    finally:
        held.rollback()
        held.close()
    q = select(func.count()).select_from(t.outbox).join(t.customers, c.id == o.customer_id)
    q = q.where(c.external_id.like("Q%"), o.occurrence_on == day)
    with ws.engine.connect() as conn:
        unplanned = conn.execute(
            select(func.count()).where(
                t.plan_shards.c.run_on == day, t.plan_shards.c.planned_at.is_(None)
            )
        ).scalar_one()
    assert unplanned >= 1
    worker.start()
    # RabbitMQ gives the shard's task back at once; the scheduler queues the unfinished
    # day again after COBRO_REQUEUE_AFTER_S (Redis: before its visibility timeout).
    tick(cluster["app"], cluster["companies"], at + REQUEUE)
    _sent_everything(ws, smtp, addresses)
    assert duplicates(smtp.received) == 0
    assert _one_message_id_per_claim(smtp)
    d_, s = t.daily_runs.c, t.plan_shards.c
    assert _wait_until(lambda: _day_finished(ws, day))
    with ws.engine.connect() as conn:
        assert conn.execute(q).scalar_one() == 20  # one claim per debtor
        shards = conn.execute(select(s.planned_at).where(s.run_on == day)).scalars().all()
        runs = conn.execute(select(func.count()).where(t.runs.c.run_on == day)).scalar_one()
        run_id = conn.execute(select(d_.run_id).where(d_.run_on == day)).scalar_one()
        planned = conn.execute(select(t.runs.c.planned).where(t.runs.c.id == run_id)).scalar_one()
    assert shards and all(p is not None for p in shards)
    assert runs == 1 and planned == 20


def _day_finished(ws: Workspace, day: Any) -> bool:
    d_ = t.daily_runs.c
    with ws.engine.connect() as conn:
        return conn.execute(select(d_.finished_at).where(d_.run_on == day)).scalar() is not None


def test_a_receipt_is_queued_on_the_prompt_queue_ahead_of_the_days_shards(
    cluster: dict[str, Any], smtp: Counting
) -> None:
    """Rows no day's run planned (here a payment's receipt) go on ``<queue>.prompt``, with
    their debtor's other ready rows, and every worker consumes that queue beside the main
    one: a receipt waits for a task a worker has begun, not for every shard of the day's
    claims queued before it."""
    ws: Workspace = cluster["ws"]
    debtors(ws, 12, DAY + timedelta(days=7), prefix="RC")
    assert run_day(ws, DAY, send=False).planned >= 12
    subscription = {"customer": "RC0", "subscription": "SQ", "plan": "Mensual", "price": "20.00"}
    post_event(ws, "subscription.created", {"id": "created-SQ", **subscription}, AFTER_SEND_TIME)
    charge = {"id": "paid-SQ", "subscription": "SQ", "charge": "CHQ", "amount": "20"}
    post_event(ws, "charge.succeeded", charge, AFTER_SEND_TIME)
    o = t.outbox.c
    with ws.engine.connect() as conn:
        receipt = conn.execute(select(o.id).where(o.step == "receipt/CHQ")).scalar_one()
        member = (
            select(o.id, o.run_id)
            .join(t.customers, t.customers.c.id == o.customer_id)
            .where(t.customers.c.external_id == "RC0")
        )
        member_rows = {r.id for r in conn.execute(member)}
        (member_claim,) = {r.id for r in conn.execute(member) if r.run_id is not None}
        run_rows = set(conn.execute(select(o.id).where(o.run_id.is_not(None))).scalars())

    # Queued by a scheduler whose queues no worker consumes, then read from the broker.
    main: WorkerSettings = cluster["companies"].settings
    held = main.model_copy(update={"queue": f"cobro-held-{uuid.uuid4().hex[:10]}"})
    app, companies = make_app(held)
    try:
        assert queue_ready(app, companies, ws, AFTER_SEND_TIME + timedelta(minutes=1)) >= 2
        with app.connection_for_write() as conn:
            prompt, day = ([], [])
            for name, tasks in ((held.prompt_queue, prompt), (held.queue, day)):
                queue = Queue(name, Exchange(name), routing_key=name)(conn.default_channel)
                while (message := queue.get(no_ack=True)) is not None:
                    tasks.append(message.decode()[0][1])  # protocol 2: (args, kwargs, embed)
            conn.default_channel.queue_delete(held.queue)
            conn.default_channel.queue_delete(held.prompt_queue)
    finally:
        companies.close()
    prompt_ids = {i for ids in prompt for i in ids}
    day_ids = {i for ids in day for i in ids}
    # The member's rows (its receipt, the admin's new-subscriber notice, its claim of the
    # day) go together (one task holds a debtor's rows); the other debtors' claims go on
    # the main queue.
    assert receipt in prompt_ids and member_claim in prompt_ids
    assert prompt_ids == member_rows
    assert day_ids and day_ids <= run_rows and member_claim not in day_ids

    # The cluster's worker consumes both queues: everything queued gets sent.
    app_main: Celery = cluster["app"]
    for ids in prompt:
        app_main.send_task(SEND_ROWS, args=[str(ws.root), ids], queue=main.prompt_queue)
    for ids in day:
        app_main.send_task(SEND_ROWS, args=[str(ws.root), ids], queue=main.queue)

    def sent() -> bool:
        with ws.engine.connect() as conn:
            rows = conn.execute(select(o.status).where(o.id.in_(prompt_ids | day_ids))).scalars()
            return set(rows) == {"sent"}

    assert _wait_until(sent)
