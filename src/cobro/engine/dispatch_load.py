"""Claiming a batch and loading it: outbox rows taken ``planned -> sending`` under this
dispatcher's lease (or taken over once a holder's lease is over or the holder is gone), then
their items, recipients and push subscriptions, earlier deliveries and calls (those of the
claim, and the debtor's within 7 days: ``cobro.engine.call_limit``), items paused since
planning, subscriptions, a resend's kept messages, statements, frequency caps and the
barriers (suppressions, opt-outs) of their addresses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from cobro.domain.delivery import FAILURES, DeliveryState
from cobro.domain.model import OutboxStatus, Recipient
from cobro.engine.deliveries import barriers
from cobro.engine.dispatch_jobs import MAIN_ROLES, Job, Person, PushTarget
from cobro.engine.dispatch_state import DispatchState
from cobro.engine.leases import LEASE, gone_holders, held_debtors, lock_debtors
from cobro.engine.messages import RESEND_PREFIX
from cobro.engine.outbox import IS_PROMPT
from cobro.engine.pauses import paused_items
from cobro.engine.resend import original_step, originals_by_id, targets
from cobro.engine.subscriptions import UPCOMING
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.render.statement import load_statement
from cobro.store import tables as t

FAILURE_STATES = frozenset(s.value for s in FAILURES)


class Loading(DispatchState):
    """The part of ``Dispatcher`` that claims a batch and loads what it needs."""

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
        due = and_(o.status == OutboxStatus.PLANNED.value, o.next_attempt_at <= self.as_of)
        rows_of = (
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
            )
            .order_by(o.next_attempt_at, o.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=t.outbox)
        )
        if self.only is not None:
            rows_of = rows_of.where(o.id.in_(self.only))
        self._passed_over = False
        one_holder = self._one_holder
        if one_holder:
            # A debtor another dispatcher holds a row of waits: the caps and the weekly
            # limit of calls count what that dispatcher sends once it has recorded it
            # (``cobro.engine.leases``).
            rows_of = rows_of.where(
                o.customer_id.not_in(held_debtors(self.company_id, now, self.holder, gone))
            )
        # Three selections, each read in order from an index (never a sort of every row
        # due: some 134,000 of the day's claims at the largest): rows no day's run planned
        # (an event's notice, a resend, a pay link asked for on a call) first, a batch of
        # them alone while any is ready (``ix_outbox_prompt``); then another dispatcher's
        # rows whose lease (real clock) is over or whose holder is gone; then the day's
        # rows, oldest first.
        rows: Sequence[Any] = ()
        if self.only is None:
            rows = conn.execute(rows_of.where(due, IS_PROMPT)).all()
        if not rows:
            taken_over = and_(o.status == OutboxStatus.SENDING.value, free)
            rows = conn.execute(rows_of.where(taken_over)).all()
        if not rows:
            rows = conn.execute(rows_of.where(due)).all()
        if rows and one_holder and conn.dialect.name == "postgresql":
            # Another dispatcher may have claimed rows of the same debtors since this
            # statement began: wait for its claim to commit, then leave those debtors.
            debtors = {r.customer_id for r in rows}
            lock_debtors(conn, debtors)
            held = held_debtors(self.company_id, now, self.holder, gone)
            taken = set(
                conn.execute(held.where(held.selected_columns.customer_id.in_(debtors))).scalars()
            )
            if taken:
                kept = [r for r in rows if r.customer_id not in taken]
                self._passed_over = not kept
                rows = kept
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
            # Each debtor's calls handed over within 7 days on either side of the instant
            # this dispatch acts on (``cobro.engine.call_limit``).
            self._calls.load(conn, self.company_id, customer_ids, self.as_of)
            for job in jobs:
                job.call_limit = self._call(job.step).max_per_7_days
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
            o = t.outbox.c
            resent = {int(j.payload["resend_of"]) for j in resends if "resend_of" in j.payload}
            steps = dict(
                conn.execute(
                    select(o.id, o.step).where(o.id.in_(resent), o.company_id == self.company_id)
                ).all()
            )
            for j in resends:
                j.originals = {
                    x.delivery: kept[x.delivery] for x in targets(j.payload) if x.delivery in kept
                }
                # A call resent counts against the weekly limit of the claim's phase.
                step = steps.get(int(j.payload.get("resend_of", 0)), j.step)
                j.call_limit = self._call(original_step(conn, self.company_id, step)).max_per_7_days
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

    def _leave_out_paused(self, conn: Connection, jobs: list[Job]) -> None:
        """Mark the items disputed or promised since planning (``cobro.engine.pauses``)."""
        ids = sorted({i["receivable_id"] for j in jobs for i in j.items if i["balance_minor"] > 0})
        paused: set[int] = set()
        for at in range(0, len(ids), 5000):
            paused.update(paused_items(conn, self.company_id, ids[at : at + 5000]))
        if paused:
            for job in jobs:
                job.left_out = {i["receivable_id"] for i in job.items} & paused

    def _wants_statement(self, step: str) -> bool:
        try:
            return self._spec(step).statement_pdf
        except KeyError:
            return False
