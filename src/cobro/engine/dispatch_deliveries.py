"""Recording deliveries as the channels answer: each attempt as a row, with its evidence and
the message as sent, only while this dispatcher still holds its outbox row (whose lease it
extends). A delivery on a channel that reports back later is recorded as ``sending`` before
its hand-over, and the channel's answer then updates it."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from cobro.channels.base import Outgoing, handed_over, handover_of
from cobro.domain.delivery import moves_to, state_of_outcome
from cobro.domain.model import OutboxStatus
from cobro.engine.dispatch_jobs import Attempted, Job, Person
from cobro.engine.dispatch_state import DispatchState
from cobro.engine.leases import LEASE
from cobro.evidence.chain import EvidenceEntry, Head, append, lock_after
from cobro.evidence.messages import keep_message
from cobro.store import tables as t
from cobro.store.db import retrying

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
_EXTENDED = (  # the same rows, their leases extended, in one statement
    update(t.outbox)
    .where(
        t.outbox.c.id.in_(bindparam("b_ids", expanding=True)),
        t.outbox.c.status == OutboxStatus.SENDING.value,
        t.outbox.c.holder == bindparam("b_holder"),
    )
    .values(lease_until=bindparam("b_until"))
    .returning(t.outbox.c.id, t.outbox.c.attempts)
)


# PostgreSQL: the same as the driver runs it, before ``lock_after`` locks the evidence chain
# (one round trip for the three statements).
_EXTENDED_SQL = (
    "UPDATE outbox SET lease_until = %(until)s WHERE id = ANY(%(ids)s) AND status = %(status)s "
    "AND holder = %(holder)s RETURNING id, attempts"
)


class RecordingDeliveries(DispatchState):
    """The part of ``Dispatcher`` that records deliveries while it holds their rows."""

    def _held(self, conn: Connection, jobs: list[Job]) -> set[int]:
        """The rows of ``jobs`` this dispatcher still holds (locked until commit)."""
        tokens = {j.outbox_id: j.attempts for j in jobs}
        rows = conn.execute(_HELD, {"ids": list(tokens), "holder": self.holder})
        return {r.id for r in rows if tokens[r.id] == r.attempts}

    def _extended(self, conn: Connection, jobs: list[Job]) -> tuple[set[int], Head | None]:
        """The rows of ``jobs`` this dispatcher still holds (locked until commit), their
        leases extended by the same statement; on PostgreSQL, the evidence chain then
        locked and its last entry read in the same round trip (``lock_after``: None
        elsewhere, ``append`` reads it).

        (A row this dispatcher holds under another attempt than its job's would be one it
        claimed again, which it does only once the job's outcome is recorded: extending
        its lease too changes nothing.)"""
        tokens = {j.outbox_id: j.attempts for j in jobs}
        until = self.clock() + LEASE
        head: Head | None = None
        if conn.dialect.name == "postgresql":
            params = {
                "until": until,
                "ids": list(tokens),
                "status": OutboxStatus.SENDING.value,
                "holder": self.holder,
            }
            found, head = lock_after(conn, self.company_id, _EXTENDED_SQL, params)
            rows = [(int(r[0]), int(r[1])) for r in found]
        else:
            result = conn.execute(
                _EXTENDED, {"b_ids": list(tokens), "b_holder": self.holder, "b_until": until}
            )
            rows = [(int(r.id), int(r.attempts)) for r in result]
        return {i for i, attempts in rows if tokens[i] == attempts}, head

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
                jobs = list({a.job.outbox_id: a.job for a in attempted}.values())
                held, head = self._extended(conn, jobs)
                if not held:
                    return held
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
                append(conn, self.company_id, evidence, head)
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
