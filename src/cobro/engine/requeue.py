"""Claims that failed for good, found by claim, debtor, date or reason, and sent again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from cobro.domain.model import OutboxStatus
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.store import tables as t
from cobro.store.db import like_literal


@dataclass(frozen=True)
class FailedClaim:
    outbox_id: int
    customer: str
    customer_name: str
    step: str
    occurrence_on: date
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "outbox_id": self.outbox_id,
            "customer": self.customer,
            "customer_name": self.customer_name,
            "step": self.step,
            "occurrence_on": self.occurrence_on.isoformat(),
            "reason": self.reason,
        }


def failed_claims(
    conn: Connection,
    company_id: int,
    *,
    claim: int | None = None,
    debtor: str | None = None,
    on: date | None = None,
    reason: str | None = None,
) -> list[FailedClaim]:
    """The company's failed claims matching every filter given (``reason``: a part of it,
    any case), oldest first."""
    o, c = t.outbox.c, t.customers.c
    q = (
        select(o.id, c.external_id, c.name, o.step, o.occurrence_on, o.reason)
        .join(t.customers, c.id == o.customer_id)
        .where(
            o.company_id == company_id,
            o.status == OutboxStatus.FAILED.value,
            o.step.not_like(IS_WEBHOOK),  # webhooks: `cobro webhooks redeliver`
        )
        .order_by(o.occurrence_on, o.id)
    )
    if claim is not None:
        q = q.where(o.id == claim)
    if debtor is not None:
        q = q.where(c.external_id == debtor)
    if on is not None:
        q = q.where(o.occurrence_on == on)
    if reason:
        q = q.where(o.reason.ilike(f"%{like_literal(reason)}%", escape="/"))
    return [FailedClaim(r[0], r[1], r[2], r[3], r[4], r[5] or "") for r in conn.execute(q)]


def requeue(conn: Connection, company_id: int, claims: list[FailedClaim], at: datetime) -> int:
    """Plan ``claims`` again, due at ``at``, with a fresh retry budget. Recipients that
    already received the message are not sent to again. Returns how many were requeued."""
    if not claims:
        return 0
    o = t.outbox.c
    res = conn.execute(
        update(t.outbox)
        .where(
            o.company_id == company_id,
            o.id.in_([x.outbox_id for x in claims]),
            o.status == OutboxStatus.FAILED.value,
        )
        .values(
            status=OutboxStatus.PLANNED.value,
            next_attempt_at=at,
            reason=None,
            finished_at=None,
            failing_since=None,
        )
    )
    return int(res.rowcount or 0)
