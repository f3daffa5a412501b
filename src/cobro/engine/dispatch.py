"""The daily run's second half: outbox rows become delivered messages.

Rows are claimed in batches (``planned -> sending`` with a lease on the real
clock, signed by this process), their items re-read so that anything paid since
planning is left out, and so is anything disputed or promised since (a row with nothing
left to claim is cancelled), rendered, and
sent concurrently over the channel. Each message's delivery is recorded, with its
evidence, as soon as the server has answered, and before its connection takes
the next message; a row's outcome is recorded once its messages are done. Both
writes happen only while this dispatcher still holds the row.

A crash leaves rows in ``sending``: another dispatcher takes them over when the
lease expires, or at once when the holder was a process of the same host that is
gone. Recipients who already have a delivery are not sent to again, so a crash
resends at most one message per connection, under the same Message-ID.

Temporary failures are retried, with waits growing up to a cap, for
``dispatch.retry_hours``; a claim that fails for good names its debtor and
reason, and opens a staff task. A channel whose connections keep failing is
left alone for a while (the circuit breaker) and its messages go on the next
channel of the phase, or wait for the next pass.

The webhook events a batch raises (``claim.sent``, ``claim.failed``, ``task.created``,
``account.blocked`` and the ``ticket.requested`` of phases naming an endpoint) are
enqueued in the transaction that records it; webhook deliveries (rows of steps
``webhook/...``) are posted after the claims of each pass (``cobro.engine.webhook_dispatch``).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from cobro.channels.base import (
    Attachment,
    Channel,
    Outgoing,
    handed_over,
    handover_of,
    reports_back,
)
from cobro.channels.webhook import WebhookChannel
from cobro.config import CobroConfig
from cobro.config.schema import CallSettings
from cobro.domain.delivery import FAILURES, DeliveryState, moves_to, state_of_outcome
from cobro.domain.escalation import reached_phase
from cobro.domain.model import OutboxStatus, Policy, Recipient
from cobro.domain.money import Money, totals_by_currency
from cobro.engine.accounts import block_accounts
from cobro.engine.contact_caps import CapCounter, capped_step
from cobro.engine.deliveries import Barriers, barriers, followup_of, settle_in_doubt
from cobro.engine.leases import LEASE, gone_holders, holder_name
from cobro.engine.links import link_url, make_token
from cobro.engine.messages import (
    PAYLINK,
    RESEND_PREFIX,
    MessageSpec,
    load_attachment,
    message_spec,
)
from cobro.engine.notices import UNREACHABLE, main_role, notice_context, upcoming_cancel_reason
from cobro.engine.optouts import make_unsubscribe_token, unsubscribe_url
from cobro.engine.pauses import paused_items
from cobro.engine.resend import Original, originals_by_id, resent_message, targets
from cobro.engine.sending import Breaker, Ledger, backoff
from cobro.engine.subscriptions import UPCOMING
from cobro.engine.webhooks import (
    IS_WEBHOOK,
    TICKET,
    Event,
    claim_kind,
    emit,
    money,
    request_ticket,
    subscribed,
    task_events,
    ticket_endpoints,
)
from cobro.errors import (
    AddressGone,
    ChannelDown,
    CobroError,
    ConfigProblem,
    PermanentFailure,
    SenderNotConfigured,
    TemplateError,
    TemporaryFailure,
)
from cobro.evidence.chain import EvidenceEntry, append
from cobro.evidence.messages import keep_message
from cobro.render.logo import LOGO_CID, workspace_logo
from cobro.render.statement import Statement, load_statement
from cobro.render.templates import TemplateSet
from cobro.store import tables as t
from cobro.store.db import insert_ignoring, retrying
from cobro.workspace import utcnow

# Whom a message is for; reaching only internal copies (sales rep...) does not make it sent.
MAIN_ROLES = frozenset({Recipient.DEBTOR.value, "admin", "contact"})
FIRST_BATCH = 8  # rows claimed at first; the size then follows how long batches take
BATCH_SECONDS = 0.5  # what one batch (claim, render, send, record) should take at most
PARALLEL = 8  # messages on the wire at once on a channel that does not say (SMS, push)
FAILURE_STATES = frozenset(s.value for s in FAILURES)
FAILED_TASK = "delivery_failed"  # tasks.action_key of a claim that failed for good: + /id
NO_CHANNEL_TASK = "no_channel"  # tasks.action_key: every channel of a debtor is exhausted
NO_CHANNEL = "no channel reaches this debtor: "
# Outcome kinds that leave a recipient to a later attempt: a refusal worth retrying, the
# channel not answering, and "not started before the pass deadline".
RETRY_KINDS = frozenset({"temporary", "down", "later"})

# Run for every few messages recorded: built once.
_HELD = (  # the rows of these ids a dispatcher still holds (locked until commit)
    select(t.outbox.c.id, t.outbox.c.attempts)
    .where(
        t.outbox.c.id.in_(bindparam("ids", expanding=True)),
        t.outbox.c.status == OutboxStatus.SENDING.value,
        t.outbox.c.holder == bindparam("holder"),
    )
    .with_for_update()
)
_EXTENDED = (  # their leases extended
    update(t.outbox)
    .where(t.outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(lease_until=bindparam("until"))
)


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


@dataclass(frozen=True)
class Failure:
    """A claim that failed for good: which, for whom, and why."""

    outbox_id: int
    customer: str  # the debtor's external id
    customer_name: str
    step: str
    occurrence_on: date
    reason: str
    channel: str = "none"  # the first channel it was tried on ("none": it had no address)

    def __str__(self) -> str:
        return (
            f"{self.customer} {self.customer_name}: {self.step} of "
            f"{self.occurrence_on.isoformat()} not sent: {self.reason} (outbox {self.outbox_id})"
        )


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    retrying: int = 0
    deliveries: int = 0
    blocked: int = 0
    tasks: int = 0  # staff tasks opened for claims that failed for good
    lost: int = 0  # rows another dispatcher took over before this one finished them
    waiting: int = 0  # rows left for their channel's hours (calendar.windows, holidays)
    held_back: int = 0  # claims not sent because of a frequency cap (calendar.caps)
    cost: Decimal = Decimal(0)
    errors: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    by_channel: Counter[str] = field(default_factory=Counter)  # deliveries per channel

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.retrying += other.retrying
        self.deliveries += other.deliveries
        self.blocked += other.blocked
        self.tasks += other.tasks
        self.lost += other.lost
        self.waiting += other.waiting
        self.held_back += other.held_back
        self.cost += other.cost
        self.errors.extend(other.errors)
        self.failures.extend(other.failures)
        self.by_channel.update(other.by_channel)


@dataclass(frozen=True)
class PushTarget:
    id: int
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class Person:
    role: Recipient
    name: str
    email: str | None
    language: str | None
    internal: bool
    phone: str | None = None
    push: tuple[PushTarget, ...] = ()

    def addresses(self, channel: str) -> list[tuple[str, dict[str, str]]]:
        """Where ``channel`` reaches this person: (address, channel data) pairs.

        Internal copies (sales rep, account manager, admin) only ever go by email.
        """
        if channel == "email":
            return [(self.email, {})] if self.email else []
        if self.internal:
            return []
        if channel in ("sms", "voice"):
            return [(self.phone, {})] if self.phone else []
        if channel == "push":
            return [
                (p.endpoint, {"p256dh": p.p256dh, "auth": p.auth, "id": str(p.id)})
                for p in self.push
            ]
        return []

    @property
    def key(self) -> str:
        """Who this is, for not writing to the same person twice in one message."""
        return (self.email or self.phone or self.name).lower()


@dataclass
class Route:
    """One person's message, on each usable channel in order of preference: the first that
    is accepted wins; a permanent failure moves on to the next channel."""

    person: Person
    options: list[tuple[str, list[Outgoing]]]
    tried: list[tuple[str, Outgoing]] = field(default_factory=list)


@dataclass
class Job:
    """One outbox row being dispatched, with what is needed to decide and record it."""

    outbox_id: int
    customer_id: int
    customer_external_id: str
    customer_name: str
    customer_language: str | None
    step: str
    occurrence_on: date
    attempts: int  # this claim's number: the token recording checks
    failing_since: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    subscription: Any = None  # upcoming-charge reminders: the subscription as it is now
    statement: Statement | None = None  # attach_statement: the debtor's open items now
    statement_files: dict[str, Attachment] = field(default_factory=dict)  # per language
    originals: dict[int, Original] = field(default_factory=dict)  # a resend's, by delivery
    spec: MessageSpec | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    already_sent_to: set[str] = field(default_factory=set)
    reached_before: bool = False  # an earlier attempt reached a main recipient
    left_out: set[int] = field(default_factory=set)  # items disputed or promised: not listed
    outgoing: list[Route] = field(default_factory=list)
    # (channel, address) -> 'ok:id' | 'temporary:error' | 'permanent:error' | 'gone:error'
    # | 'down:why' (channel not answering) | 'later:why' (not started in this pass)
    outcome: dict[tuple[str, str], str] = field(default_factory=dict)
    failure: str | None = None  # why the row cannot be sent at all
    cancel: str | None = None  # why the row need not be sent any more
    # (channel, address) of this claim that failed after sending (a bounce, an SMS not
    # delivered): the claim goes on without them.
    failed_after: set[tuple[str, str]] = field(default_factory=set)
    blocked: list[str] = field(default_factory=list)  # why each channel of a debtor is shut
    # voice: the unanswered calls of this claim per number, and the debtor's calls in the
    # last 7 days (``call`` settings of the phase: attempts and weekly cap).
    calls_failed: Counter[str] = field(default_factory=Counter)
    calls_this_week: int = 0
    no_channel: bool = False  # every channel of the debtor is exhausted
    permanent: bool = False
    lost: bool = False  # another dispatcher took the row over: send nothing more of it
    timezone: str | None = None  # the debtor's (none: the company's)
    # channel -> when it opens next, for the channels closed now (calendar.windows, holidays)
    closed: dict[str, datetime] = field(default_factory=dict)
    waits_until: datetime | None = None  # the first opening a recipient waits for


@dataclass(frozen=True)
class Attempted:
    """One message the channel has answered for, to be recorded."""

    job: Job
    person: Person
    channel: str
    msg: Outgoing
    outcome: str


class Dispatcher:
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
    ) -> None:
        self.engine = engine
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

    def _record_batch(self, jobs: list[Job]) -> DispatchReport:
        with self.engine.begin() as conn:
            return self._record(conn, jobs)

    def _prepare(self, limit: int) -> list[Job]:
        """Claim the next batch, load what it needs and render it (no sending)."""
        with self.engine.begin() as conn:
            jobs = self._claim(conn, limit)
            if jobs:
                self._load(conn, jobs)
        self._compose(jobs)
        return jobs

    # -- claim and load -------------------------------------------------------

    def _gone_holders(self, conn: Connection, now: datetime) -> list[str]:
        """Holders of leased rows that are known to have stopped: processes of this host
        that no longer run, and this process's own failed passes."""
        return gone_holders(conn, self.company_id, now, self.orphans)

    def _claim(self, conn: Connection, limit: int) -> list[Job]:
        o, c = t.outbox.c, t.customers.c
        now = self.clock()
        free = or_(o.lease_until.is_(None), o.lease_until <= now)
        gone = self._gone_holders(conn, now)
        if gone:
            free = or_(free, o.holder.in_(gone))
        q = (
            select(
                o.id,
                o.customer_id,
                o.step,
                o.occurrence_on,
                o.attempts,
                o.failing_since,
                o.payload,
                c.external_id,
                c.name,
                c.language,
                c.timezone,
            )
            .join(t.customers, c.id == o.customer_id)
            .where(
                o.company_id == self.company_id,
                o.step.not_like(IS_WEBHOOK),  # posted after the claims (_post_webhooks)
                or_(
                    and_(
                        o.status == OutboxStatus.PLANNED.value,
                        o.next_attempt_at <= self.as_of,
                    ),
                    # Another dispatcher's row: only when its lease (real clock) is over, or
                    # its holder is gone.
                    and_(o.status == OutboxStatus.SENDING.value, free),
                ),
            )
            .order_by(o.next_attempt_at, o.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=t.outbox)
        )
        if self.only is not None:
            q = q.where(o.id.in_(self.only))
        rows = conn.execute(q).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        conn.execute(
            update(t.outbox)
            .where(o.id.in_(ids))
            .values(
                status=OutboxStatus.SENDING.value,
                attempts=o.attempts + 1,
                lease_until=now + LEASE,
                holder=self.holder,
            )
        )
        return [
            Job(
                outbox_id=r.id,
                customer_id=r.customer_id,
                customer_external_id=r.external_id,
                customer_name=r.name,
                customer_language=r.language,
                step=r.step,
                occurrence_on=r.occurrence_on,
                attempts=r.attempts + 1,
                failing_since=r.failing_since,
                payload=r.payload or {},
                timezone=r.timezone,
            )
            for r in rows
        ]

    def _load(self, conn: Connection, jobs: list[Job]) -> None:
        by_id = {j.outbox_id: j for j in jobs}
        customer_ids = {j.customer_id for j in jobs}
        ci, r = t.claim_items.c, t.receivables.c
        for row in conn.execute(
            select(
                ci.outbox_id,
                ci.receivable_id,
                r.number,
                r.kind,
                r.invoice_number,
                r.due_on,
                r.currency,
                r.amount_minor,
                r.balance_minor,
                r.description,
            )
            .join(t.receivables, r.id == ci.receivable_id)
            .where(ci.outbox_id.in_(by_id))
            .order_by(r.due_on, r.id)
        ):
            by_id[row.outbox_id].items.append(row._asdict())
        cu, ct = t.customers.c, t.contacts.c
        people: dict[int, list[Person]] = defaultdict(list)
        devices: dict[int, list[PushTarget]] = defaultdict(list)
        if self.channels.get("push") is not None:
            ps = t.push_subscriptions.c
            for sub in conn.execute(
                select(ps.id, ps.customer_id, ps.endpoint, ps.p256dh, ps.auth)
                .where(ps.customer_id.in_(customer_ids), ps.gone_at.is_(None))
                .order_by(ps.id)
            ):
                devices[sub.customer_id].append(
                    PushTarget(sub.id, sub.endpoint, sub.p256dh, sub.auth)
                )
        for cust in conn.execute(
            select(cu.id, cu.name, cu.email, cu.phone, cu.language).where(cu.id.in_(customer_ids))
        ):
            if cust.email or cust.phone or devices.get(cust.id):
                people[cust.id].append(
                    Person(
                        Recipient.DEBTOR,
                        cust.name,
                        cust.email,
                        cust.language,
                        False,
                        cust.phone,
                        tuple(devices.get(cust.id, ())),
                    )
                )
        for contact in conn.execute(
            select(ct.customer_id, ct.name, ct.email, ct.phone, ct.language, ct.roles)
            .where(
                ct.customer_id.in_(customer_ids),
                or_(ct.email.is_not(None), ct.phone.is_not(None)),
            )
            .order_by(ct.id)
        ):
            roles = set(filter(None, contact.roles.split(",")))
            if "billing" in roles:
                people[contact.customer_id].append(
                    Person(
                        Recipient.DEBTOR,
                        contact.name,
                        contact.email,
                        contact.language,
                        False,
                        contact.phone,
                    )
                )
            for role in (Recipient.SALES_REP, Recipient.ACCOUNT_MANAGER):
                if role.value in roles and contact.email:
                    people[contact.customer_id].append(
                        Person(role, contact.name, contact.email, contact.language, True)
                    )
        self._leave_out_paused(conn, jobs)
        if self._caps.caps:
            self._caps.load(conn, self.company_id, customer_ids, self.as_of)
        d = t.deliveries.c
        for done in conn.execute(
            select(d.outbox_id, d.channel, d.recipient, d.recipient_role, d.state)
            .where(d.outbox_id.in_(by_id), d.status.in_(["sent", "sending"]))
            .order_by(d.id)
        ):
            job = by_id[done.outbox_id]
            if done.channel == "voice" and done.state == DeliveryState.TEMPORARY_FAILURE:
                # unanswered (busy, no answer, a machine): called again up to the attempts
                job.calls_failed[done.recipient.lower()] += 1
                if job.calls_failed[done.recipient.lower()] < self._call(job.step).attempts:
                    continue
            if done.state in FAILURE_STATES:  # handed over, then failed: try elsewhere
                job.failed_after.add((done.channel, done.recipient.lower()))
                continue
            # (a delivery still ``sending`` was handed over by a dispatcher that stopped
            # before recording the answer: never sent twice, its callback settles it)
            job.already_sent_to.add(done.recipient.lower())
            job.reached_before = job.reached_before or done.recipient_role in MAIN_ROLES
        for job in jobs:
            if job.reached_before:
                job.left_out.clear()  # already told with them: the other copies match
        if "voice" in self.channels:
            self._count_calls(conn, jobs)
        admin = self.config.subscriptions.admin.email
        named = {cid for j in jobs for cid in j.payload.get("contacts", [])}
        contacts = {}
        if named:
            contacts = {
                row.id: Person(Recipient.CONTACT, row.name, row.email, row.language, False)
                for row in conn.execute(
                    select(ct.id, ct.name, ct.email, ct.language).where(
                        ct.id.in_(named), ct.company_id == self.company_id
                    )
                )
            }
        upcoming: dict[int, list[Job]] = defaultdict(list)
        for j in jobs:
            kind, _, ref = j.step.partition("/")
            if kind == UPCOMING and ref.isdigit():
                upcoming[int(ref)].append(j)
        if upcoming:
            s = t.subscriptions.c
            for sub in conn.execute(
                select(t.subscriptions).where(  # by id, not an index of the company's
                    s.company_id + 0 == self.company_id, s.id.in_(upcoming)
                )
            ):
                for j in upcoming[sub.id]:
                    j.subscription = sub
        resends = [j for j in jobs if j.step.startswith(RESEND_PREFIX)]
        if resends:
            kept = originals_by_id(
                conn, self.company_id, [x.delivery for j in resends for x in targets(j.payload)]
            )
            for j in resends:
                j.originals = {
                    x.delivery: kept[x.delivery] for x in targets(j.payload) if x.delivery in kept
                }
        for job in jobs:
            if self._wants_statement(job.step):
                job.statement = load_statement(
                    conn, self.company_id, job.customer_id, job.occurrence_on
                )
            job.people = list(people.get(job.customer_id, []))
            if admin:
                job.people.append(
                    Person(
                        Recipient.ADMIN, self.config.company.name, admin, self._company_lang, True
                    )
                )
            job.people.extend(
                contacts[cid] for cid in job.payload.get("contacts", []) if cid in contacts
            )
        self._barriers = barriers(
            conn,
            self.company_id,
            customer_ids,
            [
                (ch, addr)
                for j in jobs
                for p in j.people
                for ch in ("email", "sms")
                for addr, _ in p.addresses(ch)
            ],
        )

    def _call(self, step: str) -> CallSettings:
        """The ``call`` settings of the phase of ``step`` (the defaults for other steps)."""
        return self.config.call_settings(step)

    def _count_calls(self, conn: Connection, jobs: list[Job]) -> None:
        """Each debtor's calls handed over in the 7 days before now (the weekly cap)."""
        d, o = t.deliveries.c, t.outbox.c
        by_customer: dict[int, list[Job]] = defaultdict(list)
        for job in jobs:
            by_customer[job.customer_id].append(job)
        ids = sorted(by_customer)
        for at in range(0, len(ids), 5000):
            for row in conn.execute(
                select(o.customer_id, func.count())
                .select_from(t.deliveries)
                .join(t.outbox, o.id == d.outbox_id)
                .where(
                    d.company_id == self.company_id,
                    d.channel == "voice",
                    d.status.in_(["sent", "sending"]),
                    d.at > self.as_of - timedelta(days=7),
                    o.customer_id.in_(ids[at : at + 5000]),
                )
                .group_by(o.customer_id)
            ):
                for job in by_customer[row[0]]:
                    job.calls_this_week = int(row[1])

    def _leave_out_paused(self, conn: Connection, jobs: list[Job]) -> None:
        """Mark the items disputed or promised since planning (``cobro.engine.pauses``)."""
        ids = sorted({i["receivable_id"] for j in jobs for i in j.items if i["balance_minor"] > 0})
        paused: set[int] = set()
        for at in range(0, len(ids), 5000):
            paused.update(paused_items(conn, self.company_id, ids[at : at + 5000]))
        if paused:
            for job in jobs:
                job.left_out = {i["receivable_id"] for i in job.items} & paused

    # -- decide and render ------------------------------------------------------

    def _language_and_locale(self, code: str) -> tuple[str, str]:
        """(template language, formatting locale) for a stored ``es`` / ``es_ES`` code."""
        found = self._locales.get(code)
        if found is None:
            try:
                loc = Locale.parse(code)
            except (ValueError, TypeError, UnknownLocaleError):
                loc = Locale.parse(self.config.company.locale)
            if loc.language == self._company_lang and not loc.territory:
                found = (loc.language, self.config.company.locale)
            else:
                found = (loc.language, str(loc))
            self._locales[code] = found
        return found

    def _spec(self, step: str) -> MessageSpec:
        spec = self._specs.get(step)
        if spec is None:
            spec = self._specs[step] = message_spec(self.config, step)
        return spec

    def _wants_statement(self, step: str) -> bool:
        try:
            return self._spec(step).statement_pdf
        except KeyError:
            return False

    def _statement(self, job: Job, person: Person) -> Attachment:
        """The debtor's statement of account on the claim's date, as a PDF in ``person``'s
        language (rendered once per language and claim)."""
        from cobro.render.receipt import html_pdf
        from cobro.render.statement import statement_filename, statement_html, statement_language

        assert job.statement is not None
        language, locale = statement_language(self.config, person.language or job.customer_language)
        found = job.statement_files.get(language)
        if found is None:
            html = statement_html(
                self.config,
                job.statement,
                language,
                locale,
                templates=self.templates,
                logo=self._logo,
            )
            found = job.statement_files[language] = Attachment(
                statement_filename(job.customer_external_id, job.occurrence_on, language),
                "application/pdf",
                html_pdf(html),
            )
        return found

    def _attachments(self, spec: MessageSpec) -> tuple[Attachment, ...]:
        if spec.attachment is None:
            return ()
        found = self._files.get(spec.attachment)
        if found is None:
            found = self._files[spec.attachment] = load_attachment(self.files_root, spec.attachment)
        return (found,)

    def _receipt(self, job: Job, notice: dict[str, Any], language: str, locale: str) -> Attachment:
        from cobro.render.receipt import receipt_pdf

        data = receipt_pdf(
            self.config.company,
            job.customer_name,
            job.customer_external_id,
            notice,
            language,
            locale,
            templates=self.templates,
            logo=self._logo,
        )
        return Attachment(
            f"recibo-{notice['charge']}.pdf"
            if language == "es"
            else f"receipt-{notice['charge']}.pdf",
            "application/pdf",
            data,
        )

    def _reached(self, step: str, item: dict[str, Any], on: date) -> str | None:
        """The key of the highest phase an item of a phase claim has reached (else None)."""
        try:
            phase = self.config.phase_by_step(step)
        except KeyError:
            return None
        policy = self._policies.get(phase.policy)
        if policy is None:
            policy = self._policies[phase.policy] = self.config.policy(phase.policy)
        found = reached_phase(policy, item["due_on"], item["balance_minor"], on)
        return found.key if found is not None and found.offset_days > 0 else None

    def _compose(self, jobs: list[Job]) -> None:
        company = self.config.company
        branding = {
            "name": company.name,
            "color": company.branding.color,
            "logo_url": self._logo.src_email if self._logo else company.branding.logo_url,
            "footer": company.branding.footer,
        }
        for job in jobs:
            try:
                spec = job.spec = self._spec(job.step)
            except KeyError:
                job.failure = f"{job.step} is no longer configured"
                job.permanent = True
                continue
            if spec.resend:
                self._compose_resend(job)
                continue
            open_items = [
                i
                for i in job.items
                if i["balance_minor"] > 0 and i["receivable_id"] not in job.left_out
            ]
            if job.reached_before:
                # The debtor (or admin, contacts) already has it: only the copies that
                # failed earlier are retried, whatever was paid since.
                open_items = open_items or job.items
            elif spec.needs_items and not open_items:
                job.cancel = (
                    "disputed or promised before sending" if job.left_out else "paid before sending"
                )
                continue
            if (
                spec.needs_overdue
                and not job.reached_before
                and not any(i["due_on"] < job.occurrence_on for i in open_items)
            ):
                job.cancel = "no overdue debt left" + (
                    " that is not disputed or promised" if job.left_out else ""
                )
                continue
            if spec.upcoming and not job.reached_before:
                why = upcoming_cancel_reason(job.subscription, job.occurrence_on)
                if why:
                    job.cancel = why
                    continue
            notice = notice_context(job.payload, job.subscription)
            try:
                attachments = self._attachments(spec)
            except PermanentFailure as exc:
                job.failure = str(exc)
                job.permanent = True
                continue
            wanted = set(spec.recipients)
            seen: set[str] = set()
            asked = job.payload.get("to") if spec.key == PAYLINK else None
            targets: list[tuple[Person, list[tuple[str, list[tuple[str, dict[str, str]]]]]]] = []
            capped = bool(self._caps.caps) and capped_step(job.step) and not job.already_sent_to
            held: str | None = None
            for p in job.people:
                if p.role not in wanted or p.key in seen:
                    continue
                if asked is not None:  # the pay link asked for on a call: to that number
                    if p.phone != asked:
                        continue
                    p = replace(p, email=None, push=())
                routes = [
                    (ch, found)
                    for ch in (("email",) if p.internal else spec.channels)
                    if ch in self.channels and (found := self._open(job, spec, p, ch))
                ]
                if capped and not p.internal:
                    full = {
                        ch: cap
                        for ch, _ in routes
                        if (cap := self._caps.full(job.customer_id, ch, job.outbox_id))
                    }
                    held = held or next(iter(full.values()), None)
                    routes = [(ch, found) for ch, found in routes if ch not in full]
                if routes:
                    seen.add(p.key)
                    targets.append((p, routes))
            main = main_role(spec.recipients)
            if held and not any(p.role is main for p, _ in targets):
                job.cancel = f"held back: {held}"
                continue
            if capped:
                for p, routes in targets:
                    if p.role is main:
                        self._caps.use(job.customer_id, routes[0][0], job.outbox_id, self.as_of)
            job.closed = self._closed_now(job)
            if not any(p.role is main for p, _ in targets):
                job.failure = UNREACHABLE.get(main, "nobody to send it to")
                if main is Recipient.DEBTOR and spec.channels != ("email",):
                    job.failure = f"the debtor has no address for {', '.join(spec.channels)}"
                if job.blocked:
                    job.no_channel = True
                    job.failure = NO_CHANNEL + "; ".join(dict.fromkeys(job.blocked))
                job.permanent = True
            items = [
                {
                    "number": i["number"],
                    "kind": i["kind"],
                    "invoice_number": i["invoice_number"],
                    "description": i["description"],
                    "due_on": i["due_on"],
                    "days_overdue": (job.occurrence_on - i["due_on"]).days,
                    "phase": self._reached(job.step, i, job.occurrence_on),
                    "amount": Money.from_minor(i["amount_minor"], i["currency"]),
                    "balance": Money.from_minor(i["balance_minor"], i["currency"]),
                }
                for i in open_items
            ]
            totals = list(totals_by_currency([i["balance"] for i in items]).values())
            # Stamped with the run's instant: a link's age counts from the claim it came with.
            pay_url = link_url(
                company.portal_url,
                make_token(
                    self.secret,
                    company.id,
                    job.customer_external_id,
                    int(job.payload["claim"]) if asked is not None else job.outbox_id,
                    self.as_of,
                ),
            )
            crm_url = (
                f"{company.crm_url.rstrip('/')}/{job.customer_external_id}"
                if company.crm_url
                else None
            )
            for person, routes in targets:
                if any(
                    addr.lower() in job.already_sent_to for _, found in routes for addr, _ in found
                ):
                    continue  # reached on some channel by an earlier attempt
                locale = self._language_and_locale(
                    person.language or job.customer_language or self._company_lang
                )[1]
                link = None if person.internal or spec.hide_pay_link else pay_url
                context = {
                    "locale": locale,
                    "company": branding,
                    "customer": {
                        "name": job.customer_name,
                        "external_id": job.customer_external_id,
                    },
                    "recipient": {
                        "name": person.name,
                        "internal": person.internal,
                        "staff_copy": person.internal and person.role is not main,
                    },
                    "phase": {"key": spec.key, "name": spec.name},
                    "mode": spec.mode,
                    "items": items,
                    "totals": totals,
                    "pay_url": link,
                    "crm_url": crm_url if person.internal else None,
                    "today": job.occurrence_on,
                    "title": spec.title,
                    "text": spec.text,
                    "notice": notice,
                }
                try:
                    route = self._route(job, spec, person, routes, context, notice, attachments)
                except TemplateError as exc:
                    job.failure = str(exc)
                    job.permanent = True
                    job.outgoing.clear()
                    break
                except CobroError as exc:
                    job.failure = f"{'statement' if spec.statement_pdf else 'receipt'} PDF: {exc}"
                    job.permanent = True
                    job.outgoing.clear()
                    break
                job.outgoing.append(route)

    def _open(
        self, job: Job, spec: MessageSpec, person: Person, channel: str
    ) -> list[tuple[str, dict[str, str]]]:
        """``person``'s addresses on ``channel`` that may be written to: not suppressed,
        not opted out by the debtor (a phase that is not unsubscribable still goes by
        email), not failed after sending for this claim. What is shut is noted on the job."""
        found = []
        debtor = job.customer_id if person.role is Recipient.DEBTOR else None
        if channel == "email" and not spec.unsubscribable:
            debtor = None
        capped = None
        if channel == "voice" and job.calls_this_week >= self._call(job.step).max_per_7_days:
            capped = (
                f"voice: {job.calls_this_week} call(s) in the last 7 days (call.max_per_7_days)"
            )
        for address, meta in person.addresses(channel):
            why = self._barriers.blocks(debtor, channel, address) or capped
            if why is None and (channel, address.lower()) in job.failed_after:
                why = f"{channel} {address} failed after sending"
                if channel == "voice":
                    calls = job.calls_failed[address.lower()]
                    why = f"voice {address} not answered after {calls} call(s)"
            if why is None:
                found.append((address, meta))
            elif not person.internal:
                job.blocked.append(why)
        return found

    def _compose_resend(self, job: Job) -> None:
        """A resend row: each original message, as kept, to its target (those a crashed
        attempt already reached are left out)."""
        for target in targets(job.payload):
            original = job.originals.get(target.delivery)
            if original is None:
                job.failure = f"delivery {target.delivery} has no message kept as sent"
                job.permanent = True
                job.outgoing.clear()
                return
            if target.address.lower() in job.already_sent_to:
                continue
            if target.channel not in self.channels:
                job.failure = f"{target.channel} is not set up: the resend cannot go"
                job.permanent = True
                continue
            job.closed = self._closed_now(job)
            meta = self._push_keys(job, target.address) if target.channel == "push" else {}
            msg = resent_message(
                original,
                target,
                outbox_id=job.outbox_id,
                company=self.config.company.id,
                sender_domain=self.sender_domain,
                at=self.as_of,
                meta=meta,
            )
            role = Recipient(target.role)
            person = Person(
                role,
                "",
                target.address if target.channel == "email" else None,
                None,
                role not in (Recipient.DEBTOR, Recipient.CONTACT),
            )
            job.outgoing.append(Route(person, [(target.channel, [msg])]))

    def _closed_now(self, job: Job) -> dict[str, datetime]:
        """The channels that may not write to the job's debtor now (their hours, a public
        holiday), with the instant each opens next."""
        if not self._calendar.restricts:
            return {}
        tz = job.timezone or self.config.company.timezone
        found = self._closed.get(tz)
        if found is None:
            found = self._closed[tz] = {
                ch: opens
                for ch in self.channels
                if (opens := self._calendar.opening(ch, self.as_of, tz)) is not None
            }
        return found

    def _push_keys(self, job: Job, endpoint: str) -> dict[str, str]:
        """The keys of the debtor's push subscription at ``endpoint`` (none once it is gone:
        the push channel then records the address as gone)."""
        for person in job.people:
            for target in person.push:
                if target.endpoint == endpoint:
                    return {"p256dh": target.p256dh, "auth": target.auth, "id": str(target.id)}
        return {}

    def _route(
        self,
        job: Job,
        spec: MessageSpec,
        person: Person,
        routes: list[tuple[str, list[tuple[str, dict[str, str]]]]],
        context: dict[str, Any],
        notice: dict[str, Any],
        attachments: tuple[Attachment, ...],
    ) -> Route:
        """Render ``person``'s message for each of their channels (full for email, the short
        line for SMS and push) and address it."""
        company = self.config.company
        language, locale = self._language_and_locale(
            person.language or job.customer_language or self._company_lang
        )
        full = short = spoken = None
        options: list[tuple[str, list[Outgoing]]] = []
        voice_cfg = self.config.channels.voice
        for channel, found in routes:
            if channel == "email":
                full = full or self.templates.render(spec.template, language, context)
                rendered = full
                files = attachments
                inline = (self._logo.inline(),) if self._logo and LOGO_CID in full.html else ()
                if spec.receipt_pdf:
                    files = (*attachments, self._receipt(job, notice, language, locale))
                if spec.statement_pdf and job.statement is not None:
                    files = (*files, self._statement(job, person))
            elif channel == "voice":
                spoken = spoken or self.templates.render_voice(spec.template, language, context)
                rendered, files, inline = spoken, (), ()
            else:
                short = short or self.templates.render_short(spec.template, language, context)
                rendered, files, inline = short, (), ()
            outs = []
            headers = {"X-Cobro-Claim": f"{company.id}/{job.outbox_id}/{spec.key}"}
            if (
                channel == "email"
                and spec.unsubscribable
                and self.config.channels.email.unsubscribe
                and person.role is Recipient.DEBTOR
            ):
                url = unsubscribe_url(
                    company.server_url,
                    make_unsubscribe_token(
                        self.secret, company.id, job.customer_external_id, job.outbox_id, "email"
                    ),
                )
                headers["List-Unsubscribe"] = f"<{url}>"
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            if channel == "voice" and voice_cfg is not None:
                speech, voice = voice_cfg.speech(language)
                found = [
                    (a, {**m, "language": language, "speech": speech, "voice": voice or ""})
                    for a, m in found
                ]
            for address, meta in found:
                digest = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
                outs.append(
                    Outgoing(
                        outbox_id=job.outbox_id,
                        address=address,
                        recipient_name=person.name,
                        subject=rendered.subject,
                        text=rendered.text,
                        html=rendered.html,
                        message_id=(
                            f"<cobro.{company.id}.{job.outbox_id}.{digest}@{self.sender_domain}>"
                        ),
                        headers=headers,
                        attachments=files,
                        meta=meta,
                        url=context["pay_url"],
                        inline=inline,
                    )
                )
            options.append((channel, outs))
        return Route(person, options)

    # -- send -------------------------------------------------------------------

    def _breaker(self, channel: str) -> Breaker:
        found = self.breakers.get(channel)
        if found is None:
            found = self.breakers[channel] = Breaker(
                self.settings.breaker_failures, self.settings.breaker_pause_s
            )
        return found

    def _slot(self, channel: str) -> asyncio.Semaphore:
        """At most one message per connection is on the wire or waiting to be recorded."""
        found = self._slots.get(channel)
        if found is None:
            width = getattr(self.channels[channel], "parallel", PARALLEL)
            found = self._slots[channel] = asyncio.Semaphore(width)
        return found

    async def _send(self, jobs: list[Job]) -> None:
        threaded = self.engine.dialect.name != "sqlite"
        ledger: Ledger[Attempted] = Ledger(
            self._write_deliveries, lambda a: a.job.outbox_id, threaded
        )
        ahead: Ledger[Attempted] = Ledger(self._write_ahead, lambda a: a.job.outbox_id, threaded)
        deadline_s = self.settings.connection_deadline_s

        def closed(channel: str) -> str | None:
            """Why ``channel`` takes no message now (the pass deadline, its breaker)."""
            breaker = self._breaker(channel)
            now = time.monotonic()
            if now >= self._deadline:
                return "later:not started before the pass deadline"
            if breaker.is_open(now):
                return f"down:{channel} is not answering ({breaker.reason})"
            return None

        async def attempt(channel: str, msg: Outgoing) -> str:
            breaker = self._breaker(channel)
            if self.pace is not None:
                await self.pace(channel)
            try:
                async with asyncio.timeout(deadline_s):
                    provider_id = await self.channels[channel].send(msg)
            except TimeoutError:
                why = f"no answer from {channel} within {deadline_s:g} s"
                breaker.failed(why, time.monotonic())
                return f"temporary:{why}"
            except AddressGone as exc:
                return f"gone:{exc}"
            except PermanentFailure as exc:
                return f"permanent:{exc}"
            except ChannelDown as exc:
                breaker.failed(str(exc), time.monotonic())
                return f"temporary:{exc}"
            except TemporaryFailure as exc:
                return f"temporary:{exc}"
            except Exception as exc:  # one bad message must never stop the batch
                return f"technical:{type(exc).__name__}: {exc}"
            breaker.succeeded()
            return "ok:" + provider_id

        async def one(job: Job, person: Person, channel: str, msg: Outgoing) -> str:
            async with self._slot(channel):
                msg = replace(msg, ref=secrets.token_hex(10))
                opens = job.closed.get(channel)
                if job.lost:
                    outcome = "later:the row was taken over by another dispatcher"
                elif opens is not None:
                    until = f"{opens:%Y-%m-%d %H:%M} UTC"
                    outcome = f"later:{channel} waits for its hours (until {until})"
                    job.waits_until = min(job.waits_until or opens, opens)
                else:
                    outcome = closed(channel) or ""
                if not outcome and reports_back(self.channels[channel]):
                    # Recorded as ``sending`` first: its report finds it, and a crash
                    # before the answer is recorded leaves it in doubt, never sent twice.
                    if await ahead.note(Attempted(job, person, channel, msg, "sending:")):
                        self._ahead.add(msg.ref)
                    else:
                        job.lost = True
                        outcome = "later:the row was taken over by another dispatcher"
                if not outcome:
                    outcome = await attempt(channel, msg)
                job.outcome[(channel, msg.address)] = outcome
                kind = outcome.partition(":")[0]
                if kind not in ("down", "later"):  # it was tried: record it before going on
                    held = await ledger.note(Attempted(job, person, channel, msg, outcome))
                    job.lost = job.lost or not held
            return kind

        async def route(job: Job, r: Route) -> None:
            for channel, outs in r.options:
                r.tried.extend((channel, m) for m in outs)
                kinds = await asyncio.gather(*(one(job, r.person, channel, m) for m in outs))
                if {"ok", "temporary", "later"} & set(kinds):
                    return  # reached, or worth retrying on this channel later
            # every channel refused for good or is down: the outcome says why, per channel

        # A failure that stops the batch (the database gone for good) stops every message
        # of it: none is sent that could not be recorded.
        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    for r in job.outgoing:
                        group.create_task(route(job, r))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    def _held(self, conn: Connection, jobs: list[Job]) -> set[int]:
        """The rows of ``jobs`` this dispatcher still holds (locked until commit)."""
        tokens = {j.outbox_id: j.attempts for j in jobs}
        rows = conn.execute(_HELD, {"ids": list(tokens), "holder": self.holder})
        return {r.id for r in rows if tokens[r.id] == r.attempts}

    def _write_ahead(self, attempted: list[Attempted]) -> set[int]:
        """Record deliveries as ``sending`` before their hand-over, for rows still held;
        returns the ids of the rows still held."""

        def work() -> set[int]:
            with self.engine.begin() as conn:
                held = self._held(conn, list({a.job.outbox_id: a.job for a in attempted}.values()))
                deliveries: list[dict[str, Any]] = []
                evidence: list[EvidenceEntry] = []
                for a in attempted:
                    if a.job.outbox_id in held:
                        self._delivery(
                            a.job, a.person, a.channel, a.msg, "sending", "", Decimal(0),
                            deliveries, evidence,
                        )  # fmt: skip
                if deliveries:
                    conn.execute(insert(t.deliveries), deliveries)
                    append(conn, self.company_id, evidence)
                return held

        return retrying(work)

    def _write_deliveries(self, attempted: list[Attempted]) -> set[int]:
        """Record the deliveries of rows still held, and extend those rows' leases; returns
        the ids of the rows still held. One transaction (retried if the connection drops)."""

        def work() -> set[int]:
            with self.engine.begin() as conn:
                held = self._held(conn, list({a.job.outbox_id: a.job for a in attempted}.values()))
                if not held:
                    return held
                conn.execute(_EXTENDED, {"ids": list(held), "until": self.clock() + LEASE})
                deliveries: list[dict[str, Any]] = []
                evidence: list[EvidenceEntry] = []
                gone: list[dict[str, Any]] = []
                answered: list[Attempted] = []
                for a in attempted:
                    if a.job.outbox_id not in held:
                        continue
                    kind, _, detail = a.outcome.partition(":")
                    if a.msg.ref in self._ahead:
                        answered.append(a)
                        continue
                    ok = kind == "ok"
                    cost = self.channels[a.channel].cost_of(a.msg) if ok else Decimal(0)
                    self._delivery(
                        a.job, a.person, a.channel, a.msg, kind, detail, cost, deliveries, evidence
                    )
                    if kind == "gone" and "id" in a.msg.meta:
                        gone.append({"b_id": int(a.msg.meta["id"]), "b_reason": detail[:300]})
                if deliveries:
                    conn.execute(insert(t.deliveries), deliveries)
                if answered:
                    self._answered(conn, answered, evidence)
                if gone:
                    ps = t.push_subscriptions.c
                    conn.execute(
                        update(t.push_subscriptions)
                        .where(ps.id == bindparam("b_id"), ps.company_id == self.company_id)
                        .values(gone_at=self.as_of, gone_reason=bindparam("b_reason")),
                        gone,
                    )
                append(conn, self.company_id, evidence)
                return held

        return retrying(work)

    def _answered(
        self, conn: Connection, answered: list[Attempted], evidence: list[EvidenceEntry]
    ) -> None:
        """The channel's answer for deliveries recorded as ``sending``: their status, and
        their state unless a report already took them further (a status callback can come
        before the answer is recorded)."""
        d = t.deliveries.c
        refs = [a.msg.ref for a in answered]
        rows = {
            r.ref: r
            for r in conn.execute(
                select(d.id, d.ref, d.state, d.provider_id)
                .where(d.company_id == self.company_id, d.ref.in_(refs))
                .with_for_update()
            )
        }
        for a in answered:
            self._ahead.discard(a.msg.ref)
            row = rows.get(a.msg.ref)
            if row is None:
                continue
            kind, _, detail = a.outcome.partition(":")
            ok = kind == "ok"
            handed_over(self.channels[a.channel], a.msg)  # kept before sending already
            state = state_of_outcome(kind)
            values: dict[str, Any] = {
                "status": "sent" if ok else "failed",
                "error": None if ok else detail[:1000],
                "cost": self.channels[a.channel].cost_of(a.msg) if ok else Decimal(0),
            }
            if ok and not row.provider_id:
                values["provider_id"] = detail[:300]
            if moves_to(row.state, state):
                values.update(state=state.value, state_at=self.as_of)
            conn.execute(update(t.deliveries).where(d.id == row.id).values(**values))
            evidence.append(
                EvidenceEntry(
                    "delivery.state",
                    f"outbox:{a.job.outbox_id}",
                    a.job.customer_id,
                    self.as_of,
                    {
                        "delivery": row.id,
                        "channel": a.channel,
                        "recipient": a.msg.address,
                        "message_id": a.msg.message_id,
                        "attempt": a.job.attempts,
                        "state": values.get("state", row.state),
                        "status": values["status"],
                        "source": "dispatch",
                        "error": None if ok else detail[:300],
                    },
                )
            )

    # -- record -----------------------------------------------------------------

    def _delivery(
        self,
        job: Job,
        person: Person,
        channel: str,
        msg: Outgoing,
        kind: str,
        detail: str,
        cost: Decimal,
        deliveries: list[dict[str, Any]],
        evidence: list[EvidenceEntry],
    ) -> None:
        """One delivery attempt to one address, as a row and as evidence: ``kind`` is the
        channel's answer (``ok``, ``permanent``...) or ``sending`` before the hand-over."""
        ok = kind == "ok"
        ahead = kind == "sending"
        status = "sent" if ok else "sending" if ahead else "failed"
        state = state_of_outcome(kind)
        body_hash = hashlib.sha256((msg.subject + msg.text).encode()).hexdigest()
        original = job.originals.get(msg.resend_of) if msg.resend_of is not None else None
        if original is not None and original.body_sha256:
            body_hash = original.body_sha256  # the same message as the delivery it repeats
        channel_of = self.channels[channel]
        kept = keep_message(
            (handover_of(channel_of, msg) if ahead else None) or handed_over(channel_of, msg)
        )  # as sent
        deliveries.append(
            {
                "company_id": self.company_id,
                "outbox_id": job.outbox_id,
                "attempt": job.attempts,
                "channel": channel,
                "recipient": msg.address[:320],
                "recipient_role": person.role.value,
                "status": status,
                "state": state.value,
                "state_at": self.as_of,
                "ref": msg.ref or None,
                "message_id": msg.message_id,
                "provider_id": detail[:300] if ok else None,
                "error": None if ok or ahead else detail[:1000],
                "cost": cost,
                "body_sha256": body_hash,
                "at": self.as_of,
                **kept.columns(),
            }
        )
        evidence.append(
            EvidenceEntry(
                "delivery",
                f"outbox:{job.outbox_id}",
                job.customer_id,
                self.as_of,
                {
                    "step": job.step,
                    "occurrence_on": job.occurrence_on.isoformat(),
                    "channel": channel,
                    "recipient": msg.address,
                    "role": person.role.value,
                    "status": status,
                    "state": state.value,
                    "message_id": msg.message_id,
                    "subject": msg.subject,
                    "body_sha256": body_hash,
                    "error": None if ok or ahead else detail[:300],
                    "attempt": job.attempts,
                    "message_sha256": kept.sha256,
                    **({"resend_of": msg.resend_of} if msg.resend_of is not None else {}),
                },
            )
        )

    def _record(self, conn: Connection, jobs: list[Job]) -> DispatchReport:
        """Each row's outcome, for the rows still held: sent, cancelled, failed (with a
        staff task) or planned again; the claim's evidence and the accounts it blocks."""
        report = DispatchReport()
        evidence: list[EvidenceEntry] = []
        now = self.as_of
        settings = self.settings
        retry_for = timedelta(hours=settings.retry_hours)
        max_wait = timedelta(minutes=settings.retry_max_wait_minutes)
        o = t.outbox.c
        to_block: dict[int, str] = {}
        outbox_updates: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        sent: list[tuple[Job, list[dict[str, Any]]]] = []  # for the webhooks' events
        failed: list[tuple[Job, str]] = []
        held = self._held(conn, jobs)
        kept = []
        for job in jobs:
            if job.outbox_id not in held:
                report.lost += 1
                report.errors.append(
                    f"outbox {job.outbox_id}: taken over by another dispatcher before "
                    "its outcome was recorded"
                )
            else:
                kept.append(job)
        for job in kept:
            temporary = False  # some recipient is worth another attempt
            failing = False  # ... because something failed (not just left for later)
            reached = False
            for r in job.outgoing:
                person, r_ok, r_retry, r_failing = r.person, False, False, False
                for channel, msg in r.tried:
                    outcome = job.outcome.get((channel, msg.address), "later:not sent")
                    kind = outcome.partition(":")[0]
                    ok = kind == "ok"
                    r_ok = r_ok or ok
                    r_retry = r_retry or kind in RETRY_KINDS
                    r_failing = r_failing or kind in ("temporary", "down")
                    if ok:
                        cost = self.channels[channel].cost_of(msg)
                        report.deliveries += 1
                        report.by_channel[channel] += 1
                        report.cost += cost
                # a person reached on one channel is not retried because another failed
                temporary = temporary or (r_retry and not r_ok)
                failing = failing or (r_failing and not r_ok)
                # (a resend is sent once it reached anyone it repeats a message to)
                resend = job.spec is not None and job.spec.resend
                reached = reached or (r_ok and (person.role in MAIN_ROLES or resend))
            failing_since = (job.failing_since or now) if failing else job.failing_since
            expired = failing and now - (failing_since or now) >= retry_for
            status: OutboxStatus
            reason: str | None = None
            if job.cancel:
                status, reason = OutboxStatus.CANCELLED, job.cancel
            elif temporary and not expired:
                status = OutboxStatus.PLANNED
            elif job.failure and not (reached or job.reached_before):
                status, reason = OutboxStatus.FAILED, job.failure
            elif reached or job.reached_before:
                # The message reached its main recipient (the debtor, the admin, the
                # banking contacts); recipients still failing are named in the reason.
                failing_to = [
                    f"{ch} {addr}: {v.partition(':')[2]}"
                    for (ch, addr), v in job.outcome.items()
                    if not v.startswith("ok:")
                ]
                status = OutboxStatus.SENT
                reason = "; ".join(failing_to)[:500] or job.failure
            else:
                status = OutboxStatus.FAILED
                reason = "; ".join(
                    v.partition(":")[2] for v in job.outcome.values() if not v.startswith("ok:")
                )[:500] or (job.failure or "not delivered")
                if expired:
                    reason = f"still failing after {settings.retry_hours:g} h: {reason}"[:500]
            retry = status is OutboxStatus.PLANNED
            waiting = retry and not failing and job.waits_until is not None
            report.retrying += retry and not waiting
            report.waiting += waiting
            if retry and failing:
                next_at = now + backoff(now - (failing_since or now), max_wait)
            elif waiting and job.waits_until is not None:
                next_at = job.waits_until  # the first opening of a channel it waits for
            elif retry:
                next_at = now  # only left for the next pass: due at once
            else:
                next_at = now
            outbox_updates.append(
                {
                    "b_id": job.outbox_id,
                    "b_status": status.value,
                    "b_reason": reason[:500] if reason else None,
                    "b_next": next_at,
                    "b_finished": None if retry else now,
                    "b_since": failing_since if retry else None,
                }
            )
            if status is OutboxStatus.SENT:
                report.sent += 1
                if job.spec is not None and job.spec.block_account:
                    to_block[job.customer_id] = job.step
                items = [
                    i
                    for i in job.items
                    if i["balance_minor"] > 0 and i["receivable_id"] not in job.left_out
                ]
                sent.append((job, items))
                evidence.append(
                    EvidenceEntry(
                        "claim.sent",
                        f"outbox:{job.outbox_id}",
                        job.customer_id,
                        now,
                        {
                            "step": job.step,
                            "occurrence_on": job.occurrence_on.isoformat(),
                            "items": [
                                {
                                    "number": i["number"],
                                    "due_on": i["due_on"].isoformat(),
                                    "balance": str(
                                        Money.from_minor(i["balance_minor"], i["currency"])
                                    ),
                                }
                                for i in items
                            ],
                            **(
                                {"resend_of": job.payload.get("resend_of")}
                                if job.spec is not None and job.spec.resend
                                else {}
                            ),
                        },
                    )
                )
            elif status is OutboxStatus.FAILED:
                failure = Failure(
                    job.outbox_id,
                    job.customer_external_id,
                    job.customer_name,
                    job.step,
                    job.occurrence_on,
                    reason or "not delivered",
                    next(iter(job.outcome), ("none", ""))[0],
                )
                report.failed += 1
                report.failures.append(failure)
                report.errors.append(str(failure))
                failed.append((job, failure.reason))
                tasks.append(
                    {
                        "company_id": self.company_id,
                        "customer_id": job.customer_id,
                        "action_key": (
                            f"{NO_CHANNEL_TASK}/{job.outbox_id}"
                            if job.no_channel
                            else f"{FAILED_TASK}/{job.outbox_id}"
                        ),
                        "created_on": now.date(),
                        "due_at": now,
                        "message": (
                            (
                                f"No channel reaches this debtor: {job.step} of "
                                f"{job.occurrence_on.isoformat()} (outbox {job.outbox_id}) "
                                f"was not sent ({failure.reason.removeprefix(NO_CHANNEL)}). "
                                "Get a working address or lift the opt-out, then "
                                f"`cobro requeue --claim {job.outbox_id}` sends it."
                            )
                            if job.no_channel
                            else (
                                f"Not delivered: {job.step} of {job.occurrence_on.isoformat()} "
                                f"(outbox {job.outbox_id}): {failure.reason}. Once the cause "
                                f"is fixed, `cobro requeue --claim {job.outbox_id}` sends it "
                                "again."
                            )
                        )[:2000],
                        "status": "open",
                        "created_at": now,
                    }
                )
            elif status is OutboxStatus.CANCELLED:
                report.cancelled += 1
                report.held_back += bool(reason and reason.startswith("held back: "))
        if outbox_updates:
            conn.execute(
                update(t.outbox)
                .where(o.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    reason=bindparam("b_reason"),
                    next_attempt_at=bindparam("b_next"),
                    finished_at=bindparam("b_finished"),
                    failing_since=bindparam("b_since"),
                    lease_until=None,
                    holder=None,
                ),
                outbox_updates,
            )
        task_ids: list[int] = []
        if tasks:
            # One task per claim and day: a claim requeued and failing again the same day
            # keeps its open task.
            for task in tasks:
                task_ids.extend(
                    conn.execute(
                        insert_ignoring(conn, t.tasks)
                        .values(task)
                        .on_conflict_do_nothing()
                        .returning(t.tasks.c.id)
                    ).scalars()
                )
            report.tasks = len(task_ids)
        ci = t.claim_items.c
        snapshot = [
            {"b_id": i["receivable_id"], "b_out": j.outbox_id, "b_bal": i["balance_minor"]}
            for j in kept
            for i in j.items
            if i["receivable_id"] not in j.left_out
        ]
        unlisted = [{"b_id": rid, "b_out": j.outbox_id} for j in kept for rid in sorted(j.left_out)]
        if unlisted:  # disputed or promised since planning: not in the claim after all
            conn.execute(
                delete(t.claim_items).where(
                    ci.outbox_id == bindparam("b_out"), ci.receivable_id == bindparam("b_id")
                ),
                unlisted,
            )
        if snapshot:
            conn.execute(
                update(t.claim_items)
                .where(ci.outbox_id == bindparam("b_out"), ci.receivable_id == bindparam("b_id"))
                .values(balance_minor=bindparam("b_bal")),
                snapshot,
            )
        append(conn, self.company_id, evidence)
        report.blocked = block_accounts(conn, self.company_id, set(to_block), to_block, now)
        self._emit(conn, report, sent, failed, task_ids)
        return report

    def _claim_data(self, job: Job, items: list[dict[str, Any]] | None) -> dict[str, Any]:
        """A claim as webhooks carry it (with its items and totals when given)."""
        name = job.spec.name if job.spec is not None else job.step
        data: dict[str, Any] = {
            "id": job.outbox_id,
            "step": job.step,
            "kind": claim_kind(self.config, job.step),
            "name": name,
            "date": job.occurrence_on.isoformat(),
        }
        if items is not None:
            data["items"] = [
                {
                    "number": i["number"],
                    "due_on": i["due_on"].isoformat(),
                    "balance": money(i["balance_minor"], i["currency"]),
                }
                for i in items
            ]
            totals: dict[str, int] = {}
            for i in items:
                totals[i["currency"]] = totals.get(i["currency"], 0) + i["balance_minor"]
            data["total"] = [money(v, cur) for cur, v in sorted(totals.items())]
        return data

    def _emit(
        self,
        conn: Connection,
        report: DispatchReport,
        sent: list[tuple[Job, list[dict[str, Any]]]],
        failed: list[tuple[Job, str]],
        task_ids: list[int],
    ) -> None:
        """The webhook events of this batch (``cobro.engine.webhooks``), in its transaction:
        claims sent and failed, the tasks they opened, and the tickets phases and actions
        request."""
        if not (sent or failed or task_ids):
            return
        now = self.as_of
        wanted = subscribed(conn, self.company_id)
        events: list[Event] = []
        if "claim.sent" in wanted:
            events += [
                Event(
                    "claim.sent",
                    str(job.outbox_id),
                    job.customer_id,
                    now,
                    {"claim": self._claim_data(job, items)},
                )
                for job, items in sent
            ]
        if "claim.failed" in wanted:
            events += [
                Event(
                    "claim.failed",
                    f"{job.outbox_id}.{job.attempts}",
                    job.customer_id,
                    now,
                    {"claim": self._claim_data(job, None), "reason": reason},
                )
                for job, reason in failed
            ]
        if "task.created" in wanted and task_ids:
            events += task_events(conn, self.company_id, task_ids)
        emit(conn, self.company_id, events)
        for job, items in sent:
            endpoint = self._tickets.get(job.step)
            if endpoint is None:
                continue
            ticket = Event(
                TICKET,
                f"claim-{job.outbox_id}",
                job.customer_id,
                now,
                {"claim": self._claim_data(job, items)},
            )
            problem = request_ticket(conn, self.company_id, endpoint, [ticket])
            if problem is not None:
                report.errors.append(
                    f"{job.customer_external_id} {job.customer_name}: {job.step} of "
                    f"{job.occurrence_on.isoformat()}: {problem}"
                )
