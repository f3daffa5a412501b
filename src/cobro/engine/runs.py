"""The daily collections run: plan a date into the outbox, then dispatch what is due."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, update

from cobro.channels.base import Channel
from cobro.channels.email import CaptureTransport, EmailChannel, SmtpSettings, SmtpTransport
from cobro.channels.webhook import WebhookChannel
from cobro.domain.calendar import send_instant
from cobro.engine.dispatch import Dispatcher, DispatchReport
from cobro.engine.planner import PlanResult, plan_day
from cobro.engine.sending import Breaker
from cobro.evidence.checkpoint import Checkpoint, checkpoint_head
from cobro.progress import SILENT, Progress
from cobro.render.templates import TemplateSet
from cobro.store import tables as t
from cobro.store.db import connection_lost, retrying
from cobro.workspace import Workspace, utcnow

if TYPE_CHECKING:  # imported when configured: their HTTP libraries are slow to load
    from cobro.channels.push import PushChannel
    from cobro.channels.sms import SmsChannel
    from cobro.channels.voice import VoiceChannel


@dataclass(frozen=True)
class RunReport:
    date: date
    as_of: datetime
    planned: int
    items: int
    sent: int
    failed: int
    skipped: int  # cancelled because paid before sending
    retrying: int
    deliveries: int
    by_channel: dict[str, int]
    blocked: int
    unblocked: int
    tasks: int
    cost: str
    errors: tuple[str, ...]
    # Claims that failed for good: (outbox id, debtor's external id, debtor's name, reason).
    failures: tuple[tuple[int, str, str, str], ...] = ()
    promises_kept: int = 0  # promises to pay settled by this run's plan
    promises_broken: int = 0
    waiting: int = 0  # claims left for their channel's hours (calendar.windows, holidays)
    held_back: int = 0  # claims a frequency cap held back (calendar.caps)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["date"] = self.date.isoformat()
        d["as_of"] = self.as_of.isoformat()
        d["errors"] = list(self.errors)
        d["failures"] = [
            {"outbox_id": i, "customer": c, "customer_name": n, "reason": r}
            for i, c, n, r in self.failures
        ]
        return d


def email_channel(ws: Workspace, clock: datetime) -> EmailChannel:
    """The email channel configured for the workspace."""
    cfg = ws.config.channels.email
    smtp = cfg.smtp
    transport: CaptureTransport | SmtpTransport
    if smtp.host == "capture":
        transport = CaptureTransport(ws.mail_dir / clock.date().isoformat())
    else:
        password = os.environ.get(smtp.password_env) if smtp.password_env else None
        transport = SmtpTransport(
            SmtpSettings(
                host=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=password,
                starttls=smtp.starttls,
                tls=smtp.tls,
                connections=smtp.connections,
                timeout_s=smtp.timeout_s,
            )
        )
    sender = ws.config.company.sender
    return EmailChannel(
        transport,
        sender_email=sender.email if sender else "",
        sender_name=(sender.name if sender and sender.name else ws.config.company.name),
        reply_to=ws.config.company.reply_to,
        cost=cfg.cost,
        clock=clock,
        bounce_domain=cfg.bounces.domain,
    )


def sms_status_callback(ws: Workspace) -> str | None:
    """The URL Twilio reports each SMS's status to (None: status callbacks are off)."""
    cfg = ws.config.channels.sms
    if cfg is None or not cfg.status_callbacks:
        return None
    company = ws.config.company
    return cfg.status_callback or f"{company.server_url}/callbacks/{company.id}/twilio/status"


def sms_channel(ws: Workspace) -> SmsChannel | None:
    """The SMS channel, when ``channels.sms`` is configured; the token comes from the
    environment variable it names and is never stored or logged."""
    cfg = ws.config.channels.sms
    if cfg is None:
        return None
    from cobro.channels.sms import SmsChannel

    return SmsChannel(
        cfg.account_sid,
        os.environ.get(cfg.auth_token_env),
        cfg.sender,
        api_url=cfg.api_url,
        status_callback=sms_status_callback(ws),
        cost_per_segment=cfg.cost_per_segment,
        max_segments=cfg.max_segments,
        smart_encoding=cfg.smart_encoding,
        timeout_s=cfg.timeout_s,
        token_source=f"the environment variable {cfg.auth_token_env}",
    )


def voice_channel(ws: Workspace) -> VoiceChannel | None:
    """The call channel, when ``channels.voice`` is configured; Twilio fetches each call's
    TwiML from, and reports its outcome to, ``cobro serve`` at ``company.public_url``."""
    cfg = ws.config.channels.voice
    if cfg is None:
        return None
    from cobro.channels.voice import VoiceChannel

    company = ws.config.company
    return VoiceChannel(
        cfg.account_sid,
        os.environ.get(cfg.auth_token_env),
        cfg.caller_id,
        callback_base=f"{company.server_url}/callbacks/{company.id}/twilio",
        api_url=cfg.api_url,
        status_callback=cfg.status_callback,
        machine_detection=cfg.machine_detection,
        voicemail=cfg.voicemail,
        press_for_sms=cfg.press_for_sms,
        ring_seconds=cfg.ring_seconds,
        cost_per_call=cfg.cost_per_call,
        timeout_s=cfg.timeout_s,
        token_source=f"the environment variable {cfg.auth_token_env}",
    )


def push_channel(ws: Workspace) -> PushChannel | None:
    cfg = ws.config.channels.push
    if cfg is None:
        return None
    from cobro.channels.push import PushChannel, read_private_key

    key, problem = None, ""
    try:
        key = read_private_key(cfg.private_key_env, ws.root / cfg.private_key_file)
    except ValueError as exc:
        problem = f"no VAPID private key: {exc}"
    return PushChannel(
        key,
        cfg.subject,
        ttl_s=cfg.ttl_s,
        urgency=cfg.urgency,
        cost=cfg.cost,
        timeout_s=cfg.timeout_s,
        key_problem=problem,
    )


def default_channels(ws: Workspace, clock: datetime) -> dict[str, Channel]:
    """Every channel the workspace configures, and the webhooks' (which posts nothing
    until a company has endpoints)."""
    channels: dict[str, Channel] = {
        "email": email_channel(ws, clock),
        WebhookChannel.name: WebhookChannel(),
    }
    sms, push = sms_channel(ws), push_channel(ws)
    if sms is not None:
        channels["sms"] = sms
    if push is not None:
        channels["push"] = push
    voice = voice_channel(ws)
    if voice is not None:
        channels["voice"] = voice
    return channels


_TEMPLATES: dict[tuple[str | None, str], TemplateSet] = {}


def templates_for(ws: Workspace) -> TemplateSet:
    """The workspace's templates, compiled once per process (edited files are reloaded)."""
    from babel import Locale

    user = ws.templates_dir if ws.templates_dir.is_dir() else None
    key = (str(user) if user else None, Locale.parse(ws.config.company.locale).language)
    found = _TEMPLATES.get(key)
    if found is None:
        found = _TEMPLATES[key] = TemplateSet(user, key[1])
    return found


def _metrics() -> ModuleType | None:
    """``cobro.engine.metrics`` when this process serves ``/metrics`` (``cobro serve``,
    ``cobro worker``): counters are kept there only, and ``cobro run`` does not load
    prometheus-client."""
    return sys.modules.get("cobro.engine.metrics")


def count_run(company: str, planned: int, seconds: float) -> None:
    """Count a run that planned ``planned`` rows in ``seconds`` in this process's metrics
    (when it serves them)."""
    if (metrics := _metrics()) is not None:
        metrics.count_run(company, planned, seconds)


def dispatch_due(
    ws: Workspace,
    as_of: datetime,
    channels: dict[str, Channel] | None = None,
    templates: TemplateSet | None = None,
    progress: Progress = SILENT,
    clock: Callable[[], datetime] = utcnow,
) -> DispatchReport:
    """Send every outbox row due by ``as_of``; leases are measured on ``clock``;
    ``progress`` follows it batch by batch."""
    dispatcher = workspace_dispatcher(
        ws,
        as_of,
        channels or default_channels(ws, as_of),
        templates or templates_for(ws),
        clock=clock,
    )
    if progress is not SILENT:
        so_far = DispatchReport()

        def on_batch(batch: DispatchReport) -> None:
            so_far.add(batch)
            done = so_far.sent + so_far.failed + so_far.cancelled + so_far.retrying
            done += so_far.waiting
            progress.advance(done, dispatch_summary(so_far))

        dispatcher.on_batch = on_batch
        progress.start("send", dispatcher.due_count())
    report = asyncio.run(dispatcher.run())
    checkpoint(ws, as_of)
    progress.finish(dispatch_summary(report))
    if (metrics := _metrics()) is not None:
        metrics.count_dispatch(ws.config.company.id, report)
    return report


def dispatch_summary(report: DispatchReport) -> str:
    """``sent 120, failed 1, skipped 3; email 100, sms 20``."""
    text = f"sent {report.sent}, failed {report.failed}, skipped {report.cancelled}"
    if report.retrying:
        text += f", retrying {report.retrying}"
    if report.waiting:
        text += f", waiting for their hours {report.waiting}"
    if report.held_back:
        text += f" (held back by frequency caps {report.held_back})"
    if report.by_channel:
        text += "; " + ", ".join(f"{ch} {n}" for ch, n in sorted(report.by_channel.items()))
    return text


def checkpoint(ws: Workspace, at: datetime) -> Checkpoint | None:
    """Sign the evidence chain's head as of ``at`` (when it moved since the last one)."""
    return checkpoint_head(ws.engine, ws.company_id, ws.config.company.id, ws.root, at)


def workspace_dispatcher(
    ws: Workspace,
    as_of: datetime,
    channels: dict[str, Channel],
    templates: TemplateSet,
    channels_open: bool = False,
    clock: Callable[[], datetime] = utcnow,
    breakers: dict[str, Breaker] | None = None,
    orphans: frozenset[str] = frozenset(),
    only: frozenset[int] | None = None,
    pace: Callable[[str], Awaitable[None]] | None = None,
    live: bool = False,
) -> Dispatcher:
    """A dispatcher for the workspace's company as of ``as_of`` (of the rows ``only``,
    when given; ``live``: a pass of a watch, ``Dispatcher``)."""
    return Dispatcher(
        ws.engine,
        ws.config,
        ws.company_id,
        ws.secret,
        templates,
        channels,
        as_of,
        config_file=str(ws.root / "cobro.yaml"),
        files_root=ws.root,
        channels_open=channels_open,
        clock=clock,
        breakers=breakers,
        orphans=orphans,
        only=only,
        pace=pace,
        live=live,
    )


def dispatch_rows(
    ws: Workspace,
    ids: frozenset[int],
    as_of: datetime,
    channels: dict[str, Channel] | None = None,
    clock: Callable[[], datetime] = utcnow,
    pace: Callable[[str], Awaitable[None]] | None = None,
) -> DispatchReport:
    """Send the outbox rows ``ids`` that are due by ``as_of``, and nothing else (a resend
    asked for by hand goes at once, not with whatever else is due; a worker's shard);
    ``pace(channel)`` is awaited before each message on that channel."""
    dispatcher = workspace_dispatcher(
        ws,
        as_of,
        channels or default_channels(ws, as_of),
        templates_for(ws),
        clock=clock,
        only=ids,
        pace=pace,
    )
    report = asyncio.run(dispatcher.run())
    checkpoint(ws, as_of)
    if (metrics := _metrics()) is not None:
        metrics.count_dispatch(ws.config.company.id, report)
    return report


def post_webhooks(
    ws: Workspace, as_of: datetime, clock: Callable[[], datetime] = utcnow
) -> DispatchReport:
    """Post the company's webhook deliveries due by ``as_of`` (and no claim)."""
    channels: dict[str, Channel] = {WebhookChannel.name: WebhookChannel()}
    dispatcher = workspace_dispatcher(ws, as_of, channels, templates_for(ws), clock=clock)
    return asyncio.run(dispatcher.post_webhooks())


def run_day(
    ws: Workspace,
    run_on: date,
    as_of: datetime | None = None,
    channels: dict[str, Channel] | None = None,
    templates: TemplateSet | None = None,
    progress: Progress = SILENT,
    clock: Callable[[], datetime] = utcnow,
    run_id: int | None = None,
    send: bool = True,
) -> RunReport:
    """Plan ``run_on`` and dispatch what is due by ``as_of`` (default: that day's send time).

    Each step is one transaction, tried again if the database connection drops.
    ``progress`` hears of two phases: ``plan``, then ``send`` batch by batch. ``run_id``:
    the run recorded beforehand by ``start_run`` (else it is recorded here). The report
    is kept with the run (``runs.report``). ``send=False`` plans only: the workers
    send the planned rows (``cobro.workers``)."""
    company = ws.config.company
    send_at = send_instant(run_on, company.send_time, company.timezone)
    as_of = as_of or send_at
    began = time.monotonic()
    progress.start("plan")

    def planned() -> tuple[int, Any]:
        with ws.engine.begin() as conn:
            found = run_id
            if found is None:
                found = _insert_run(conn, ws.company_id, run_on, as_of)
            return found, plan_day(conn, ws.config, ws.company_id, run_on, as_of, found)

    run_id, plan = retrying(planned)
    progress.finish(f"planned {plan.planned} message(s) covering {plan.items} receivable(s)")
    dispatched = DispatchReport()
    if send and as_of >= send_at:
        dispatched = dispatch_due(ws, as_of, channels, templates, progress, clock)

    report = run_report(run_on, as_of, plan, dispatched)

    def finished() -> None:
        with ws.engine.begin() as conn:
            record_report(conn, run_id, report)

    retrying(finished)
    checkpoint(ws, as_of)  # the plan's own evidence (accounts released) when nothing was sent
    count_run(company.id, plan.planned, time.monotonic() - began)
    return report


def run_report(
    run_on: date, as_of: datetime, plan: PlanResult, dispatched: DispatchReport
) -> RunReport:
    """The report of a run that planned ``plan`` and sent ``dispatched``."""
    return RunReport(
        date=run_on,
        as_of=as_of,
        planned=plan.planned,
        items=plan.items,
        sent=dispatched.sent,
        failed=dispatched.failed,
        skipped=dispatched.cancelled,
        retrying=dispatched.retrying,
        deliveries=dispatched.deliveries,
        by_channel=dict(sorted(dispatched.by_channel.items())),
        blocked=dispatched.blocked,
        unblocked=plan.unblocked,
        tasks=plan.tasks,
        cost=str(dispatched.cost),
        errors=(*plan.problems, *dispatched.errors),
        failures=tuple(
            (f.outbox_id, f.customer, f.customer_name, f.reason) for f in dispatched.failures
        ),
        promises_kept=plan.promises_kept,
        promises_broken=plan.promises_broken,
        waiting=dispatched.waiting,
        held_back=dispatched.held_back,
    )


def record_report(conn: Connection, run_id: int, report: RunReport) -> None:
    """Keep ``report`` with run ``run_id``, which it ends (as of the instant it reports)."""
    conn.execute(
        update(t.runs)
        .where(t.runs.c.id == run_id)
        .values(
            planned=report.planned,
            sent=report.sent,
            failed=report.failed,
            skipped=report.skipped,
            finished_at=report.as_of,
            report=report.to_json(),
            error=None,
        )
    )


def _insert_run(
    conn: Connection, company_id: int, run_on: date, as_of: datetime, at: datetime | None = None
) -> int:
    return int(
        conn.execute(
            insert(t.runs)
            .values(company_id=company_id, run_on=run_on, as_of=as_of, started_at=at or as_of)
            .returning(t.runs.c.id)
        ).scalar_one()
    )


def start_run(
    ws: Workspace, run_on: date, as_of: datetime | None = None, at: datetime | None = None
) -> int:
    """Record a run of ``run_on`` as started at ``at`` (default: the instant it acts as of),
    before ``run_day(..., run_id=)`` does its work: the run's id for a caller that answers
    before the run ends (the REST API)."""
    company = ws.config.company
    as_of = as_of or send_instant(run_on, company.send_time, company.timezone)
    with ws.engine.begin() as conn:
        return _insert_run(conn, ws.company_id, run_on, as_of, at or as_of)


def end_run(ws: Workspace, run_id: int, at: datetime, error: str | None = None) -> None:
    """Record when run ``run_id`` ended; with ``error``, that it stopped before it
    finished, and why (a run that has already ended keeps its end)."""
    r = t.runs.c

    def ended() -> None:
        where = [r.id == run_id, r.company_id == ws.company_id]
        if error is not None:
            where.append(r.finished_at.is_(None))
        with ws.engine.begin() as conn:
            conn.execute(
                update(t.runs)
                .where(*where)
                .values(finished_at=at, **({"error": error[:2000]} if error else {}))
            )

    retrying(ended)


def watch(
    ws: Workspace,
    stop: threading.Event,
    poll_s: float = 0.2,
    on_pass: Callable[[DispatchReport, float], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DispatchReport:
    """Send what is due, again and again, until ``stop`` is set: event notices go out as
    they arrive. Several watchers (processes or hosts) may share one database; each row
    is claimed by one of them. Channels (SMTP connections...) and their circuit breakers
    stay open between passes. Waits ``poll_s`` after a pass that found nothing;
    ``on_pass`` gets each pass's report and how long it took.

    A pass stopped by the database (connection dropped, server restarting) is told to
    ``on_error`` and the watch goes on after a wait that doubles up to 5 s; the rows that
    pass held are taken over by the next one."""
    return asyncio.run(_watch(ws, stop, poll_s, on_pass, on_error, clock))


async def _watch(
    ws: Workspace,
    stop: threading.Event,
    poll_s: float,
    on_pass: Callable[[DispatchReport, float], None] | None,
    on_error: Callable[[str], None] | None,
    clock: Callable[[], datetime],
) -> DispatchReport:
    total = DispatchReport()
    templates = templates_for(ws)
    channels = default_channels(ws, clock())
    email = channels["email"]
    loop = asyncio.get_running_loop()
    started: list[Channel] = []
    breakers: dict[str, Breaker] = {}
    orphans: set[str] = set()
    wait_s = 0.0
    unsigned = False  # deliveries recorded since the last checkpoint
    try:
        for channel in channels.values():
            await channel.start()
            started.append(channel)
        while not stop.is_set():
            now = clock()
            if isinstance(email, EmailChannel):
                email.clock = now  # the Date header
                if isinstance(email.transport, CaptureTransport):
                    email.transport.directory = ws.mail_dir / now.date().isoformat()
            began = time.monotonic()
            dispatcher = workspace_dispatcher(
                ws,
                now,
                channels,
                templates,
                channels_open=True,
                clock=clock,
                breakers=breakers,
                orphans=frozenset(orphans),
                live=True,
            )
            try:
                report = await dispatcher.run()
                total.add(report)
                if (metrics := _metrics()) is not None:
                    metrics.count_dispatch(ws.config.company.id, report)
                unsigned = unsigned or bool(report.sent + report.failed + report.retrying)
                if unsigned:
                    checkpoint(ws, now)
                    unsigned = False
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                orphans.add(dispatcher.holder)
                wait_s = min(max(wait_s * 2, 0.1), 5.0)
                if on_error is not None:
                    on_error(
                        f"database unavailable ({type(exc).__name__}); trying again in {wait_s:g} s"
                    )
                await loop.run_in_executor(None, stop.wait, wait_s)
                continue
            wait_s = 0.0
            if on_pass is not None:
                on_pass(report, time.monotonic() - began)
            busy = report.sent + report.failed + report.cancelled + report.retrying
            if not busy or report.retrying == busy:
                # nothing done, or only rows waiting for a channel: do not spin
                await loop.run_in_executor(None, stop.wait, poll_s)
    finally:
        for channel in started:
            await channel.stop()
    return total
