"""Recording each row's outcome once its messages are done: sent, cancelled, failed for good
(with a staff task) or planned again (with back-off while failing, or for the next opening
of a channel); the claim's evidence, the items it listed, the accounts it blocks and the
webhook events of the batch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete

from cobro.domain.model import OutboxStatus
from cobro.domain.money import Money
from cobro.engine.accounts import block_accounts
from cobro.engine.dispatch_deliveries import RecordingDeliveries
from cobro.engine.dispatch_jobs import MAIN_ROLES, NO_CHANNEL, Job
from cobro.engine.dispatch_report import DispatchReport, Failure
from cobro.engine.sending import backoff
from cobro.engine.webhooks import (
    TICKET,
    Event,
    claim_kind,
    emit,
    money,
    request_ticket,
    subscribed,
    task_events,
)
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t
from cobro.store.db import insert_ignoring, update_rows

# Outcome kinds that leave a recipient to a later attempt: a refusal worth retrying, the
# channel not answering, and "not started before the pass deadline".
RETRY_KINDS = frozenset({"temporary", "down", "later"})
FAILED_TASK = "delivery_failed"  # tasks.action_key of a claim that failed for good: + /id
NO_CHANNEL_TASK = "no_channel"  # tasks.action_key: every channel of a debtor is exhausted
# The columns of an outbox row its outcome sets (after its id), in ``_record``'s order.
_OUTCOME = ("status", "reason", "next_attempt_at", "finished_at", "failing_since")


class RecordingOutcomes(RecordingDeliveries):
    """The part of ``Dispatcher`` that records each row's outcome and what follows it."""

    def _record(self, conn: Connection, jobs: list[Job]) -> DispatchReport:
        """Each row's outcome, for the rows still held: sent, cancelled, failed (with a
        staff task) or planned again; the claim's evidence and the accounts it blocks."""
        report = DispatchReport()
        evidence: list[EvidenceEntry] = []
        now = self.as_of
        settings = self.settings
        retry_for = timedelta(hours=settings.retry_hours)
        max_wait = timedelta(minutes=settings.retry_max_wait_minutes)
        to_block: dict[int, str] = {}
        outbox_updates: list[tuple[Any, ...]] = []
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
                (
                    job.outbox_id,
                    status.value,
                    reason[:500] if reason else None,
                    next_at,
                    None if retry else now,
                    failing_since if retry else None,
                )
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
        # One statement each on PostgreSQL (``update_rows``), where an executemany is a
        # statement a row on the server.
        update_rows(
            conn,
            t.outbox,
            self.company_id,
            "id",
            _OUTCOME,
            outbox_updates,
            lease_until=None,
            holder=None,
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
            (j.outbox_id, i["receivable_id"], i["balance_minor"])
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
        update_rows(
            conn,
            t.claim_items,
            self.company_id,
            ("outbox_id", "receivable_id"),
            ["balance_minor"],
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
