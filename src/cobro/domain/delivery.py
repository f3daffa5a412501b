"""One state model for every delivery, whatever its channel.

A delivery is one message to one address on one channel::

    created -> sending -> sent -> delivered
                               -> temporary_failure
                               -> permanent_failure
                               -> technical_failure

``created`` is the message rendered and addressed; ``sending`` handed to the channel,
its answer not known yet (a channel whose provider reports back later records this
before the hand-over, so that a crash leaves a delivery in doubt instead of none);
``sent`` accepted by the provider or the mail server; the last four come from what the
channel answered on the spot or learned later (a status callback, a bounce).
A state only moves forward: a late or repeated report never takes a delivery back.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    CREATED = "created"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary_failure"
    PERMANENT_FAILURE = "permanent_failure"
    TECHNICAL_FAILURE = "technical_failure"

    @property
    def failed(self) -> bool:
        return self in FAILURES

    @property
    def label(self) -> str:
        """What a person reads: ``temporary failure``."""
        return self.value.replace("_", " ")


FAILURES = frozenset(
    {
        DeliveryState.TEMPORARY_FAILURE,
        DeliveryState.PERMANENT_FAILURE,
        DeliveryState.TECHNICAL_FAILURE,
    }
)

_RANK = {
    DeliveryState.CREATED: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.TEMPORARY_FAILURE: 3,
    DeliveryState.DELIVERED: 4,
    DeliveryState.PERMANENT_FAILURE: 4,
    DeliveryState.TECHNICAL_FAILURE: 4,
}


def moves_to(current: DeliveryState | str, new: DeliveryState | str) -> bool:
    """Whether a delivery in ``current`` takes ``new``: only a later state does (a
    callback that arrives late or twice changes nothing)."""
    return _RANK[DeliveryState(new)] > _RANK[DeliveryState(current)]


# What a channel's answer on the spot makes of a delivery (``Dispatcher`` outcome kinds).
_OUTCOMES = {
    "ok": DeliveryState.SENT,
    "temporary": DeliveryState.TEMPORARY_FAILURE,
    "down": DeliveryState.TEMPORARY_FAILURE,
    "permanent": DeliveryState.PERMANENT_FAILURE,
    "gone": DeliveryState.PERMANENT_FAILURE,
    "technical": DeliveryState.TECHNICAL_FAILURE,
    "sending": DeliveryState.SENDING,
}


def state_of_outcome(kind: str) -> DeliveryState:
    return _OUTCOMES.get(kind, DeliveryState.TECHNICAL_FAILURE)
