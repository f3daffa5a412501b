"""Cobro on Celery: ``cobro worker`` runs these tasks, ``cobro scheduler`` (Celery beat)
sends ``cobro.tick`` every ``COBRO_TICK_SECONDS``.

- ``cobro.tick``: for each company whose send time has come today (in its time zone),
  records the day's run once (``daily_runs``: with two schedulers, one wins) and queues
  ``cobro.run_day``; then queues the outbox rows ready now as ``cobro.send_rows`` shards.
- ``cobro.run_day``: starts the company's day (``cobro.engine.plan_shards``: the start
  of the plan, company-wide, and the day cut into ranges of ``COBRO_PLAN_SHARD_DEBTORS``
  debtors) and queues a ``cobro.plan_shard`` per shard.
- ``cobro.plan_shard``: plans the claims of one shard, then tries to end the day: the
  worker that completes its last shard plans the scheduled actions and reminders, marks
  the day finished and queues what is ready.
- ``cobro.send_rows``: sends one shard of ready rows with the dispatcher
  (``dispatch_rows``), paced by the providers' shared rate limits.
- ``cobro.post_webhooks``: posts a company's webhook deliveries that are due.

Every task is acknowledged after it ends (``acks_late``) and given back to the queue when
its worker dies, and every task may run twice: a shard is planned once (its row is
locked and marked planned in the transaction that plans it; the outbox's unique key
besides), the day is ended once (under the company lock, only while not ended), and
sending claims each row under a lease. A worker killed mid-task loses nothing (its
transaction is rolled back, its task is delivered again, its rows are taken over) and
sends at most the messages it had on the wire again, under the same Message-ID, to
recipients without a delivery. A day not finished ``COBRO_REQUEUE_AFTER_S`` after it
was queued (a task lost with its broker, a shard that failed) is queued again by the
scheduler, and its shards not planned yet with it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery

from cobro.config.settings import WorkerSettings
from cobro.errors import CobroError
from cobro.workspace import Workspace, utcnow

if TYPE_CHECKING:
    from cobro.engine.plan_shards import DayBegun, DayFinished

log = logging.getLogger("cobro.workers")

TICK = "cobro.tick"
RUN_DAY = "cobro.run_day"
PLAN_SHARD = "cobro.plan_shard"
SEND_ROWS = "cobro.send_rows"
POST_WEBHOOKS = "cobro.post_webhooks"


class Companies:
    """The companies a worker serves, opened once per process (reopened when their
    ``cobro.yaml`` changes)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[float, Workspace]] = {}

    def roots(self) -> list[Path]:
        from cobro.workspace import SERVER_FILE, company_dirs

        root = self.settings.workspace.resolve()
        if (root / SERVER_FILE).is_file():
            return company_dirs(root)
        return [root]

    def get(self, root: Path | str) -> Workspace:
        from cobro.workspace import CONFIG_FILE, open_workspace

        root = Path(root).resolve()
        stamp = (root / CONFIG_FILE).stat().st_mtime
        with self._lock:
            found = self._open.get(root)
            if found is not None and found[0] == stamp:
                return found[1]
            ws = open_workspace(root, self.settings.database_url)
            self._open[root] = (stamp, ws)
            if found is not None:
                # Idle connections close now; those of tasks still running, when returned.
                found[1].close()
            return ws

    def all(self) -> list[Workspace]:
        return [self.get(root) for root in self.roots()]

    def close(self) -> None:
        with self._lock:
            for _, ws in self._open.values():
                ws.close()
            self._open.clear()


@dataclass(frozen=True)
class TickReport:
    runs: tuple[tuple[str, date], ...]  # (company, day) queued
    shards: int


def make_app(settings: WorkerSettings | None = None) -> tuple[Celery, Companies]:
    """The Celery application and the companies its tasks act on."""
    import cobro.engine.metrics  # noqa: F401  (a worker keeps the counters of what it does)

    settings = settings or WorkerSettings()
    app = Celery("cobro", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Redis: a task not acknowledged within this long is delivered again; no task
        # of Cobro's runs that long, and no task waits for an ETA.
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule={
            "cobro-tick": {"task": TICK, "schedule": settings.tick_seconds},
        },
        timezone="UTC",
    )
    companies = Companies(settings)

    @app.task(name=TICK)  # type: ignore[untyped-decorator]
    def tick_task() -> None:
        tick(app, companies, utcnow())

    @app.task(name=RUN_DAY)  # type: ignore[untyped-decorator]
    def run_day_task(root: str, run_on: str) -> None:
        plan_company_day(app, companies, root, date.fromisoformat(run_on))

    @app.task(name=PLAN_SHARD)  # type: ignore[untyped-decorator]
    def plan_shard_task(root: str, run_on: str, shard_id: int) -> None:
        plan_company_shard(app, companies, root, date.fromisoformat(run_on), shard_id)

    @app.task(name=SEND_ROWS)  # type: ignore[untyped-decorator]
    def send_rows_task(root: str, ids: list[int]) -> None:
        send_shard(companies, root, ids)

    @app.task(name=POST_WEBHOOKS)  # type: ignore[untyped-decorator]
    def post_webhooks_task(root: str) -> None:
        from cobro.engine.runs import post_webhooks

        post_webhooks(companies.get(root), utcnow())

    return app, companies


def queue_ready(app: Celery, companies: Companies, ws: Workspace, now: datetime) -> int:
    """Queue the company's rows ready at ``now`` as shards; how many shards."""
    from cobro.engine.sharding import ready_shards, webhooks_ready
    from cobro.store.db import retrying

    s = companies.settings

    def cut(prompt: bool) -> list[list[int]]:
        with ws.engine.begin() as conn:
            return ready_shards(
                conn,
                ws.company_id,
                now,
                s.shard_debtors,
                timedelta(seconds=s.requeue_after_s),
                prompt=prompt,
            )

    def hooks() -> bool:
        with ws.engine.connect() as conn:
            return webhooks_ready(conn, ws.company_id, now)

    # The debtors with a row no day's run planned (an event's notice such as a receipt, a
    # resend) go on a queue of their own, with all their ready rows, which every worker
    # consumes beside the main one: they wait for a task a worker has already begun, not
    # for every shard of the day's claims; then the rest.
    prompt = retrying(partial(cut, True))
    for ids in prompt:
        app.send_task(SEND_ROWS, args=[str(ws.root), ids], queue=s.prompt_queue)
    shards = retrying(partial(cut, False))
    for ids in shards:
        app.send_task(SEND_ROWS, args=[str(ws.root), ids], queue=s.queue)
    if retrying(hooks):  # posted by company, each delivery claimed under a lease
        app.send_task(POST_WEBHOOKS, args=[str(ws.root)], queue=s.queue)
    return len(prompt) + len(shards)


def tick(app: Celery, companies: Companies, now: datetime) -> TickReport:
    """One pass of the scheduler as of ``now``: start the daily runs that are due, queue
    the rows that are ready. Safe to run from several schedulers at once."""
    from cobro.engine.sharding import claim_daily_run, due_day
    from cobro.store.db import retrying

    s = companies.settings
    runs: list[tuple[str, date]] = []
    shards = 0
    for root in companies.roots():
        try:
            ws = companies.get(root)
        except CobroError as exc:  # one company's broken cobro.yaml stops no other
            log.error("%s: %s", root, exc)
            continue
        day = due_day(ws, now)
        if day is not None:

            def claimed(ws: Workspace = ws, day: date = day) -> bool:
                with ws.engine.begin() as conn:
                    return (
                        claim_daily_run(
                            conn,
                            ws.company_id,
                            day,
                            now,
                            timedelta(seconds=s.requeue_after_s),
                        )
                        is not None
                    )

            if retrying(claimed):
                app.send_task(RUN_DAY, args=[str(ws.root), day.isoformat()], queue=s.queue)
                runs.append((ws.config.company.id, day))
        shards += queue_ready(app, companies, ws, now)
    return TickReport(tuple(runs), shards)


def plan_company_day(app: Celery, companies: Companies, root: str, run_on: date) -> None:
    """Start the plan of ``run_on`` for the company at ``root`` (as of its send time) and
    queue its shards not planned yet; nothing when that day's run has already finished."""
    from cobro.domain.calendar import send_instant
    from cobro.engine.plan_shards import begin_day
    from cobro.engine.sharding import daily_run_finished
    from cobro.store.db import retrying

    ws = companies.get(root)
    with ws.engine.connect() as conn:
        if daily_run_finished(conn, ws.company_id, run_on):
            return
    company = ws.config.company
    as_of = send_instant(run_on, company.send_time, company.timezone)

    def begun() -> DayBegun | None:
        with ws.engine.begin() as conn:
            return begin_day(
                conn,
                ws.config,
                ws.company_id,
                run_on,
                as_of,
                utcnow(),
                companies.settings.plan_shard_debtors,
            )

    day = retrying(begun)
    if day is None:
        return
    for shard_id in day.pending:
        app.send_task(
            PLAN_SHARD,
            args=[str(ws.root), run_on.isoformat(), shard_id],
            queue=companies.settings.queue,
        )
    if not day.pending:  # no debtor, or every shard planned before this delivery
        finish_company_day(app, companies, ws, run_on)


def plan_company_shard(
    app: Celery, companies: Companies, root: str, run_on: date, shard_id: int
) -> None:
    """Plan shard ``shard_id`` of ``run_on`` for the company at ``root`` (nothing when it is
    planned already), then end the day if every shard of it is planned."""
    from cobro.engine.plan_shards import plan_shard
    from cobro.engine.runs import end_run
    from cobro.store.db import retrying

    ws = companies.get(root)

    def planned() -> None:
        with ws.engine.begin() as conn:
            plan_shard(conn, ws.config, ws.company_id, run_on, shard_id, utcnow())

    try:
        retrying(planned)
    except Exception as exc:  # recorded with the run; the scheduler queues the day again
        run_id = _day_run(ws, run_on)
        if run_id is not None:
            end_run(ws, run_id, utcnow(), f"{type(exc).__name__}: {exc}")
        raise
    finish_company_day(app, companies, ws, run_on)


def _day_run(ws: Workspace, run_on: date) -> int | None:
    from sqlalchemy import select

    from cobro.store import tables as t

    d = t.daily_runs.c
    with ws.engine.connect() as conn:
        found = conn.execute(
            select(d.run_id).where(d.company_id == ws.company_id, d.run_on == run_on)
        ).scalar()
    return None if found is None else int(found)


def finish_company_day(app: Celery, companies: Companies, ws: Workspace, run_on: date) -> bool:
    """End the plan of ``run_on`` when every shard of it is planned and nobody has ended it
    (``finish_day``), keep the run's report, and queue what is ready; whether this call
    ended it."""
    from cobro.engine.dispatch import DispatchReport
    from cobro.engine.plan_shards import finish_day
    from cobro.engine.runs import checkpoint, count_run, record_report, run_report
    from cobro.store.db import retrying

    def finished() -> DayFinished | None:
        with ws.engine.begin() as conn:
            day = finish_day(conn, ws.config, ws.company_id, run_on, utcnow())
            if day is not None:
                report = run_report(run_on, day.as_of, day.plan, DispatchReport())
                record_report(conn, day.run_id, report)
            return day

    day = retrying(finished)
    if day is None:
        return False
    checkpoint(ws, day.as_of)  # the plan's own evidence (accounts released)
    seconds = (utcnow() - day.started_at).total_seconds()  # from the start of the day
    count_run(ws.config.company.id, day.plan.planned, seconds)
    queue_ready(app, companies, ws, utcnow())
    return True


def send_shard(companies: Companies, root: str, ids: list[int]) -> None:
    """Send the outbox rows ``ids`` of the company at ``root`` that are ready now."""
    from cobro.engine.metrics import SHARD_SECONDS
    from cobro.engine.pacing import SharedPace
    from cobro.engine.runs import dispatch_rows

    ws = companies.get(root)
    pace = SharedPace(ws.engine, ws.company_id, companies.settings.rate_limits)
    began = time.monotonic()
    dispatch_rows(ws, frozenset(ids), utcnow(), pace=pace)  # counted in the metrics
    SHARD_SECONDS.labels(ws.config.company.id).observe(time.monotonic() - began)


# --------------------------------------------------------------------------- /healthz


def serve_health(companies: Companies, app: Celery, host: str, port: int) -> Any:
    """``/healthz`` (the database of every company and the broker answer) and ``/metrics``
    on ``host:port``, in a thread; the server (``shutdown()`` stops it)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    from cobro.engine.metrics import register_lag

    register_lag(companies.all)
    metrics = make_wsgi_app()

    def health() -> tuple[str, str]:
        from sqlalchemy import text

        try:
            for ws in companies.all():
                with ws.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
        except Exception as exc:
            return "503 Service Unavailable", f"database: {type(exc).__name__}\n"
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=3)
        except Exception as exc:
            return "503 Service Unavailable", f"broker: {type(exc).__name__}\n"
        return "200 OK", "ok\n"

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            status, body = health()
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [body.encode()]
        return metrics(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server(host, port, wsgi, server_class=Threaded, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
