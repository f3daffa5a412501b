"""Posting webhook deliveries: the outbox rows of steps ``webhook/...``.

The dispatcher (``cobro.engine.dispatch``) runs this after the claims of each pass, with
its own holder name, lease and pass deadline: rows are claimed in batches (``planned ->
sending``, leased on the real clock), each posted once to its endpoint, signed in the
Standard Webhooks format, and recorded as soon as the endpoint has answered: the attempt
(when, HTTP status or error, duration) and the row's outcome, in one transaction, only
while this dispatcher still holds the row.

* A 2xx answer is the one accepted delivery: the row is ``sent``.
* Any other answer, or none, is retried with the outbox's back-off (5 minutes, then as
  long as it has failed so far, at most ``dispatch.retry_max_wait_minutes``) for
  ``dispatch.retry_hours``; then the row is ``failed``, its last error as the reason.
* A crash between the post and its record leaves the row ``sending``: the next dispatcher
  takes it over (lease expired, or its holder gone) and posts it again with the same
  ``webhook-id``, which a receiver uses to recognise a delivery it already has.

The ``webhook-id`` is drawn when the event is emitted and kept on the row; the
``webhook-timestamp`` is the real clock at each post (receivers refuse old timestamps). The
secret is read from the database for the post and never written anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import floor
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update
from standardwebhooks import Webhook

from cobro.channels.webhook import Answer, WebhookChannel
from cobro.config.schema import Dispatch
from cobro.domain.model import OutboxStatus
from cobro.engine.dispatch import DispatchReport, Failure
from cobro.engine.leases import LEASE, gone_holders
from cobro.engine.sending import Ledger, backoff
from cobro.engine.webhooks import IS_WEBHOOK, parse_step
from cobro.store import tables as t
from cobro.store.db import retrying

BATCH = 64  # rows claimed at a time


@dataclass(frozen=True)
class Target:
    url: str
    secret: str
    enabled: bool


@dataclass
class WebhookJob:
    outbox_id: int
    customer_id: int
    customer: str
    customer_name: str
    step: str
    occurrence_on: date
    attempts: int  # this claim's number: the token recording checks
    failing_since: datetime | None
    payload: dict[str, Any]
    target: Target | None = None

    @property
    def label(self) -> str:
        parsed = parse_step(self.step)
        event = parsed[1] if parsed else self.step
        return f"webhook {self.payload.get('endpoint', '?')} ({event})"


@dataclass
class Outcome:
    """What became of one row: its new status and, when it was posted, the answer."""

    job: WebhookJob
    status: OutboxStatus
    reason: str | None
    next_at: datetime
    failing_since: datetime | None
    answer: Answer | None = None
    kind: str = ""  # sent | retry | failed | cancelled | later


def signed_headers(secret: str, webhook_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` sent at ``at``."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def body_of(payload: dict[str, Any]) -> bytes:
    """The JSON posted for a row: the same bytes at every attempt."""
    return json.dumps(payload.get("body", {}), ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class WebhookSender:
    """Posts one company's webhook rows due by ``as_of`` (one pass)."""

    engine: Engine
    company_id: int
    channel: WebhookChannel
    as_of: datetime
    holder: str
    settings: Dispatch
    deadline: float  # time.monotonic() after which no post is started
    clock: Any  # Callable[[], datetime]: the real clock (leases, signature timestamps)
    orphans: frozenset[str] = frozenset()
    report: DispatchReport = field(default_factory=DispatchReport)

    async def run(self) -> DispatchReport:
        while time.monotonic() < self.deadline:
            jobs = retrying(self._claim)
            if not jobs:
                break
            await self._post_all(jobs)
        return self.report

    # -- claim ------------------------------------------------------------------

    def _claim(self) -> list[WebhookJob]:
        o, c = t.outbox.c, t.customers.c
        now = self.clock()
        with self.engine.begin() as conn:
            free = or_(o.lease_until.is_(None), o.lease_until <= now)
            gone = gone_holders(conn, self.company_id, now, self.orphans)
            if gone:
                free = or_(free, o.holder.in_(gone))
            deliveries = (
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
                )
                .join(t.customers, c.id == o.customer_id)
                .where(o.company_id == self.company_id, o.step.like(IS_WEBHOOK))
                .order_by(o.next_attempt_at, o.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=t.outbox)
            )
            # Two selections, each read in order from ``ix_outbox_webhooks`` (never a sort
            # of every delivery due: one ``claim.sent`` a claim on a large day): another
            # sender's deliveries whose lease is over or whose holder is gone, then those due.
            taken_over = and_(o.status == OutboxStatus.SENDING.value, free)
            rows: Sequence[Any] = conn.execute(deliveries.where(taken_over)).all()
            if not rows:
                due = and_(o.status == OutboxStatus.PLANNED.value, o.next_attempt_at <= self.as_of)
                rows = conn.execute(deliveries.where(due)).all()
            if not rows:
                return []
            conn.execute(
                update(t.outbox)
                .where(o.id.in_([r.id for r in rows]))
                .values(
                    status=OutboxStatus.SENDING.value,
                    attempts=o.attempts + 1,
                    lease_until=now + LEASE,
                    holder=self.holder,
                )
            )
            jobs = [
                WebhookJob(
                    int(r.id),
                    int(r.customer_id),
                    str(r.external_id),
                    str(r.name),
                    str(r.step),
                    r.occurrence_on,
                    int(r.attempts) + 1,
                    r.failing_since,
                    dict(r.payload or {}),
                )
                for r in rows
            ]
            self._targets(conn, jobs)
            return jobs

    def _targets(self, conn: Connection, jobs: list[WebhookJob]) -> None:
        e = t.webhook_endpoints.c
        ids = {p[0] for j in jobs if (p := parse_step(j.step)) is not None}
        found = {
            int(r.id): Target(str(r.url), str(r.secret), bool(r.enabled))
            for r in conn.execute(
                select(e.id, e.url, e.secret, e.enabled).where(
                    e.company_id == self.company_id, e.id.in_(ids)
                )
            )
        }
        for job in jobs:
            parsed = parse_step(job.step)
            job.target = found.get(parsed[0]) if parsed else None

    # -- post -------------------------------------------------------------------

    async def _post_all(self, jobs: list[WebhookJob]) -> None:
        ledger: Ledger[Outcome] = Ledger(self._write, lambda x: x.job.outbox_id)
        slots = asyncio.Semaphore(max(1, self.channel.parallel))

        async def one(job: WebhookJob) -> None:
            async with slots:
                outcome = await self._post(job)
                held = await ledger.note(outcome)
            self._count(outcome, held)

        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(one(job))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _post(self, job: WebhookJob) -> Outcome:
        now = self.as_of
        if job.target is None or not job.target.enabled:
            why = "endpoint removed" if job.target is None else "endpoint disabled"
            return Outcome(job, OutboxStatus.CANCELLED, why, now, None, kind="cancelled")
        if time.monotonic() >= self.deadline:
            return Outcome(
                job,
                OutboxStatus.PLANNED,
                None,
                now,
                job.failing_since,
                kind="later",
            )
        body = body_of(job.payload)
        webhook_id = str(job.payload.get("webhook_id") or f"msg_cobro_{job.outbox_id}")
        try:
            headers = signed_headers(job.target.secret, webhook_id, self.clock(), body)
            answer = await self.channel.post(job.target.url, body, headers)
        except Exception as exc:  # one bad row (a secret or URL edited in the database)
            # must never stop the others; its message names the problem, not the secret
            answer = Answer(None, f"cannot post: {type(exc).__name__}", 0)
        if answer.accepted:
            return Outcome(job, OutboxStatus.SENT, None, now, None, answer, "sent")
        failing_since = job.failing_since or now
        if now - failing_since >= timedelta(hours=self.settings.retry_hours):
            reason = f"still failing after {self.settings.retry_hours:g} h: {answer.error}"
            return Outcome(job, OutboxStatus.FAILED, reason[:500], now, None, answer, kind="failed")
        wait = backoff(now - failing_since, timedelta(minutes=self.settings.retry_max_wait_minutes))
        return Outcome(
            job,
            OutboxStatus.PLANNED,
            (answer.error or "")[:500] or None,
            now + wait,
            failing_since,
            answer,
            kind="retry",
        )

    # -- record -----------------------------------------------------------------

    def _write(self, outcomes: list[Outcome]) -> set[int]:
        """Record the attempts and outcomes of rows still held (one transaction, retried
        if the connection drops); returns the ids of the rows that were."""

        def work() -> set[int]:
            o = t.outbox.c
            tokens = {x.job.outbox_id: x.job.attempts for x in outcomes}
            with self.engine.begin() as conn:
                held = {
                    int(r.id)
                    for r in conn.execute(
                        select(o.id, o.attempts)
                        .where(
                            o.id.in_(tokens),
                            o.status == OutboxStatus.SENDING.value,
                            o.holder == self.holder,
                        )
                        .with_for_update()
                    )
                    if tokens[int(r.id)] == r.attempts
                }
                mine = [x for x in outcomes if x.job.outbox_id in held]
                if not mine:
                    return held
                attempts = [
                    {
                        "company_id": self.company_id,
                        "outbox_id": x.job.outbox_id,
                        "attempt": x.job.attempts,
                        "at": self.as_of,
                        "status_code": x.answer.status_code,
                        "error": x.answer.error[:1000] if x.answer.error else None,
                        "duration_ms": x.answer.duration_ms,
                    }
                    for x in mine
                    if x.answer is not None
                ]
                if attempts:
                    conn.execute(insert(t.webhook_attempts), attempts)
                done = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED)
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
                    [
                        {
                            "b_id": x.job.outbox_id,
                            "b_status": x.status.value,
                            "b_reason": x.reason,
                            "b_next": x.next_at,
                            "b_finished": self.as_of if x.status in done else None,
                            "b_since": x.failing_since,
                        }
                        for x in mine
                    ],
                )
                return held

        return retrying(work)

    def _count(self, outcome: Outcome, held: bool) -> None:
        report, job = self.report, outcome.job
        if not held:
            report.lost += 1
            report.errors.append(
                f"outbox {job.outbox_id}: taken over by another dispatcher before its "
                "outcome was recorded"
            )
            return
        if outcome.kind == "sent":
            report.sent += 1
            report.deliveries += 1
            report.by_channel[self.channel.name] += 1
        elif outcome.kind in ("retry", "later"):
            report.retrying += 1
        elif outcome.kind == "cancelled":
            report.cancelled += 1
        elif outcome.kind == "failed":
            failure = Failure(
                job.outbox_id,
                job.customer,
                job.customer_name,
                job.label,
                job.occurrence_on,
                outcome.reason or "not delivered",
                "webhook",
            )
            report.failed += 1
            report.failures.append(failure)
            report.errors.append(str(failure))
