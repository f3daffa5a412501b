"""The daily run's second half: outbox rows become delivered messages.

Rows are claimed in batches (``planned -> sending`` with a lease), their
items re-read so that anything paid since planning is left out (a row whose
items are all paid is cancelled), rendered, sent concurrently over the
channel, and the outcome recorded in one transaction per batch together
with the evidence chain. A crash leaves rows in ``sending`` whose lease
expires; the next dispatch retries them with the same Message-ID, and
recipients who already have a delivery are not sent to again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import Connection, Engine, bindparam, insert, or_, select, update

from cobro.channels.base import Attachment, Channel, Outgoing
from cobro.config import CobroConfig
from cobro.domain.model import OutboxStatus, Recipient
from cobro.domain.money import Money, totals_by_currency
from cobro.engine.accounts import block_accounts
from cobro.engine.messages import MessageSpec, load_attachment, message_spec
from cobro.engine.notices import UNREACHABLE, main_role, notice_context, upcoming_cancel_reason
from cobro.engine.subscriptions import UPCOMING
from cobro.errors import (
    AddressGone,
    CobroError,
    ConfigProblem,
    PermanentFailure,
    SenderNotConfigured,
    TemplateError,
    TemporaryFailure,
)
from cobro.evidence.chain import EvidenceEntry, append
from cobro.render.templates import TemplateSet
from cobro.store import tables as t

LEASE = timedelta(minutes=10)
# Whom a message is for; reaching only internal copies (sales rep...) does not make it sent.
MAIN_ROLES = frozenset({Recipient.DEBTOR.value, "admin", "contact"})
MAX_ATTEMPTS = 5
FIRST_BATCH = 8  # rows claimed at first; the size then follows how long batches take
BATCH_SECONDS = 0.5  # what one batch (claim, render, send, record) should take at most


def backoff(attempt: int) -> timedelta:
    """Wait before retry number ``attempt``: 5 min, 10, 20, 40..., at most 6 h."""
    return min(timedelta(minutes=5 * 2 ** max(attempt - 1, 0)), timedelta(hours=6))


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


def portal_token(secret: str, company: str, customer: str, outbox_id: int) -> str:
    """A signed token for the pay link; the portal checks its age."""
    s = URLSafeTimedSerializer(secret, salt="cobro.portal")
    return s.dumps({"co": company, "cu": customer, "ob": outbox_id})


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    retrying: int = 0
    deliveries: int = 0
    blocked: int = 0
    cost: Decimal = Decimal(0)
    errors: list[str] = field(default_factory=list)
    by_channel: Counter[str] = field(default_factory=Counter)  # deliveries per channel

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.retrying += other.retrying
        self.deliveries += other.deliveries
        self.blocked += other.blocked
        self.cost += other.cost
        self.errors.extend(other.errors)
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
        if channel == "sms":
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
    attempts: int
    payload: dict[str, Any] = field(default_factory=dict)
    subscription: Any = None  # upcoming-charge reminders: the subscription as it is now
    spec: MessageSpec | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    already_sent_to: set[str] = field(default_factory=set)
    reached_before: bool = False  # an earlier attempt reached a main recipient
    outgoing: list[Route] = field(default_factory=list)
    # (channel, address) -> 'ok:id' | 'temporary:error' | 'permanent:error' | 'gone:error'
    outcome: dict[tuple[str, str], str] = field(default_factory=dict)
    failure: str | None = None  # why the row cannot be sent at all
    cancel: str | None = None  # why the row need not be sent any more
    permanent: bool = False


class Dispatcher:
    """Dispatches one company's ready outbox rows as of an instant."""

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
    ) -> None:
        self.engine = engine
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
        self._started = time.monotonic()
        self._specs: dict[str, MessageSpec] = {}
        self._files: dict[str, Attachment] = {}
        self.files_root = files_root

    async def run(self) -> DispatchReport:
        """Dispatch every ready row, a batch at a time: claim, render, send, record.

        (Rendering the next batch in a thread while one is on the wire was
        measured slower: both compete for the interpreter lock.)
        """
        require_sender(self.config, self.config_file)
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
            while True:
                began = time.monotonic()
                jobs = self._prepare(limit)
                if not jobs:
                    break
                await self._send(jobs)
                with self.engine.begin() as conn:
                    report.add(self._record(conn, jobs))
                took = time.monotonic() - began
                if took < BATCH_SECONDS / 2 and len(jobs) == limit:
                    limit = min(limit * 2, self.batch_size)
                elif took > BATCH_SECONDS:
                    limit = max(limit // 2, 1)
        finally:
            for channel in started:
                await channel.stop()
        return report

    def _clock(self) -> datetime:
        """``as_of``, advanced by the real time this dispatcher has been running."""
        return self.as_of + timedelta(seconds=time.monotonic() - self._started)

    def _prepare(self, limit: int) -> list[Job]:
        """Claim the next batch, load what it needs and render it (no sending)."""
        with self.engine.begin() as conn:
            jobs = self._claim(conn, limit)
            if jobs:
                self._load(conn, jobs)
        self._compose(jobs)
        return jobs

    # -- claim and load -------------------------------------------------------

    def _claim(self, conn: Connection, limit: int) -> list[Job]:
        o, c = t.outbox.c, t.customers.c
        q = (
            select(
                o.id,
                o.customer_id,
                o.step,
                o.occurrence_on,
                o.attempts,
                o.payload,
                c.external_id,
                c.name,
                c.language,
            )
            .join(t.customers, c.id == o.customer_id)
            .where(
                o.company_id == self.company_id,
                o.status.in_([OutboxStatus.PLANNED.value, OutboxStatus.SENDING.value]),
                o.next_attempt_at <= self.as_of,
            )
            .order_by(o.next_attempt_at, o.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=t.outbox)
        )
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
                # The lease runs from the dispatcher's own clock (as_of plus the time
                # spent so far), so a batch claimed late in a long run is not re-claimed.
                next_attempt_at=self._clock() + LEASE,
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
                payload=r.payload or {},
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
        d = t.deliveries.c
        for done in conn.execute(
            select(d.outbox_id, d.recipient, d.recipient_role).where(
                d.outbox_id.in_(by_id), d.status == "sent"
            )
        ):
            job = by_id[done.outbox_id]
            job.already_sent_to.add(done.recipient.lower())
            job.reached_before = job.reached_before or done.recipient_role in MAIN_ROLES
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
                select(t.subscriptions).where(s.company_id == self.company_id, s.id.in_(upcoming))
            ):
                for j in upcoming[sub.id]:
                    j.subscription = sub
        for job in jobs:
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
        )
        return Attachment(
            f"recibo-{notice['charge']}.pdf"
            if language == "es"
            else f"receipt-{notice['charge']}.pdf",
            "application/pdf",
            data,
        )

    def _compose(self, jobs: list[Job]) -> None:
        company = self.config.company
        branding = {
            "name": company.name,
            "color": company.branding.color,
            "logo_url": company.branding.logo_url,
            "footer": company.branding.footer,
        }
        for job in jobs:
            try:
                spec = job.spec = self._spec(job.step)
            except KeyError:
                job.failure = f"{job.step} is no longer configured"
                job.permanent = True
                continue
            open_items = [i for i in job.items if i["balance_minor"] > 0]
            if job.reached_before:
                # The debtor (or admin, contacts) already has it: only the copies that
                # failed earlier are retried, whatever was paid since.
                open_items = open_items or job.items
            elif spec.needs_items and not open_items:
                job.cancel = "paid before sending"
                continue
            if (
                spec.needs_overdue
                and not job.reached_before
                and not any(i["due_on"] < job.occurrence_on for i in open_items)
            ):
                job.cancel = "no overdue debt left"
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
            targets: list[tuple[Person, list[tuple[str, list[tuple[str, dict[str, str]]]]]]] = []
            for p in job.people:
                if p.role not in wanted or p.key in seen:
                    continue
                routes = [
                    (ch, found)
                    for ch in (("email",) if p.internal else spec.channels)
                    if ch in self.channels and (found := p.addresses(ch))
                ]
                if routes:
                    seen.add(p.key)
                    targets.append((p, routes))
            main = main_role(spec.recipients)
            if not any(p.role is main for p, _ in targets):
                job.failure = UNREACHABLE.get(main, "nobody to send it to")
                if main is Recipient.DEBTOR and spec.channels != ("email",):
                    job.failure = f"the debtor has no address for {', '.join(spec.channels)}"
                job.permanent = True
            items = [
                {
                    "number": i["number"],
                    "kind": i["kind"],
                    "invoice_number": i["invoice_number"],
                    "description": i["description"],
                    "due_on": i["due_on"],
                    "days_overdue": (job.occurrence_on - i["due_on"]).days,
                    "amount": Money.from_minor(i["amount_minor"], i["currency"]),
                    "balance": Money.from_minor(i["balance_minor"], i["currency"]),
                }
                for i in open_items
            ]
            totals = list(totals_by_currency([i["balance"] for i in items]).values())
            pay_url = (
                f"{company.portal_url.rstrip('/')}/"
                f"{portal_token(self.secret, company.id, job.customer_external_id, job.outbox_id)}"
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
                    "recipient": {"name": person.name, "internal": person.internal},
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
                    job.failure = f"receipt PDF: {exc}"
                    job.permanent = True
                    job.outgoing.clear()
                    break
                job.outgoing.append(route)

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
        full = short = None
        options: list[tuple[str, list[Outgoing]]] = []
        for channel, found in routes:
            if channel == "email":
                full = full or self.templates.render(spec.template, language, context)
                rendered = full
                files = attachments
                if spec.receipt_pdf:
                    files = (*attachments, self._receipt(job, notice, language, locale))
            else:
                short = short or self.templates.render_short(spec.template, language, context)
                rendered, files = short, ()
            outs = []
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
                        headers={"X-Cobro-Claim": f"{company.id}/{job.outbox_id}/{spec.key}"},
                        attachments=files,
                        meta=meta,
                        url=context["pay_url"],
                    )
                )
            options.append((channel, outs))
        return Route(person, options)

    # -- send -------------------------------------------------------------------

    async def _send(self, jobs: list[Job]) -> None:
        async def one(job: Job, channel: str, msg: Outgoing) -> str:
            key = (channel, msg.address)
            try:
                job.outcome[key] = "ok:" + await self.channels[channel].send(msg)
            except AddressGone as exc:
                job.outcome[key] = f"gone:{exc}"
            except PermanentFailure as exc:
                job.outcome[key] = f"permanent:{exc}"
            except TemporaryFailure as exc:
                job.outcome[key] = f"temporary:{exc}"
            except Exception as exc:  # one bad message must never stop the batch
                job.outcome[key] = f"permanent:{type(exc).__name__}: {exc}"
            return job.outcome[key].partition(":")[0]

        async def route(job: Job, r: Route) -> None:
            for channel, outs in r.options:
                r.tried.extend((channel, m) for m in outs)
                kinds = await asyncio.gather(*(one(job, channel, m) for m in outs))
                if "ok" in kinds or "temporary" in kinds:
                    return  # reached, or worth retrying on this channel later
            # every channel refused for good: the outcome says why, per channel

        await asyncio.gather(*(route(job, r) for job in jobs for r in job.outgoing))

    # -- record -----------------------------------------------------------------

    def _delivery(
        self,
        job: Job,
        person: Person,
        channel: str,
        msg: Outgoing,
        ok: bool,
        detail: str,
        cost: Decimal,
        deliveries: list[dict[str, Any]],
        evidence: list[EvidenceEntry],
    ) -> None:
        """One delivery attempt to one address, as a row and as evidence."""
        body_hash = hashlib.sha256((msg.subject + msg.text).encode()).hexdigest()
        deliveries.append(
            {
                "company_id": self.company_id,
                "outbox_id": job.outbox_id,
                "attempt": job.attempts,
                "channel": channel,
                "recipient": msg.address[:320],
                "recipient_role": person.role.value,
                "status": "sent" if ok else "failed",
                "message_id": msg.message_id,
                "provider_id": detail[:300] if ok else None,
                "error": None if ok else detail[:1000],
                "cost": cost,
                "body_sha256": body_hash,
                "at": self.as_of,
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
                    "status": "sent" if ok else "failed",
                    "message_id": msg.message_id,
                    "subject": msg.subject,
                    "body_sha256": body_hash,
                    "error": None if ok else detail[:300],
                },
            )
        )

    def _record(self, conn: Connection, jobs: list[Job]) -> DispatchReport:
        report = DispatchReport()
        deliveries: list[dict[str, Any]] = []
        evidence: list[EvidenceEntry] = []
        now = self.as_of
        o = t.outbox.c
        to_block: dict[int, str] = {}
        outbox_updates: list[dict[str, Any]] = []
        gone: list[dict[str, Any]] = []
        for job in jobs:
            temporary = False
            reached = False
            for r in job.outgoing:
                person, r_ok, r_temporary = r.person, False, False
                for channel, msg in r.tried:
                    outcome = job.outcome.get((channel, msg.address), "temporary:not sent")
                    kind, _, detail = outcome.partition(":")
                    ok = kind == "ok"
                    r_ok = r_ok or ok
                    r_temporary = r_temporary or kind == "temporary"
                    if kind == "gone" and "id" in msg.meta:
                        gone.append({"b_id": int(msg.meta["id"]), "b_reason": detail[:300]})
                    cost = self.channels[channel].cost_of(msg) if ok else Decimal(0)
                    self._delivery(
                        job, person, channel, msg, ok, detail, cost, deliveries, evidence
                    )
                    if ok:
                        report.deliveries += 1
                        report.by_channel[channel] += 1
                        report.cost += cost
                # a person reached on one channel is not retried because another failed
                temporary = temporary or (r_temporary and not r_ok)
                reached = reached or (r_ok and person.role in MAIN_ROLES)
            status: OutboxStatus
            reason: str | None = None
            if job.cancel:
                status, reason = OutboxStatus.CANCELLED, job.cancel
            elif temporary and job.attempts < MAX_ATTEMPTS:
                status = OutboxStatus.PLANNED
            elif job.failure and not (reached or job.reached_before):
                status, reason = OutboxStatus.FAILED, job.failure
            elif reached or job.reached_before:
                # The message reached its main recipient (the debtor, the admin, the
                # banking contacts); recipients still failing are named in the reason.
                failing = [
                    f"{ch} {addr}: {v.partition(':')[2]}"
                    for (ch, addr), v in job.outcome.items()
                    if not v.startswith("ok:")
                ]
                status = OutboxStatus.SENT
                reason = "; ".join(failing)[:500] or job.failure
            else:
                status = OutboxStatus.FAILED
                reason = "; ".join(
                    v.partition(":")[2] for v in job.outcome.values() if not v.startswith("ok:")
                )[:500] or (job.failure or "not delivered")
            retry = status is OutboxStatus.PLANNED
            report.retrying += retry
            outbox_updates.append(
                {
                    "b_id": job.outbox_id,
                    "b_attempts": job.attempts,
                    "b_status": status.value,
                    "b_reason": reason[:500] if reason else None,
                    "b_next": now + backoff(job.attempts) if retry else now,
                    "b_finished": None if retry else now,
                }
            )
            if status is OutboxStatus.SENT:
                report.sent += 1
                if job.spec is not None and job.spec.block_account:
                    to_block[job.customer_id] = job.step
                items = [i for i in job.items if i["balance_minor"] > 0]
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
                        },
                    )
                )
            elif status is OutboxStatus.FAILED:
                report.failed += 1
                report.errors.append(
                    f"{job.customer_external_id} {job.customer_name}: {job.step} of "
                    f"{job.occurrence_on} not sent: {reason} (outbox {job.outbox_id})"
                )
            elif status is OutboxStatus.CANCELLED:
                report.cancelled += 1
        conn.execute(
            update(t.outbox)
            # Only rows still held by this claim: a row re-claimed elsewhere keeps its state.
            .where(
                o.id == bindparam("b_id"),
                o.status == OutboxStatus.SENDING.value,
                o.attempts == bindparam("b_attempts"),
            )
            .values(
                status=bindparam("b_status"),
                reason=bindparam("b_reason"),
                next_attempt_at=bindparam("b_next"),
                finished_at=bindparam("b_finished"),
            ),
            outbox_updates,
        )
        if deliveries:
            conn.execute(insert(t.deliveries), deliveries)
        ci = t.claim_items.c
        snapshot = [
            {"b_id": i["receivable_id"], "b_out": j.outbox_id, "b_bal": i["balance_minor"]}
            for j in jobs
            for i in j.items
        ]
        if snapshot:
            conn.execute(
                update(t.claim_items)
                .where(ci.outbox_id == bindparam("b_out"), ci.receivable_id == bindparam("b_id"))
                .values(balance_minor=bindparam("b_bal")),
                snapshot,
            )
        if gone:
            ps = t.push_subscriptions.c
            conn.execute(
                update(t.push_subscriptions)
                .where(ps.id == bindparam("b_id"), ps.company_id == self.company_id)
                .values(gone_at=now, gone_reason=bindparam("b_reason")),
                gone,
            )
        append(conn, self.company_id, evidence)
        report.blocked = block_accounts(conn, self.company_id, set(to_block), to_block, now)
        return report
