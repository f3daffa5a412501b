"""``cobro dispatch``: send what is due now, or keep sending as events arrive;
``cobro requeue``: send claims that failed for good again; ``cobro resend``: send a claim's
message again, as it was sent."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cobro.cli.common import (
    MAX_ID,
    Options,
    QuietOption,
    add_row,
    by_channel,
    err,
    fail,
    open_ws,
    out,
    parse_date,
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
    if report.waiting:
        text += f", waiting for their hours {report.waiting}"
    if report.held_back:
        text += f" (held back by frequency caps {report.held_back})"
    return text + by_channel(report.by_channel)


def _print_busy(report: DispatchReport, _seconds: float) -> None:
    if report.sent + report.failed + report.cancelled + report.retrying:
        out.print(_line(report), markup=False)
    for line in report.errors:
        err.print(f"  {line}", highlight=False, markup=False)


def _print_error(message: str) -> None:
    err.print(message, highlight=False, markup=False)


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
        watch(ws, stop, poll_s, on_error=_print_error)
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
    quiet: QuietOption = False,
) -> None:
    """Send what is due now: planned messages, event notices, retries.

    With --watch it keeps going, so that notices of events posted with --no-send (or
    through the Python API) go out within moments; several --workers share the work,
    each message claimed by one. A stop finishes the batch in hand first.
    """
    import multiprocessing

    from sqlalchemy.exc import DBAPIError

    from cobro.cli.progress import progress_for
    from cobro.engine.runs import dispatch_due, watch
    from cobro.workspace import utcnow

    if workers > 1 and not keep_watching:
        fail("--workers needs --watch", 2)
    opts: Options = ctx.obj
    ws = open_ws(ctx)
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        if not keep_watching:
            total = dispatch_due(ws, utcnow(), progress=progress_for(quiet, err))
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
            if not (as_json or quiet):
                out.print(
                    f"watching the outbox with {workers} process(es); Ctrl-C stops",
                    markup=False,
                )
            total = watch(
                ws,
                stop,
                poll_ms / 1000,
                None if as_json or quiet else _print_busy,
                _print_error,
            )
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail("configuration error; messages stay in the outbox until it is fixed", 2)
    except CobroError as exc:
        fail(str(exc), 2)
    except DBAPIError as exc:  # still unreachable after the retries
        first = str(exc.orig or exc).strip().splitlines()
        fail(f"database unavailable: {first[0] if first else type(exc).__name__}", 1)
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
                "waiting": total.waiting,
                "held_back": total.held_back,
                "deliveries": total.deliveries,
                "by_channel": dict(sorted(total.by_channel.items())),
                "cost": str(total.cost),
                "errors": total.errors,
                "failures": [
                    {
                        "outbox_id": f.outbox_id,
                        "customer": f.customer,
                        "customer_name": f.customer_name,
                        "reason": f.reason,
                    }
                    for f in total.failures
                ],
            }
        )
    else:
        if not quiet:
            out.print(f"total: {_line(total)}", markup=False)
    if keep_watching:  # a service stopped on request; its failures were printed as they came
        return
    report_not_sent([] if as_json else total.errors, total.failed, total.retrying)


def requeue(
    ctx: typer.Context,
    claim: Annotated[
        int | None, typer.Option("--claim", min=1, max=MAX_ID, help="The claim's outbox id.")
    ] = None,
    debtor: Annotated[
        str | None, typer.Option("--debtor", help="The debtor's external id.")
    ] = None,
    on: Annotated[
        str | None, typer.Option("--date", help="The claims of this day (YYYY-MM-DD).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Claims whose reason contains this text.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every failed claim.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the failed claims matching; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the claims as JSON.")] = False,
) -> None:
    """Send again the claims that failed for good, once their cause is fixed.

    Choose them by claim, debtor, date or reason (several filters: all must match), or
    --all. They are sent by the next `cobro dispatch` or run, to the recipients that
    have not received them yet.
    """
    from cobro.engine.requeue import failed_claims
    from cobro.engine.requeue import requeue as requeue_claims
    from cobro.workspace import utcnow

    day = parse_date(on, "--date")
    if not every and claim is None and debtor is None and day is None and not reason:
        fail("say which failed claims: --claim, --debtor, --date, --reason or --all", 2)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            found = failed_claims(
                conn, ws.company_id, claim=claim, debtor=debtor, on=day, reason=reason
            )
            done = 0 if dry_run else requeue_claims(conn, ws.company_id, found, utcnow())
    finally:
        ws.close()
    if as_json:
        print_json({"requeued": done, "claims": [x.to_json() for x in found]})
        return
    if found:
        table = Table("claim", "debtor", "name", "step", "date", "reason")
        for x in found:
            add_row(
                table, x.outbox_id, x.customer, x.customer_name, x.step, x.occurrence_on, x.reason
            )
        out.print(table)
    out.print(
        f"{len(found)} failed claim(s) match; none changed (--dry-run)"
        if dry_run
        else f"requeued {done} claim(s); `cobro dispatch` sends them",
        markup=False,
    )


def resend(
    ctx: typer.Context,
    claim: Annotated[
        int,
        typer.Argument(
            min=1, max=MAX_ID, help="The claim's number (outbox id in `cobro history`)."
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Only to this email address or phone number (the debtor's message)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Send a claim's message again, exactly as it was sent, as a new delivery.

    Without --to it goes to every recipient the claim reached; with --to only to that
    address (an email address or a phone number), as the debtor's message of that
    channel. The resend goes through the outbox like every message and is recorded, with
    its evidence, as a resend of the original delivery (`cobro history` shows it).
    """
    from sqlalchemy.exc import DBAPIError

    from cobro.engine.resend import ResendError, resend_claim, resend_outcome
    from cobro.engine.runs import dispatch_rows
    from cobro.workspace import utcnow

    ws = open_ws(ctx)
    now = utcnow()
    try:
        with ws.engine.begin() as conn:
            row = resend_claim(conn, ws.config, ws.company_id, claim, to=to, at=now)
        dispatch_rows(ws, frozenset({row}), now)
        with ws.engine.connect() as conn:
            outcome = resend_outcome(conn, ws.config, ws.company_id, ws.secret, claim, row)
    except ResendError as exc:
        fail(str(exc), 2)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail(f"configuration error; the resend of claim {claim} waits in the outbox", 2)
    except CobroError as exc:
        fail(str(exc), 2)
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()
        fail(f"database unavailable: {first[0] if first else type(exc).__name__}", 1)
    finally:
        ws.close()
    expired = outcome.link_expired(ws.config, now)
    if as_json:
        print_json({**outcome.to_json(), "link_expired_at": expired})
    else:
        for d in outcome.deliveries:
            line = f"#{d['id']} {d['channel']} → {d['recipient']} {d['status']}"
            if d["resend_of"] is not None:
                line += f" (resend of delivery #{d['resend_of']})"
            if d["error"]:
                line += f": {d['error']}"
            out.print(line, markup=False, highlight=False)
        out.print(f"claim {claim}: resend {outcome.resend} {outcome.status}", markup=False)
    if expired is not None:
        err.print(
            f"note: the message is resent as it was sent; a pay link in it expired on "
            f"{expired.date().isoformat()} (company.link_max_age_days: "
            f"{ws.config.company.link_max_age_days})",
            highlight=False,
            markup=False,
        )
    if outcome.status != "sent":
        failed = outcome.status == "failed"
        why = outcome.reason or "not delivered yet; `cobro dispatch` retries it"
        errors = [] if as_json else [f"resend {outcome.resend}: {why}"]
        report_not_sent(errors, int(failed), int(not failed))
