"""Deciding what each row of a batch sends: cancelled (paid, disputed or promised since
planning, no overdue debt left, held back by a frequency cap), failed (nobody to send it
to), else each recipient's message and the channels that may carry it in order of
preference, with the channels the calendar keeps closed now; a resend repeats the kept
messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

from cobro.domain.escalation import reached_phase
from cobro.domain.model import Recipient
from cobro.domain.money import Money, totals_by_currency
from cobro.engine.call_limit import beyond, next_call
from cobro.engine.contact_caps import capped_step
from cobro.engine.dispatch_jobs import NO_CHANNEL, Job, Person, Route
from cobro.engine.dispatch_render import Rendering
from cobro.engine.links import link_url, make_token
from cobro.engine.messages import PAYLINK, MessageSpec
from cobro.engine.notices import UNREACHABLE, main_role, notice_context, upcoming_cancel_reason
from cobro.engine.resend import OUTWARD_ROLES, resent_message, targets
from cobro.errors import CobroError, PermanentFailure, TemplateError


class Composing(Rendering):
    """The part of ``Dispatcher`` that decides what each row sends, and to whom."""

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
                    if routes[0][0] == "voice":
                        # Its calls count at once for the debtor's next recipients and
                        # claims in the batch (``call.max_per_7_days``), as the calls
                        # recorded before it do; a route that falls back to a call is
                        # counted when it does (``_send``).
                        self._calls.made(job.customer_id, self.as_of, len(routes[0][1]))
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
                language, locale = self._language_and_locale(
                    person.language or job.customer_language or self._company_lang
                )
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
                    "phase": {"key": spec.key, "name": spec.name_in(language)},
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
        found: list[tuple[str, dict[str, str]]] = []
        debtor = job.customer_id if person.role is Recipient.DEBTOR else None
        if channel == "email" and not spec.unsubscribable:
            debtor = None
        capped = room = None
        if channel == "voice":
            # A debtor with several numbers is called on as many as the weekly limit
            # leaves room for, in order; the others are left out for the same reason.
            room = self._calls.room(job.customer_id, job.call_limit, self.as_of)
            capped = self._calls.refused(job.customer_id, job.call_limit, self.as_of) or beyond(
                job.call_limit
            )
        for address, meta in person.addresses(channel):
            why = self._barriers.blocks(debtor, channel, address)
            if why is None and room is not None and len(found) >= room:
                why = capped
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
        attempt already reached are left out). A call beyond the weekly limit of calls is
        left out, the claim's messages on its other channels going; a resend left with no
        message to the debtor fails, saying when the next call is allowed."""
        limited: str | None = None
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
            if target.channel == "voice":
                limited = self._calls.refused(job.customer_id, job.call_limit, self.as_of)
                if limited is not None:
                    job.blocked.append(limited)
                    continue
                self._calls.made(job.customer_id, self.as_of)
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
        if limited is not None and not any(r.person.role in OUTWARD_ROLES for r in job.outgoing):
            allowed = self._calls.next_allowed(job.customer_id, job.call_limit, self.as_of)
            tz = job.timezone or self.config.company.timezone
            job.failure = f"{limited}; {next_call(allowed, tz)}"
            job.permanent = True

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
