"""What a debtor's account page shows beside the engine's lists: the debtor's card and
payments; every query scoped to the company of the session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, select

from cobro.domain.money import Money
from cobro.store import tables as t


@dataclass(frozen=True)
class DebtorCard:
    id: int
    external_id: str
    name: str
    kind: str
    group: str | None
    language: str | None
    email: str | None
    phone: str | None
    invalid_email: str | None
    invalid_phone: str | None
    policy: str | None
    blocked: bool
    tags: str


def debtor_card(conn: Connection, company_id: int, debtor_id: int) -> DebtorCard | None:
    """The debtor ``debtor_id`` of the company, or None (unknown, or another company's)."""
    c = t.customers.c
    row = conn.execute(
        select(
            c.id,
            c.external_id,
            c.name,
            c.kind,
            c.group_name,
            c.language,
            c.email,
            c.phone,
            c.invalid_email,
            c.invalid_phone,
            c.effective_policy,
            c.blocked,
            c.tags,
        ).where(c.company_id == company_id, c.id == debtor_id)
    ).first()
    if row is None:
        return None
    return DebtorCard(
        int(row.id),
        str(row.external_id),
        str(row.name),
        str(row.kind),
        row.group_name,
        row.language,
        row.email,
        row.phone,
        row.invalid_email,
        row.invalid_phone,
        row.effective_policy,
        bool(row.blocked),
        str(row.tags or ""),
    )


@dataclass(frozen=True)
class PaymentLine:
    external_id: str
    paid_on: date
    amount: Money
    unallocated: Money
    reversal: bool


def payments(conn: Connection, company_id: int, debtor_id: int) -> list[PaymentLine]:
    """The debtor's payments and reversals, newest first."""
    p = t.payments.c
    return [
        PaymentLine(
            str(row.external_id),
            row.paid_on,
            Money.from_minor(int(row.amount_minor), row.currency),
            Money.from_minor(int(row.unallocated_minor), row.currency),
            row.reverses_id is not None,
        )
        for row in conn.execute(
            select(
                p.external_id,
                p.paid_on,
                p.amount_minor,
                p.unallocated_minor,
                p.currency,
                p.reverses_id,
            )
            .where(p.company_id == company_id, p.customer_id == debtor_id)
            .order_by(p.paid_on.desc(), p.id.desc())
        )
    ]


def claim_of(conn: Connection, company_id: int, debtor_id: int, claim: int) -> bool:
    """Whether ``claim`` is an outbox row of this debtor of the company."""
    o = t.outbox.c
    return (
        conn.execute(
            select(o.id).where(
                o.id == claim, o.company_id == company_id, o.customer_id == debtor_id
            )
        ).first()
        is not None
    )


def resend_state(
    conn: Connection, company_id: int, debtor_id: int, resend: int
) -> tuple[str, str | None] | None:
    """(status, reason) of the debtor's resend row ``resend``, or None."""
    o = t.outbox.c
    row = conn.execute(
        select(o.status, o.reason).where(
            o.id == resend, o.company_id == company_id, o.customer_id == debtor_id
        )
    ).first()
    return None if row is None else (str(row.status), row.reason)
