"""Event-driven notices at sending time: their template context, and whether still due."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cobro.domain.model import Recipient
from cobro.domain.money import Money
from cobro.domain.subscriptions import in_pause

EMPTY: dict[str, Any] = {
    "event": None,
    "subscription": None,
    "plan": None,
    "kind": None,
    "price": None,
    "cycle": None,
    "next_charge_on": None,
    "ends_on": None,
    "charge": None,
    "amount": None,
    "charged_at": None,
    "reason": None,  # why a charge failed: the provider's code; templates get a sentence
    "reason_code": None,  # the provider's code itself, for staff
    "type": None,
    "details": {},
    "why": None,
}


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def notice_context(payload: dict[str, Any], subscription: Any = None) -> dict[str, Any]:
    """What templates see as ``notice``: every key always present, amounts as Money."""
    out = dict(EMPTY)
    out["event"] = payload.get("event")
    sub = payload.get("subscription")
    if subscription is not None:
        sub = {
            "subscription": subscription.external_id,
            "plan": subscription.plan,
            "kind": subscription.kind,
            "price": str(Money.from_minor(subscription.price_minor, subscription.currency).amount),
            "currency": subscription.currency,
            "cycle": subscription.cycle,
            "next_charge_on": (
                subscription.next_charge_on.isoformat() if subscription.next_charge_on else None
            ),
            "ends_on": subscription.ends_on.isoformat() if subscription.ends_on else None,
        }
        out["event"] = out["event"] or "upcoming"
    if sub:
        out.update(
            subscription=sub["subscription"],
            plan=sub["plan"],
            kind=sub["kind"],
            price=Money.of(Decimal(sub["price"]), sub["currency"]),
            cycle=sub["cycle"],
            next_charge_on=_date(sub.get("next_charge_on")),
            ends_on=_date(sub.get("ends_on")),
        )
    if payload.get("amount") is not None:
        out["amount"] = Money.of(Decimal(payload["amount"]), payload["currency"])
    if payload.get("charged_at"):
        out["charged_at"] = datetime.fromisoformat(payload["charged_at"])
    out["charge"] = payload.get("charge")
    out["reason"] = out["reason_code"] = payload.get("reason")
    if payload.get("contacts") is not None:
        out["type"] = payload.get("event")
        out["details"] = dict(payload.get("details") or {})
        out["why"] = payload.get("why")
    return out


def upcoming_cancel_reason(subscription: Any, charge_on: date) -> str | None:
    """Why a planned upcoming-charge reminder should no longer go, if it should not."""
    if subscription is None:
        return "the subscription no longer exists"
    if subscription.status != "active":
        return f"the subscription is {subscription.status}"
    if subscription.next_charge_on != charge_on:
        return f"the charge moved to {subscription.next_charge_on}"
    if in_pause(charge_on, subscription.pause_from, subscription.pause_until):
        return "the charge falls inside a pause"
    return None


def main_role(recipients: tuple[Recipient, ...]) -> Recipient:
    """Whom a message is for; the others get copies."""
    for role in (Recipient.DEBTOR, Recipient.ADMIN, Recipient.CONTACT):
        if role in recipients:
            return role
    return recipients[0]


UNREACHABLE = {
    Recipient.DEBTOR: "the debtor has no email address",
    Recipient.ADMIN: "no admin address: set subscriptions.admin.email",
    Recipient.CONTACT: "no contact can receive this notice (no banking contact or primary "
    "contact with an email address)",
}
