"""``cobro dispatch``: send what is due now, or keep sending as events arrive."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from cobro.cli.common import (
    Options,
    by_channel,
    err,
    fail,
    open_ws,
    out,
    print_json,
    report_not_sent,
)
from cobro.errors import CobroError, ConfigError

if TYPE_CHECKING:
    from cobro.engine.dispatch import DispatchReport


def _line(report: DispatchReport) -> str:
    text = f"sent {report.sent}, failed {report.failed}, skipped {report.cancelled}"
    if report.retrying:
        text += f", retrying {report.retrying}"
    return text + by_channel(report.by_channel)


def _print_busy(report: DispatchReport, _seconds: float) -> None:
    if report.sent + report.failed + report.cancelled + report.retrying:
        out.print(_line(report), markup=False)
    for line in report.errors:
        err.print(f"  {line}", highlight=False, markup=False)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _worker(root: Path, db: str | None, poll_s: float) -> None:
    """One extra watcher process (``--workers``); stops on SIGTERM or SIGINT."""
    from cobro.engine.runs import watch
    from cobro.workspace import open_workspace

    stop = threading.Event()
    _stop_on_signals(stop)
    ws = open_workspace(root, db)
    try:
        watch(ws, stop, poll_s)
    finally:
        ws.close()


def dispatch(
    ctx: typer.Context,
    keep_watching: Annotated[
        bool,
        typer.Option("--watch", help="Keep sending as events arrive, until Ctrl-C or SIGTERM."),
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=32, help="Processes sending (with --watch).")
    ] = 1,
    poll_ms: Annotated[
        int, typer.Option("--poll-ms", min=10, max=60000, help="Wait after an idle pass.")
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Send what is due now: planned messages, event notices, retries.

    With --watch it keeps going, so that notices of events posted with --no-send (or
    through the Python API) go out within moments; several --workers share the work,
    each message claimed by one. A stop finishes the batch in hand first.
    """
    from cobro.engine.runs import dispatch_due, watch
    from cobro.workspace import utcnow

    if workers > 1 and not keep_watching:
        fail("--workers needs --watch", 2)
    opts: Options = ctx.obj
    ws = open_ws(ctx)
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        if not keep_watching:
            total = dispatch_due(ws, utcnow())
        else:
            stop = threading.Event()
            _stop_on_signals(stop)
            spawn = multiprocessing.get_context("spawn")
            for _ in range(workers - 1):
                worker = spawn.Process(
                    target=_worker, args=(opts.workspace, opts.db, poll_ms / 1000), daemon=False
                )
                worker.start()
                procs.append(worker)
            if not as_json:
                out.print(
                    f"watching the outbox with {workers} process(es); Ctrl-C stops",
                    markup=False,
                )
            total = watch(
                ws,
                stop,
                poll_ms / 1000,
                None if as_json else _print_busy,
            )
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail("configuration error; messages stay in the outbox until it is fixed", 2)
    except CobroError as exc:
        fail(str(exc), 2)
    finally:
        for child in procs:
            if child.pid is not None and child.is_alive():
                child.terminate()  # SIGTERM: the worker finishes its batch and stops
        for child in procs:
            child.join()
        ws.close()
    if as_json:
        print_json(
            {
                "sent": total.sent,
                "failed": total.failed,
                "skipped": total.cancelled,
                "retrying": total.retrying,
                "deliveries": total.deliveries,
                "by_channel": dict(sorted(total.by_channel.items())),
                "cost": str(total.cost),
                "errors": total.errors,
            }
        )
    else:
        out.print(f"total: {_line(total)}", markup=False)
    if keep_watching:  # a service stopped on request; its failures were printed as they came
        return
    report_not_sent([] if as_json else total.errors, total.failed, total.retrying)
