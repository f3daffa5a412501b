"""Business records of the domain: policies, phases and the steps they schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

# Banking notifications (seed 000), by type; contacts are assigned to each.
BANKING_TYPES = (
    "stop_payment",
    "bulk_stop_payment",
    "direct_deposit_change",
    "direct_deposit_reversal",
)


class DeliveryMode(StrEnum):
    """How much of the debt a claim shows (seed 004)."""

    FULL = "full"  # claim text plus the table of items and their status
    LINK = "link"  # claim text plus a link to the customer portal


class OutboxStatus(StrEnum):
    """Life of an outbox row: planned -> sending -> sent | failed | cancelled."""

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Recipient(StrEnum):
    """Who receives a phase's message."""

    DEBTOR = "debtor"  # the customer's own address and its billing contacts
    SALES_REP = "sales_rep"  # internal: the customer's sales representative
    ACCOUNT_MANAGER = "account_manager"  # internal: the customer's account manager
    ADMIN = "admin"  # the company's own notification address (subscription notices)
    CONTACT = "contact"  # contacts named by the notice itself (banking notices)


CONFIGURABLE_RECIPIENTS = (Recipient.DEBTOR, Recipient.SALES_REP, Recipient.ACCOUNT_MANAGER)


@dataclass(frozen=True)
class Phase:
    """One step of a policy, at a moment relative to the due date.

    ``offset_days`` is negative before the due date, 0 on it, positive after.
    A phase with ``repeat_every_days`` recurs until the next phase starts or the
    debt is paid. ``catch_up`` says whether a run that missed the phase's day
    still sends it late (after-due phases) or drops it (before-due reminders).
    """

    policy: str
    key: str
    name: str
    offset_days: int
    template: str
    mode: DeliveryMode = DeliveryMode.FULL
    channels: tuple[str, ...] = ("email",)
    recipients: tuple[Recipient, ...] = (Recipient.DEBTOR,)
    repeat_every_days: int | None = None
    max_repeats: int | None = None
    min_balance_minor: int = 0
    catch_up: bool = True
    block_account: bool = False  # sending this phase blocks the account until paid
    min_gap_days: int | None = None  # days after the previous phase; default: their distance
    attach_statement: bool = False  # the email carries the statement of account (PDF)
    # A debtor may opt out of its email (one-click unsubscribe); a legally required
    # notice (a final demand) is marked not unsubscribable and still goes.
    unsubscribable: bool = True
    names: tuple[tuple[str, str], ...] = ()  # (language, name): the name in other languages

    @property
    def step_id(self) -> str:
        """Identity of the phase across policies, stored on outbox rows: ``policy/key``."""
        return f"{self.policy}/{self.key}"


@dataclass(frozen=True)
class Policy:
    """Ordered phases applied to a debtor's open receivables."""

    name: str
    phases: tuple[Phase, ...] = field(default_factory=tuple)

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each phase's position in ``phases``, by its key."""
        found: dict[str, int] = {}
        for i, p in enumerate(self.phases):
            found.setdefault(p.key, i)
        return found

    def phase(self, key: str) -> Phase:
        for p in self.phases:
            if p.key == key:
                return p
        raise KeyError(key)
