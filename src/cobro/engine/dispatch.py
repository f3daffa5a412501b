"""The daily run's second half: outbox rows become delivered messages.

Rows are claimed in batches (``planned -> sending`` with a lease on the real
clock, signed by this process), oldest first, except that rows no day's run planned (an
event's notice such as a payment receipt, a resend, a pay link asked for on a call) go
ahead of the day's claims: a batch holds only those while any is ready. A watch's pass
(``live``) also ends after the batch during which such a row fell due, and the next pass
sends it first: a receipt waits for one batch of the day's claims, not for all of them.
A batch's items are read again so that anything paid since planning is left out, and so
is anything disputed or promised since (a row with nothing left to claim is cancelled);
its messages are rendered and sent concurrently over the channel. Each message's
delivery is recorded, with its evidence, as soon as the server has answered, and before
its connection takes the next message; a row's outcome is recorded once its messages are
done. Both writes happen only while this dispatcher still holds the row.

A crash leaves rows in ``sending``: another dispatcher takes them over when the
lease expires, or at once when the holder was a process of the same host that is
gone. Recipients who already have a delivery are not sent to again, so a crash
resends at most one message per connection, under the same Message-ID. With frequency
caps, or calls (``channels.voice``), a debtor's rows are held by one dispatcher at a time
(``cobro.engine.leases``), so that the caps and the weekly limit of calls count what every
dispatcher sent.

Temporary failures are retried, with waits growing up to a cap, for
``dispatch.retry_hours``; a claim that fails for good names its debtor and
reason, and opens a staff task. A channel whose connections keep failing is
left alone for a while (the circuit breaker) and its messages go on the next
channel of the phase, or wait for the next pass.

The webhook events a batch raises (``claim.sent``, ``claim.failed``, ``task.created``,
``account.blocked`` and the ``ticket.requested`` of phases naming an endpoint) are
enqueued in the transaction that records it; webhook deliveries (rows of steps
``webhook/...``) are posted after the claims of each pass (``cobro.engine.webhook_dispatch``).

``Dispatcher`` runs the passes; its parts are classes it inherits from, each in a module of
its own and sharing the state ``dispatch_state`` declares: claiming and loading a batch
(``dispatch_load``), deciding and rendering its messages (``dispatch_compose``,
``dispatch_render``), sending them (``dispatch_send``), recording the deliveries
(``dispatch_deliveries``) and each row's outcome (``dispatch_outcomes``). The names of the
parts other modules use (``DispatchReport``, ``Failure``, ``Job``...) are importable from here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from babel import Locale
from sqlalchemy import Engine, func, select

from cobro.channels.base import Attachment, Channel
from cobro.channels.webhook import WebhookChannel
from cobro.config import CobroConfig
from cobro.domain.model import OutboxStatus, Policy
from cobro.engine.call_limit import WeeklyCalls
from cobro.engine.contact_caps import CapCounter
from cobro.engine.deliveries import Barriers, followup_of, settle_in_doubt
from cobro.engine.dispatch_compose import Composing
from cobro.engine.dispatch_jobs import MAIN_ROLES as MAIN_ROLES
from cobro.engine.dispatch_jobs import NO_CHANNEL as NO_CHANNEL
from cobro.engine.dispatch_jobs import Attempted as Attempted
from cobro.engine.dispatch_jobs import Job as Job
from cobro.engine.dispatch_jobs import Person as Person
from cobro.engine.dispatch_jobs import PushTarget as PushTarget
from cobro.engine.dispatch_jobs import Route as Route
from cobro.engine.dispatch_load import FAILURE_STATES as FAILURE_STATES
from cobro.engine.dispatch_load import Loading
from cobro.engine.dispatch_outcomes import FAILED_TASK as FAILED_TASK
from cobro.engine.dispatch_outcomes import NO_CHANNEL_TASK as NO_CHANNEL_TASK
from cobro.engine.dispatch_outcomes import RETRY_KINDS as RETRY_KINDS
from cobro.engine.dispatch_outcomes import RecordingOutcomes
from cobro.engine.dispatch_report import DispatchReport as DispatchReport
from cobro.engine.dispatch_report import Failure as Failure
from cobro.engine.dispatch_send import PARALLEL as PARALLEL
from cobro.engine.dispatch_send import Sending
from cobro.engine.leases import holder_name
from cobro.engine.messages import MessageSpec
from cobro.engine.outbox import IS_PROMPT
from cobro.engine.sending import Breaker
from cobro.engine.webhooks import ticket_endpoints
from cobro.errors import ConfigProblem, SenderNotConfigured
from cobro.render.logo import workspace_logo
from cobro.render.templates import TemplateSet
from cobro.store import tables as t
from cobro.store.db import retrying
from cobro.workspace import utcnow

FIRST_BATCH = 8  # rows claimed at first; the size then follows how long batches take
BATCH_SECONDS = 0.5  # what one batch (claim, render, send, record) should take at most


def require_sender(config: CobroConfig, config_file: str = "cobro.yaml") -> None:
    """Refuse to send anything until a valid sender address is configured (seed 003)."""
    if config.company.sender is None:
        raise SenderNotConfigured(
            [
                ConfigProblem(
                    config_file,
                    None,
                    "company.sender.email",
                    "no valid sender address is configured; nothing is sent until one is",
                )
            ]
        )


class Dispatcher(Loading, Composing, Sending, RecordingOutcomes):
    """Dispatches one company's outbox rows due by an instant.

    ``as_of`` (the dated instant a run acts on) only decides what is due and stamps
    what is recorded; leases are measured on ``clock``, the real clock. ``breakers``
    may be shared between passes (``watch``); ``orphans`` names holders of earlier
    passes of this process that stopped half-way (their rows are taken over at once).
    ``pace(channel)``, when given, is awaited before each message goes on that channel.
    """

    def __init__(
        self,
        engine: Engine,
        config: CobroConfig,
        company_id: int,
        secret: str,
        templates: TemplateSet,
        channels: dict[str, Channel],
        as_of: datetime,
        batch_size: int = 500,
        config_file: str = "cobro.yaml",
        files_root: Path | None = None,
        channels_open: bool = False,
        on_batch: Callable[[DispatchReport], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        breakers: dict[str, Breaker] | None = None,
        orphans: frozenset[str] = frozenset(),
        only: frozenset[int] | None = None,
        pace: Callable[[str], Awaitable[None]] | None = None,
        live: bool = False,
    ) -> None:
        self.engine = engine
        # A pass of a watch (``cobro.engine.runs.watch``): it ends after the batch during
        # which a row no day's run planned fell due, so that the next pass, as of then,
        # sends it ahead of the rest of the day's claims.
        self.live = live
        self.pace = pace  # waits for a channel's turn (provider rate limits shared by workers)
        self.on_batch = on_batch  # told what each batch did (progress)
        self.clock = clock
        self.settings = config.dispatch
        self.breakers = breakers if breakers is not None else {}
        self.orphans = orphans
        self.only = only  # dispatch only these outbox rows (a resend sent at once)
        # Unique per dispatcher: two dispatchers of one process never pass for each other.
        self.holder = f"{holder_name()}/{uuid.uuid4().hex[:8]}"
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.channels_open = channels_open  # the caller starts and stops the channels
        self.config = config
        self.company_id = company_id
        self.secret = secret
        self.templates = templates
        self.channels = channels
        self.as_of = as_of
        self.batch_size = batch_size
        self.config_file = config_file
        self.sender_domain = (
            config.company.sender.email.rpartition("@")[2] if config.company.sender else "local"
        )
        self._company_lang = Locale.parse(config.company.locale).language
        self._locales: dict[str, tuple[str, str]] = {}
        self._deadline = time.monotonic() + self.settings.pass_deadline_s
        self._specs: dict[str, MessageSpec] = {}
        self._policies: dict[str, Policy] = {}
        self._files: dict[str, Attachment] = {}
        self.files_root = files_root
        self._logo = workspace_logo(files_root, config.company.branding.logo_file)
        self._barriers = Barriers({}, {})
        self._ahead: set[str] = set()  # refs of deliveries recorded before their hand-over
        self._tickets = ticket_endpoints(config)  # step -> endpoint sent a ticket.requested
        self._calendar = config.calendar.send_calendar()
        self._closed: dict[str, dict[str, datetime]] = {}  # per time zone: closed channels
        self._caps = CapCounter(config.calendar.caps, config.company.timezone)
        # The calls of a batch's debtors within 7 days, those the batch makes included
        # (``call.max_per_7_days``, ``cobro.engine.call_limit``).
        self._calls = WeeklyCalls()
        # A debtor's rows held by one dispatcher at a time (``cobro.engine.leases``): with
        # frequency caps, and whenever the company can call (``channels.voice``: every phase
        # that calls has a weekly limit, ``call.max_per_7_days``, and a resend of a call
        # calls again), so that what limits a debtor's messages counts every dispatcher's.
        self._one_holder = bool(self._caps.caps) or config.channels.voice is not None
        self._passed_over = False  # the last claim left every row to another dispatcher

    async def run(self) -> DispatchReport:
        """Dispatch every ready row, a batch at a time: claim, render, send, record.

        (Rendering the next batch in a thread while one is on the wire was
        measured slower: both compete for the interpreter lock.)
        """
        require_sender(self.config, self.config_file)
        if self.only is None:
            retrying(self._settle_in_doubt)
        report = DispatchReport()
        started: list[Channel] = []
        try:
            for channel in () if self.channels_open else self.channels.values():
                await channel.start()
                started.append(channel)
            # Batches grow while they are quick (plain emails: up to batch_size) and shrink
            # while they are slow (receipts with a PDF each), so that the first message of
            # a batch never waits long for the last one to be rendered.
            limit = min(FIRST_BATCH, self.batch_size)
            self._deadline = time.monotonic() + self.settings.pass_deadline_s
            while time.monotonic() < self._deadline:
                began = time.monotonic()
                jobs = retrying(partial(self._prepare, limit))
                if not jobs:
                    break
                await self._send(jobs)
                batch = retrying(partial(self._record_batch, jobs))
                report.add(batch)
                if self.on_batch is not None:
                    self.on_batch(batch)
                if self.live and retrying(self._prompt_due_since):
                    break
                took = time.monotonic() - began
                if took < BATCH_SECONDS / 2 and len(jobs) == limit:
                    limit = min(limit * 2, self.batch_size)
                elif took > BATCH_SECONDS:
                    limit = max(limit // 2, 1)
            webhooks = self.channels.get(WebhookChannel.name)
            if self.only is None and isinstance(webhooks, WebhookChannel):
                posted = await self._post_webhooks(webhooks)
                report.add(posted)
                if self.on_batch is not None:
                    self.on_batch(posted)
        finally:
            for channel in started:
                await channel.stop()
        return report

    def _settle_in_doubt(self) -> None:
        """Deliveries left ``sending`` too long without a report (``settle_in_doubt``)."""
        with self.engine.begin() as conn:
            settle_in_doubt(
                conn,
                self.company_id,
                self.as_of,
                self.settings.in_doubt_minutes,
                followup_of(self.config),
            )

    async def post_webhooks(self) -> DispatchReport:
        """Post the company's webhook deliveries that are due, and nothing else (a
        worker's task: the claims go in shards)."""
        channel = self.channels.get(WebhookChannel.name)
        if not isinstance(channel, WebhookChannel):
            return DispatchReport()
        self._deadline = time.monotonic() + self.settings.pass_deadline_s
        if not self.channels_open:
            await channel.start()
        try:
            return await self._post_webhooks(channel)
        finally:
            if not self.channels_open:
                await channel.stop()

    async def _post_webhooks(self, channel: WebhookChannel) -> DispatchReport:
        """Post the webhook deliveries due (``cobro.engine.webhook_dispatch``): after the
        claims, so that the events they raised go out in the same pass."""
        from cobro.engine.webhook_dispatch import WebhookSender

        return await WebhookSender(
            self.engine,
            self.company_id,
            channel,
            self.as_of,
            self.holder,
            self.settings,
            self._deadline,
            self.clock,
            self.orphans,
        ).run()

    def due_count(self) -> int:
        """How many outbox rows are ready to be sent as of ``as_of``."""
        o = t.outbox.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(t.outbox)
                    .where(
                        o.company_id == self.company_id,
                        o.status.in_([OutboxStatus.PLANNED.value, OutboxStatus.SENDING.value]),
                        o.next_attempt_at <= self.as_of,
                    )
                ).scalar_one()
            )

    def _prompt_due_since(self) -> bool:
        """Whether a row no day's run planned (an event's notice, a resend...) has fallen
        due since ``as_of``: this pass does not take it, the next one does, first."""
        o = t.outbox.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(o.id)
                .where(
                    o.company_id == self.company_id,
                    IS_PROMPT,
                    o.status == OutboxStatus.PLANNED.value,
                    o.next_attempt_at > self.as_of,
                    o.next_attempt_at <= self.clock(),
                )
                .limit(1)
            ).first()
        return found is not None

    def _record_batch(self, jobs: list[Job]) -> DispatchReport:
        with self.engine.begin() as conn:
            return self._record(conn, jobs)

    def _prepare(self, limit: int) -> list[Job]:
        """Claim the next batch, load what it needs and render it (no sending)."""
        while True:
            with self.engine.begin() as conn:
                jobs = self._claim(conn, limit)
                if jobs:
                    self._load(conn, jobs)
            # Rows left to another dispatcher that had just claimed their debtors: claim
            # again (it has committed, the claim now passes them by).
            if jobs or not self._passed_over:
                break
        self._compose(jobs)
        return jobs
