"""The rows of a batch as a dispatcher carries them from claim to record: the ``Job`` (an
outbox row, its items, its recipients and each address's outcome), the people a message is
for, the routes their messages take and each answer to record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cobro.channels.base import Attachment, Outgoing
from cobro.domain.model import Recipient
from cobro.engine.messages import MessageSpec
from cobro.engine.resend import Original
from cobro.render.statement import Statement

# Whom a message is for; reaching only internal copies (sales rep...) does not make it sent.
MAIN_ROLES = frozenset({Recipient.DEBTOR.value, "admin", "contact"})
NO_CHANNEL = "no channel reaches this debtor: "


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
    # | 'skipped:why' (a fallback to a call beyond the weekly limit of calls: not placed)
    outcome: dict[tuple[str, str], str] = field(default_factory=dict)
    failure: str | None = None  # why the row cannot be sent at all
    cancel: str | None = None  # why the row need not be sent any more
    # (channel, address) of this claim that failed after sending (a bounce, an SMS not
    # delivered): the claim goes on without them.
    failed_after: set[tuple[str, str]] = field(default_factory=set)
    blocked: list[str] = field(default_factory=list)  # why each channel of a debtor is shut
    # voice: the unanswered calls of this claim per number, and the most calls the debtor
    # may get in 7 days (``call`` settings of the phase, of the claim resent for a resend;
    # the debtor's calls are counted by the dispatcher, ``cobro.engine.call_limit``).
    calls_failed: Counter[str] = field(default_factory=Counter)
    call_limit: int = 0
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
