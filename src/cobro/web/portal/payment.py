"""How a debtor pays from the portal: the company's payment page, built from the
``portal.pay_url`` pattern, and the reference to quote on a bank transfer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from cobro.domain.money import Money

_FIELD = re.compile(r"\{(reference|amount|currency|customer)\}")


@dataclass(frozen=True)
class PayButton:
    amount: Money
    url: str


def reference(customer: str, outbox_id: int) -> str:
    """What identifies the payment: the debtor's external id and the claim, ``C1-42``."""
    return f"{customer}-{outbox_id}"


def pay_url(pattern: str, ref: str, amount: Money, customer: str) -> str:
    """``pattern`` with its fields filled in, each value URL-encoded; the amount is the
    plain decimal (``1234.50``), whatever the debtor's locale."""
    values = {
        "reference": ref,
        "amount": f"{amount.amount:f}",
        "currency": amount.currency,
        "customer": customer,
    }
    return _FIELD.sub(lambda m: quote(values[m.group(1)], safe=""), pattern)


def pay_buttons(pattern: str | None, ref: str, customer: str, due: list[Money]) -> list[PayButton]:
    """One button per currency with something to pay; none without a payment page."""
    if not pattern:
        return []
    return [PayButton(m, pay_url(pattern, ref, m, customer)) for m in due if m.amount > 0]
