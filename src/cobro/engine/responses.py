"""What a debtor answers to a claim: opened and read links, disputes, promises to pay.

Each is a row of its own table and an entry of the evidence chain, written in the
caller's transaction, with the webhook events it raises (``read.confirmed``,
``dispute.opened`` and the staff task's ``task.created``, ``dispute.resolved``). The
portal records them from the debtor's link; staff record disputes and promises taken by
phone.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from cobro.engine.pauses import PAUSING
from cobro.engine.webhooks import Event, emit, money, subscribed, task_events, timestamp
from cobro.errors import CobroError
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t

DISPUTE_TASK = "dispute"  # tasks.action_key of a new dispute: + /id


class ResponseError(CobroError):
    """A dispute or promise that cannot be recorded as asked."""


@dataclass(frozen=True)
class Client:
    """Who answered: the network address and browser of a portal request (None for staff)."""

    ip: str | None = None
    user_agent: str | None = None


STAFF = Client()


def _ua(client: Client) -> str | None:
    return client.user_agent[:500] if client.user_agent else None


def record_view(
    conn: Connection,
    company_id: int,
    customer_id: int,
    outbox_id: int,
    kind: str,
    at: datetime,
    client: Client,
) -> int:
    """Record that the claim's link was ``opened`` (a GET: weak, scanners open links too)
    or that its reading was confirmed (``read``: the debtor's explicit POST)."""
    if kind not in ("opened", "read"):
        raise ValueError(kind)
    view_id = int(
        conn.execute(
            insert(t.claim_views)
            .values(
                company_id=company_id,
                customer_id=customer_id,
                outbox_id=outbox_id,
                kind=kind,
                at=at,
                ip=client.ip,
                user_agent=_ua(client),
            )
            .returning(t.claim_views.c.id)
        ).scalar_one()
    )
    append(
        conn,
        company_id,
        [
            EvidenceEntry(
                f"claim.{kind}",
                f"outbox:{outbox_id}",
                customer_id,
                at,
                {"view": view_id, "ip": client.ip, "user_agent": _ua(client)},
            )
        ],
    )
    if kind == "read" and "read.confirmed" in subscribed(conn, company_id):
        o = t.outbox.c
        claim = conn.execute(
            select(o.step, o.occurrence_on).where(o.id == outbox_id, o.company_id == company_id)
        ).one()
        emit(
            conn,
            company_id,
            [
                Event(
                    "read.confirmed",
                    str(view_id),
                    customer_id,
                    at,
                    {
                        "claim": {
                            "id": outbox_id,
                            "step": str(claim.step),
                            "date": claim.occurrence_on.isoformat(),
                        },
                        "read_at": timestamp(at),
                    },
                )
            ],
        )
    return view_id


def _open_items(
    conn: Connection, company_id: int, customer_id: int, ids: Sequence[int]
) -> dict[int, tuple[str, int]]:
    """The debtor's open receivables among ``ids``: id -> (number, balance)."""
    r = t.receivables.c
    found = {
        int(row.id): (str(row.number), int(row.balance_minor))
        for row in conn.execute(
            select(r.id, r.number, r.balance_minor).where(
                r.company_id == company_id,
                r.customer_id == customer_id,
                r.id.in_(list(ids)),
                r.balance_minor > 0,
            )
        )
    }
    missing = sorted(set(ids) - set(found))
    if missing:
        closed = conn.execute(
            select(r.number).where(
                r.company_id == company_id, r.customer_id == customer_id, r.id.in_(missing)
            )
        ).scalars()
        names = list(closed)
        if len(names) == len(missing):
            raise ResponseError(f"item {', '.join(names)} is not open (nothing is owed on it)")
        raise ResponseError(f"not an open item of this debtor: {', '.join(map(str, missing))}")
    return found


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes


def open_dispute(
    conn: Connection,
    company_id: int,
    customer_id: int,
    receivable_id: int,
    reason: str,
    at: datetime,
    *,
    source: str,
    client: Client = STAFF,
    outbox_id: int | None = None,
    attachment: Attachment | None = None,
) -> int:
    """Open a dispute of one open item (left out of every claim while open) and a staff
    task to look at it; the dispute's id."""
    reason = reason.strip()
    if not reason:
        raise ResponseError("a dispute needs a reason")
    number = _open_items(conn, company_id, customer_id, [receivable_id])[receivable_id][0]
    d = t.disputes.c
    before = conn.execute(
        select(d.status).where(d.receivable_id == receivable_id, d.status.in_(PAUSING))
    ).scalar()
    if before == "open":
        raise ResponseError(f"item {number} is already disputed")
    if before == "accepted":
        raise ResponseError(f"item {number} was disputed and the dispute accepted")
    digest = hashlib.sha256(attachment.data).hexdigest() if attachment else None
    dispute_id = int(
        conn.execute(
            insert(t.disputes)
            .values(
                company_id=company_id,
                customer_id=customer_id,
                receivable_id=receivable_id,
                outbox_id=outbox_id,
                source=source,
                reason=reason[:2000],
                attachment_name=attachment.name[:200] if attachment else None,
                attachment_type=attachment.content_type[:100] if attachment else None,
                attachment_zlib=zlib.compress(attachment.data) if attachment else None,
                attachment_sha256=digest,
                status="open",
                opened_at=at,
                ip=client.ip,
                user_agent=_ua(client),
            )
            .returning(d.id)
        ).scalar_one()
    )
    append(
        conn,
        company_id,
        [
            EvidenceEntry(
                "dispute.opened",
                f"dispute:{dispute_id}",
                customer_id,
                at,
                {
                    "receivable": number,
                    "reason": reason[:2000],
                    "source": source,
                    "claim": outbox_id,
                    "attachment_sha256": digest,
                    "ip": client.ip,
                    "user_agent": _ua(client),
                },
            )
        ],
    )
    task_id = conn.execute(
        insert(t.tasks)
        .values(
            company_id=company_id,
            customer_id=customer_id,
            action_key=f"{DISPUTE_TASK}/{dispute_id}",
            created_on=at.date(),
            due_at=at + timedelta(days=1),
            message=f"Item {number} disputed: {reason[:1900]}",
            status="open",
            created_at=at,
        )
        .returning(t.tasks.c.id)
    ).scalar_one()
    wanted = subscribed(conn, company_id)
    events: list[Event] = []
    if "dispute.opened" in wanted:
        r = t.receivables.c
        balance, currency = conn.execute(
            select(r.balance_minor, r.currency).where(r.id == receivable_id)
        ).one()
        events.append(
            Event(
                "dispute.opened",
                str(dispute_id),
                customer_id,
                at,
                {
                    "dispute": {
                        "id": dispute_id,
                        "item": {"number": number, "balance": money(balance, currency)},
                        "reason": reason[:2000],
                        "source": source,
                        "claim": outbox_id,
                        "attachment": attachment.name[:200] if attachment else None,
                    }
                },
            )
        )
    if "task.created" in wanted:
        events += task_events(conn, company_id, [task_id])
    emit(conn, company_id, events)
    return dispute_id


def resolve_dispute(
    conn: Connection,
    company_id: int,
    dispute_id: int,
    accepted: bool,
    note: str | None,
    at: datetime,
) -> None:
    """Accept or reject an open dispute: a rejected item is claimed again; an accepted one
    is void (the company issues a credit note) and stays out of every claim."""
    d, r = t.disputes.c, t.receivables.c
    row = conn.execute(
        select(d.customer_id, d.status, r.number)
        .join(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id, d.id == dispute_id)
    ).first()
    if row is None:
        raise ResponseError(f"no dispute {dispute_id}")
    if row.status != "open":
        raise ResponseError(f"dispute {dispute_id} is already {row.status}")
    status = "accepted" if accepted else "rejected"
    conn.execute(
        update(t.disputes)
        .where(d.id == dispute_id)
        .values(status=status, resolved_at=at, resolution=note[:2000] if note else None)
    )
    append(
        conn,
        company_id,
        [
            EvidenceEntry(
                "dispute.resolved",
                f"dispute:{dispute_id}",
                int(row.customer_id),
                at,
                {"status": status, "note": note},
            )
        ],
    )
    emit(
        conn,
        company_id,
        [
            Event(
                "dispute.resolved",
                str(dispute_id),
                int(row.customer_id),
                at,
                {
                    "dispute": {
                        "id": dispute_id,
                        "item": {"number": str(row.number)},
                        "status": status,
                        "note": note[:2000] if note else None,
                    }
                },
            )
        ],
    )


def add_promise(
    conn: Connection,
    company_id: int,
    customer_id: int,
    receivable_ids: Sequence[int],
    promised_on: date,
    grace_days: int,
    at: datetime,
    *,
    today: date,
    max_days: int,
    source: str,
    client: Client = STAFF,
    outbox_id: int | None = None,
    note: str | None = None,
) -> int:
    """Promise to pay these open items by ``promised_on`` (today at the earliest, at most
    ``max_days`` ahead); they are paused until ``promised_on + grace_days``."""
    if not receivable_ids:
        raise ResponseError("a promise covers at least one item")
    if promised_on < today:
        raise ResponseError(f"the promised date {promised_on} has passed")
    if promised_on > today + timedelta(days=max_days):
        raise ResponseError(f"a promise is for at most {max_days} days ahead")
    items = _open_items(conn, company_id, customer_id, receivable_ids)
    p, pi = t.promises.c, t.promise_items.c
    promised = conn.execute(
        select(pi.receivable_id, p.promised_on)
        .join(t.promises, p.id == pi.promise_id)
        .where(pi.receivable_id.in_(list(items)), p.status == "open")
        .order_by(pi.receivable_id)
    ).first()
    if promised is not None:
        raise ResponseError(
            f"item {items[promised.receivable_id][0]} is already promised "
            f"for {promised.promised_on.isoformat()}"
        )
    promise_id = int(
        conn.execute(
            insert(t.promises)
            .values(
                company_id=company_id,
                customer_id=customer_id,
                outbox_id=outbox_id,
                source=source,
                promised_on=promised_on,
                grace_days=grace_days,
                note=note[:2000] if note else None,
                status="open",
                created_at=at,
                ip=client.ip,
                user_agent=_ua(client),
            )
            .returning(p.id)
        ).scalar_one()
    )
    conn.execute(
        insert(t.promise_items),
        [
            {"promise_id": promise_id, "receivable_id": rid, "balance_minor": balance}
            for rid, (_, balance) in sorted(items.items())
        ],
    )
    append(
        conn,
        company_id,
        [
            EvidenceEntry(
                "promise.made",
                f"promise:{promise_id}",
                customer_id,
                at,
                {
                    "promised_on": promised_on.isoformat(),
                    "grace_days": grace_days,
                    "items": {number: balance for number, balance in sorted(items.values())},
                    "source": source,
                    "claim": outbox_id,
                    "ip": client.ip,
                    "user_agent": _ua(client),
                },
            )
        ],
    )
    return promise_id
