"""``cobro worker`` and ``cobro scheduler``: Cobro on Celery (docs/operations.md)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from cobro.cli.common import Options, err, fail
from cobro.errors import CobroError, ConfigError

if TYPE_CHECKING:
    from cobro.config.settings import WorkerSettings


def _settings(ctx: typer.Context) -> WorkerSettings:
    """The settings from the environment; ``--workspace`` and ``--db`` where the
    environment does not say (``COBRO_WORKSPACE``, ``COBRO_DATABASE_URL``)."""
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from cobro.config.settings import WorkerSettings

    opts: Options = ctx.obj
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        for e in exc.errors():
            name = "COBRO_" + "_".join(str(p) for p in e["loc"]).upper()
            err.print(f"{name}: {e['msg']}", highlight=False, markup=False)
        fail("bad settings in the environment; nothing was started", 2)
    except SettingsError as exc:  # a value that must be JSON and is not
        found = re.search(r'field "(\w+)"', str(exc))
        name = "COBRO_" + (found.group(1).upper() if found else "?")
        err.print(
            f'{name}: not JSON (write it as {{"email": 50, "sms": 10}})',
            highlight=False,
            markup=False,
        )
        fail("bad settings in the environment; nothing was started", 2)
    updates: dict[str, object] = {}
    if "COBRO_WORKSPACE" not in os.environ:
        updates["workspace"] = opts.workspace
    if opts.db:
        updates["database_url"] = opts.db
    return settings.model_copy(update=updates)


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=64, help="Tasks at once.")
    ] = 2,
    name: Annotated[
        str | None, typer.Option("--name", help="The worker's node name (default: host).")
    ] = None,
) -> None:
    """Start a Celery worker: plans the companies' days and sends their outbox in shards.

    Broker, database and the rest come from the environment (COBRO_BROKER_URL,
    COBRO_DATABASE_URL...); /healthz and /metrics answer on COBRO_METRICS_PORT.
    """
    from cobro.workers import make_app, serve_health

    settings = _settings(ctx)
    app, companies = make_app(settings)
    try:
        companies.all()  # a bad workspace or database fails now, in one line
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail(f"{len(exc.problems)} configuration problem(s); nothing was started", 2)
    except CobroError as exc:
        fail(str(exc), 2)
    server = None
    if settings.metrics_port:
        try:
            server = serve_health(companies, app, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            fail(f"metrics on {settings.metrics_host}:{settings.metrics_port}: {exc}", 2)
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={settings.queue},{settings.prompt_queue}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if name:
        argv.append(f"--hostname={name}")
    try:
        app.worker_main(argv)
    finally:
        if server is not None:
            server.shutdown()
        companies.close()


def scheduler(ctx: typer.Context) -> None:
    """Start the scheduler (Celery beat): every COBRO_TICK_SECONDS it starts each company's
    daily run once its send time has come (in its time zone) and queues the rows ready.

    Two schedulers may run (for availability): each run is started once, each row sent once.
    """
    from cobro.workers import make_app

    settings = _settings(ctx)
    app, _ = make_app(settings)
    app.start(["beat", "--scheduler=celery.beat:Scheduler", "--loglevel=INFO"])
