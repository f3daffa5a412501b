"""The channel port: what every way of reaching a person provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "application/pdf"
    data: bytes


@dataclass(frozen=True)
class InlineImage:
    """An image an email's HTML shows in place (the logo), as ``cid:CONTENT_ID``."""

    content_id: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one recipient, ready for a channel."""

    outbox_id: int
    address: str  # email address, phone number, endpoint...
    recipient_name: str
    subject: str
    text: str
    html: str
    message_id: str  # stable per outbox row and recipient: a retry reuses it
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    # Channel-specific data about the address (a push subscription's keys...).
    meta: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # where a short message (SMS, push) leads: the pay link
    inline: tuple[InlineImage, ...] = ()  # email: images the HTML shows (the logo)
    # A resend: the message bytes to hand over as they are (email: the RFC 5322 message
    # first sent, readdressed; SMS: its text; push: its JSON), and the delivery it repeats.
    raw: bytes | None = None
    resend_of: int | None = None
    # The delivery's own reference (``deliveries.ref``): a channel whose provider reports
    # back puts it where the report comes back to (the status callback URL, the VERP
    # return path of an email).
    ref: str = ""
    # RFC 8058 one-click unsubscribe: the URL an email's List-Unsubscribe names.
    unsubscribe_url: str | None = None


class Handovers:
    """The exact bytes each message was handed to its provider as, kept until taken.

    A channel keeps them just before handing a message over; the dispatcher takes them
    when it records the delivery, so that the message as sent is kept as evidence.
    """

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], bytes] = {}

    def keep(self, message: Outgoing, data: bytes) -> None:
        self._data[message.message_id, message.address] = data

    def take(self, message: Outgoing) -> bytes | None:
        return self._data.pop((message.message_id, message.address), None)


class Channel(Protocol):
    """A channel sends an ``Outgoing`` and returns the provider's id for it.

    ``send`` raises ``TemporaryFailure`` when a later retry may succeed and
    ``PermanentFailure`` when it will not (``AddressGone`` when the address
    itself is gone for good). ``start``/``stop`` open and close connections
    around a batch. A channel that keeps what it hands over has a ``handovers``
    attribute (see ``handed_over``).
    """

    name: ClassVar[str]

    def cost_of(self, message: Outgoing) -> Decimal:
        """What sending ``message`` costs, in the company's accounting unit."""
        ...

    async def start(self) -> None: ...

    async def send(self, message: Outgoing) -> str: ...

    async def stop(self) -> None: ...


def reports_back(channel: Channel) -> bool:
    """Whether ``channel``'s provider reports later on what became of a message (a status
    callback): its deliveries are then recorded as ``sending`` before the hand-over, so
    that a report always finds its delivery and a crash never sends a message twice."""
    return bool(getattr(channel, "reports_back", False))


def handover_of(channel: Channel, message: Outgoing) -> bytes | None:
    """The bytes ``channel`` will hand over for ``message``, when it can tell before
    sending (``Channel.handover``)."""
    handover = getattr(channel, "handover", None)
    return handover(message) if callable(handover) else None


def handed_over(channel: Channel, message: Outgoing) -> bytes | None:
    """The bytes the last ``send`` of ``message`` handed to the provider, once; None when
    it did not get that far or the channel keeps no ``handovers``."""
    handovers = getattr(channel, "handovers", None)
    return handovers.take(message) if isinstance(handovers, Handovers) else None
