"""The pay link by SMS a debtor asks for during an automated call (pressing 1).

It is planned as an outbox row ``paylink/<claim>/<call>`` for the number called, so that
it is sent once, by the next dispatch, with the claim's signed pay link, and is recorded
and kept as evidence like any other message.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from cobro.config import CobroConfig
from cobro.domain.model import OutboxStatus
from cobro.engine.messages import PAYLINK
from cobro.store import tables as t
from cobro.store.db import insert_ignoring


def plan_pay_link(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    *,
    claim: int,
    call: int,
    customer_id: int,
    to: str,
    at: datetime,
) -> bool:
    """Plan the SMS with ``claim``'s pay link to ``to``, asked for on delivery ``call``;
    False when it cannot go (SMS not set up, the debtor opted out of SMS). Asking twice on
    one call plans it once."""
    if config.channels.sms is None:
        return False
    x = t.optouts.c
    opted = conn.execute(
        select(x.id).where(
            x.company_id == company_id, x.customer_id == customer_id, x.channel == "sms"
        )
    ).first()
    if opted is not None:
        return False
    day = at.astimezone(ZoneInfo(config.company.timezone)).date()
    conn.execute(
        insert_ignoring(conn, t.outbox)
        .values(
            company_id=company_id,
            customer_id=customer_id,
            step=f"{PAYLINK}/{claim}/{call}",
            occurrence_on=day,
            status=OutboxStatus.PLANNED.value,
            due_at=at,
            next_attempt_at=at,
            payload={"claim": claim, "to": to},
            created_at=at,
        )
        .on_conflict_do_nothing()
    )
    return True
