"""Messages as sent: the bytes a channel handed over, compressed beside their delivery row."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from cobro.store import tables as t

# How each channel's message is stored in an export, and what it is.
SUFFIXES = {"email": ".eml", "sms": ".txt", "push": ".json", "voice": ".xml"}
MEDIA_TYPES = {
    "email": "message/rfc822",
    "sms": "text/plain; charset=utf-8",
    "push": "application/json",
    "voice": "application/xml",  # the TwiML the call played
}


@dataclass(frozen=True)
class KeptMessage:
    """What a delivery row keeps of its message, and the digest its evidence entry holds."""

    sha256: str | None
    compressed: bytes | None

    def columns(self) -> dict[str, Any]:
        return {"message_zlib": self.compressed, "message_sha256": self.sha256}


def keep_message(data: bytes | None) -> KeptMessage:
    """``data`` (the bytes handed to the provider) compressed, with its SHA-256."""
    if data is None:
        return KeptMessage(None, None)
    # An 8 KiB window and less memory: as small as the default on messages of a few KiB,
    # and about three times faster, most of zlib's time going into setting up its state.
    packer = zlib.compressobj(6, zlib.DEFLATED, 13, 6)
    return KeptMessage(hashlib.sha256(data).hexdigest(), packer.compress(data) + packer.flush())


def unpack(compressed: bytes) -> bytes:
    """The message bytes kept in a delivery row."""
    return zlib.decompress(compressed)


@dataclass(frozen=True)
class KeptDelivery:
    """A delivery's message as sent."""

    id: int
    outbox_id: int
    customer: str
    channel: str
    sha256: str | None
    data: bytes


def message_as_sent(conn: Connection, company_id: int, delivery_id: int) -> KeptDelivery | None:
    """The message a delivery row keeps, or None (no such delivery, or nothing kept)."""
    d, o, c = t.deliveries.c, t.outbox.c, t.customers.c
    row = conn.execute(
        select(d.id, d.outbox_id, d.channel, d.message_sha256, d.message_zlib, c.external_id)
        .join(t.outbox, o.id == d.outbox_id)
        .join(t.customers, c.id == o.customer_id)
        .where(d.company_id == company_id, d.id == delivery_id)
    ).first()
    if row is None or row.message_zlib is None:
        return None
    return KeptDelivery(
        int(row.id),
        int(row.outbox_id),
        str(row.external_id),
        str(row.channel),
        row.message_sha256,
        unpack(row.message_zlib),
    )
