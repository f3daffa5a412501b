"""Who receives a banking notice (seed 000): the selected contact, assigned ones, or primaries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BANKING_ROLE = "banking"
PRIMARY_ROLE = "primary"
STOP_PAYMENT_TYPES = frozenset({"stop_payment", "bulk_stop_payment"})


@dataclass(frozen=True)
class ContactInfo:
    id: int
    external_id: str
    email: str | None
    roles: frozenset[str]


def can_be_assigned(contact: ContactInfo) -> str | None:
    """None when the contact may hold banking notices, else the reason it may not."""
    if BANKING_ROLE not in contact.roles:
        return (
            f"contact {contact.external_id} does not have the banking & funds transfer role "
            f"('{BANKING_ROLE}'); only such contacts receive banking notifications"
        )
    return None


def can_receive(contact: ContactInfo) -> bool:
    return bool(contact.email) and BANKING_ROLE in contact.roles


def banking_recipients(
    notice_type: str,
    *,
    selected: ContactInfo | None,
    assigned: Iterable[ContactInfo],
    contacts: Iterable[ContactInfo],
) -> tuple[list[ContactInfo], str]:
    """The contacts a notice goes to, and why (for the history).

    Stop payments go only to the contact selected when the stop was entered,
    while that contact can still receive them. Otherwise, and for direct
    deposit notices, they go to every assigned contact; when none is
    assigned (or none can receive), to the primary contacts.
    """
    if notice_type in STOP_PAYMENT_TYPES and selected is not None and can_receive(selected):
        return [selected], "contact selected when the stop payment was entered"
    able = [c for c in assigned if can_receive(c)]
    if able:
        return able, "contacts assigned to this notification"
    primaries = [c for c in contacts if PRIMARY_ROLE in c.roles and c.email]
    return primaries, "primary contacts (no contact assigned to this notification)"
