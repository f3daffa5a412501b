"""Sending a batch: each recipient's message on its channels in order, concurrently (a slot
per connection), a permanent refusal moving on to the next channel. What goes now is decided
here: the channel's hours, the pass deadline, the circuit breaker of a channel that keeps
failing, the pace of its rate limits, and the weekly limit of calls for a message that
falls back to a call. Each answer is recorded (``dispatch_deliveries``) before its
connection takes the next message."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace

from cobro.channels.base import Outgoing, reports_back
from cobro.engine.call_limit import beyond
from cobro.engine.dispatch_deliveries import RecordingDeliveries
from cobro.engine.dispatch_jobs import Attempted, Job, Person, Route
from cobro.engine.sending import Breaker, Ledger
from cobro.errors import AddressGone, ChannelDown, PermanentFailure, TemporaryFailure

PARALLEL = 8  # messages on the wire at once on a channel that does not say (SMS, push)


class Sending(RecordingDeliveries):
    """The part of ``Dispatcher`` that sends a batch."""

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
            for i, (channel, outs) in enumerate(r.options):
                r.tried.extend((channel, m) for m in outs)
                if i and channel == "voice":
                    # Falling back to a call: it counts against the debtor's weekly limit
                    # like the batch's other calls (counted as they were composed), so a
                    # debtor beyond it is not called and the route goes on.
                    # A debtor with several numbers is called on as many as the limit
                    # leaves room for, in order.
                    room = self._calls.room(job.customer_id, job.call_limit, self.as_of)
                    why = self._calls.refused(job.customer_id, job.call_limit, self.as_of)
                    if room < len(outs):
                        why = why or beyond(job.call_limit)
                        for m in outs[room:]:
                            job.outcome[(channel, m.address)] = f"skipped:{why}"
                        outs = outs[:room]
                    if not outs:
                        continue
                    self._calls.made(job.customer_id, self.as_of, len(outs))
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
