"""What a dispatch pass did: the rows sent, failed, cancelled, retried or left waiting, the
deliveries and their cost per channel, and each claim that failed for good with its debtor
and reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


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
