"""Opt-outs: a debtor who asked not to be written to on a channel.

They come from an SMS reply (STOP, BAJA, ALTO...), the one-click unsubscribe of an email
(RFC 8058; its URL carries a token signed like the portal links), staff and imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Connection, delete, select

from cobro.errors import CobroError
from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

SALT = "cobro.unsubscribe"
CHANNELS = ("email", "sms", "push", "voice")
SOURCES = ("sms_reply", "unsubscribe", "staff", "import")
# Replies that opt a number out of SMS (Twilio's own and the usual Spanish ones).
STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "baja", "alto", "parar"}
)
MAX_TOKEN_LENGTH = 400


def is_stop(body: str) -> bool:
    """Whether an SMS reply asks to stop: its first word is a stop word, any case."""
    words = body.strip().split()
    return bool(words) and words[0].strip(".!¡,;:").lower() in STOP_WORDS


def make_unsubscribe_token(
    secret: str, company: str, customer: str, outbox_id: int, channel: str
) -> str:
    """The signed token of the unsubscribe link of claim ``outbox_id``'s message."""
    return str(
        URLSafeSerializer(secret, salt=SALT).dumps(
            {"co": company, "cu": customer, "ob": outbox_id, "ch": channel}
        )
    )


def unsubscribe_url(server_url: str, token: str) -> str:
    return f"{server_url.rstrip('/')}/unsubscribe/{token}"


@dataclass(frozen=True)
class Unsubscribe:
    company: str
    customer: str
    outbox_id: int
    channel: str


def token_company(token: str) -> str | None:
    """The company an unsubscribe token names, read WITHOUT checking its signature (to
    choose whose secret checks it)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        _ok, payload = URLSafeSerializer("", salt=SALT).loads_unsafe(token)
    except Exception:
        return None
    found = payload.get("co") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


def read_unsubscribe_token(secret: str, token: str, company: str) -> Unsubscribe:
    """What a token asks to stop, or ``CobroError`` when it is malformed, altered or for
    another company."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise CobroError("malformed token")
    try:
        p = URLSafeSerializer(secret, salt=SALT).loads(token)
    except BadSignature as exc:
        raise CobroError(f"bad signature: {exc}") from None
    if not (
        isinstance(p, dict)
        and p.get("co") == company
        and isinstance(p.get("cu"), str)
        and isinstance(p.get("ob"), int)
        and p.get("ch") in CHANNELS
    ):
        raise CobroError("the token does not name a message of this company")
    return Unsubscribe(p["co"], p["cu"], p["ob"], p["ch"])


@dataclass(frozen=True)
class OptOut:
    customer: str
    customer_name: str
    channel: str
    source: str
    detail: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "customer_name": self.customer_name,
            "channel": self.channel,
            "source": self.source,
            "detail": self.detail,
            "at": self.at.isoformat(),
        }


def add_optout(
    conn: Connection,
    company_id: int,
    customer_id: int,
    channel: str,
    source: str,
    at: datetime,
    detail: str | None = None,
) -> bool:
    """Record that the debtor opted out of ``channel``; False when it already had."""
    if channel not in CHANNELS:
        raise CobroError(f"unknown channel {channel!r}; use {', '.join(CHANNELS)}")
    added = conn.execute(
        insert_ignoring(conn, t.optouts)
        .values(
            company_id=company_id,
            customer_id=customer_id,
            channel=channel,
            source=source,
            detail=(detail or None) and detail[:500],
            at=at,
        )
        .on_conflict_do_nothing()
    ).rowcount
    if added:
        append(
            conn,
            company_id,
            [
                EvidenceEntry(
                    "optout",
                    f"customer:{customer_id}",
                    customer_id,
                    at,
                    {"channel": channel, "source": source, "detail": detail},
                )
            ],
        )
    return bool(added)


def remove_optout(
    conn: Connection, company_id: int, customer_id: int, channel: str, at: datetime
) -> bool:
    x = t.optouts.c
    gone = conn.execute(
        delete(t.optouts).where(
            x.company_id == company_id, x.customer_id == customer_id, x.channel == channel
        )
    ).rowcount
    if gone:
        append(
            conn,
            company_id,
            [
                EvidenceEntry(
                    "optout.removed",
                    f"customer:{customer_id}",
                    customer_id,
                    at,
                    {"channel": channel},
                )
            ],
        )
    return bool(gone)


def list_optouts(
    conn: Connection, company_id: int, customer: str | None = None, channel: str | None = None
) -> list[OptOut]:
    x, c = t.optouts.c, t.customers.c
    q = (
        select(c.external_id, c.name, x.channel, x.source, x.detail, x.at)
        .join(t.customers, c.id == x.customer_id)
        .where(x.company_id == company_id)
        .order_by(c.external_id, x.channel)
    )
    if customer is not None:
        q = q.where(c.external_id == customer)
    if channel is not None:
        q = q.where(x.channel == channel)
    return [OptOut(*row) for row in conn.execute(q)]


def customers_with_phone(conn: Connection, company_id: int, phone: str) -> list[int]:
    """The debtors a phone number is theirs or one of their contacts'."""
    c, ct = t.customers.c, t.contacts.c
    ids = set(
        conn.execute(select(c.id).where(c.company_id == company_id, c.phone == phone)).scalars()
    )
    ids.update(
        conn.execute(
            select(ct.customer_id).where(ct.company_id == company_id, ct.phone == phone)
        ).scalars()
    )
    return sorted(ids)


def customer_id_of(conn: Connection, company_id: int, external_id: str) -> int:
    c = t.customers.c
    found = conn.execute(
        select(c.id).where(c.company_id == company_id, c.external_id == external_id)
    ).scalar()
    if found is None:
        raise CobroError(f"{external_id}: no such debtor")
    return int(found)
