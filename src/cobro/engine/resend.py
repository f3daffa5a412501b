"""Resending a claim's message: the message kept as sent, handed over again as a new delivery.

``resend_claim`` writes one outbox row, step ``resend/<claim>/<n>``, whose payload names
the deliveries it repeats and where each goes (the original recipients, or the one
address given). The dispatcher sends it like any row, so a resend is exactly-once and
survives a crash the same way: the row is the unit, and a recipient that already has a
delivery of it is not sent to again.

What is sent is the message kept as it was handed over (``deliveries.message_zlib``), not
a new rendering: the same subject, text, HTML, logo and attachments (and the same pay
link, signed when the claim was first sent). An email gets a new ``Date`` and
``Message-ID`` (mail clients drop a message whose Message-ID they already hold), ``To``
when sent to another address, and ``X-Cobro-Claim``/``X-Cobro-Resend-Of`` headers naming
the resend and the message it repeats; an SMS or a push notification is the same text.

A call resent counts against the weekly limit of calls of the claim's phase
(``call.max_per_7_days``, ``cobro.engine.call_limit``): beyond it the call is left out and
the claim's messages on its other channels go; a claim that reached the debtor by a call
only is refused, saying when the next call is allowed. The dispatcher checks again when it
sends the row.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser, BytesParser
from email.policy import default as default_policy
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Connection, func, select

from cobro.channels.base import Outgoing
from cobro.config import CobroConfig
from cobro.domain.model import OutboxStatus, Recipient
from cobro.engine.call_limit import WeeklyCalls, next_call
from cobro.engine.messages import RESEND_PREFIX
from cobro.errors import CobroError, PermanentFailure
from cobro.evidence.messages import unpack
from cobro.render.mime import checked_address, readdress
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

#: Roles whose messages may go to an address given with ``--to``: the debtor's own. Staff
#: copies (sales rep, account manager) hold internal notes and links.
OUTWARD_ROLES = frozenset({Recipient.DEBTOR.value, Recipient.CONTACT.value})


class ResendError(CobroError):
    """A claim that cannot be resent as asked (unknown, never sent, a bad address)."""


@dataclass(frozen=True)
class Original:
    """A delivery of the claim being resent, with its message as it was handed over."""

    delivery: int
    channel: str
    recipient: str
    role: str
    message_id: str | None
    body_sha256: str | None
    at: datetime
    data: bytes


@dataclass(frozen=True)
class Target:
    """Where a resend row sends one original delivery's message again."""

    delivery: int  # the delivery repeated
    channel: str
    address: str
    role: str
    readdressed: bool  # sent to another address than the original's (``--to``)

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery": self.delivery,
            "channel": self.channel,
            "address": self.address,
            "role": self.role,
            "readdressed": self.readdressed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(
            int(data["delivery"]),
            str(data["channel"]),
            str(data["address"]),
            str(data["role"]),
            bool(data.get("readdressed")),
        )


def targets(payload: dict[str, Any] | None) -> list[Target]:
    """The targets a resend row's payload names."""
    return [Target.from_json(x) for x in (payload or {}).get("targets", [])]


def _kept(conn: Connection, company_id: int, where: Any) -> list[Original]:
    """Sent deliveries matching ``where`` whose message was kept, oldest first."""
    d = t.deliveries.c
    return [
        Original(
            int(row.id),
            row.channel,
            row.recipient,
            row.recipient_role,
            row.message_id,
            row.body_sha256,
            row.at,
            unpack(row.message_zlib),
        )
        for row in conn.execute(
            select(d.id, d.channel, d.recipient, d.recipient_role, d.message_id)
            .add_columns(d.body_sha256, d.at, d.message_zlib)
            .where(
                where,
                d.company_id == company_id,
                d.status == "sent",
                d.message_zlib.is_not(None),
            )
            .order_by(d.id)
        )
    ]


def originals(conn: Connection, company_id: int, claim: int) -> list[Original]:
    """What ``claim`` sent, as kept: its latest sent delivery per channel and recipient."""
    latest = {
        (x.channel, x.recipient.lower()): x
        for x in _kept(conn, company_id, t.deliveries.c.outbox_id == claim)
    }
    return sorted(latest.values(), key=lambda x: x.delivery)


def originals_by_id(conn: Connection, company_id: int, ids: list[int]) -> dict[int, Original]:
    """The kept messages of the deliveries ``ids`` (of the company), by delivery id."""
    if not ids:
        return {}
    return {x.delivery: x for x in _kept(conn, company_id, t.deliveries.c.id.in_(ids))}


def check_address(to: str, region: str | None) -> tuple[str, str]:
    """(channel, address) for an address given by hand: an email address, or a phone number
    (E.164; national numbers read in ``region``). ``ResendError`` when it is neither."""
    if any(ch in to for ch in "\r\n") or any(ord(ch) < 32 or ord(ch) == 127 for ch in to):
        raise ResendError(f"--to: {to!r} contains a line break or control character; refused")
    to = to.strip()
    if "@" in to:
        try:
            return "email", checked_address(to)
        except PermanentFailure as exc:
            raise ResendError(f"--to: {exc}") from None
    try:
        number = phonenumbers.parse(to, region)
    except phonenumbers.NumberParseException as exc:
        raise ResendError(
            f"--to: {to!r} is neither an email address nor a phone number: {exc}"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ResendError(f"--to: {to!r} is not a valid phone number")
    return "sms", str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def resend_claim(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    claim: int,
    *,
    to: str | None,
    at: datetime,
) -> int:
    """Plan the message of ``claim`` (an outbox id) to be sent again at ``at``: to the
    recipients it reached, or only to ``to`` (an email address or a phone number: the
    debtor's message of that channel, never a staff copy). Written in the caller's
    transaction; the next dispatch sends it. Returns the resend's outbox id.

    ``ResendError`` for a claim that is not the company's, was never sent, has no message
    kept as sent, or for an address that is not one."""
    o = t.outbox.c
    row = conn.execute(
        select(o.customer_id, o.status, o.step).where(o.id == claim, o.company_id == company_id)
    ).one_or_none()
    if row is None:
        raise ResendError(f"no claim {claim} (see `cobro history` for claim numbers)")
    if row.status != OutboxStatus.SENT.value:
        raise ResendError(f"claim {claim} was never sent (it is {row.status}); nothing to resend")
    found = originals(conn, company_id, claim)
    if not found:
        raise ResendError(f"claim {claim} has no message kept as sent; it cannot be resent")
    if to is None:
        chosen = [Target(x.delivery, x.channel, x.recipient, x.role, False) for x in found]
    else:
        channel, address = check_address(to, config.company.region)
        outward = [x for x in found if x.channel == channel and x.role in OUTWARD_ROLES]
        if not outward:
            sent_by = sorted({x.channel for x in found if x.role in OUTWARD_ROLES}) or ["none"]
            raise ResendError(
                f"claim {claim} was not sent to the debtor by {channel} "
                f"(it went by {', '.join(sent_by)}); give an address of that channel"
            )
        first = outward[0]
        chosen = [Target(first.delivery, channel, address, first.role, True)]
    chosen = _within_call_limit(
        conn, config, company_id, claim, row.customer_id, row.step, chosen, at
    )
    resend_of = f"{RESEND_PREFIX}{claim}/"
    earlier = conn.execute(
        select(func.count()).where(o.company_id == company_id, o.step.startswith(resend_of))
    ).scalar_one()
    day = at.astimezone(ZoneInfo(config.company.timezone)).date()
    for n in range(int(earlier) + 1, int(earlier) + 100):
        inserted = conn.execute(
            insert_ignoring(conn, t.outbox)
            .values(
                company_id=company_id,
                customer_id=row.customer_id,
                step=f"{resend_of}{n}",
                occurrence_on=day,
                status=OutboxStatus.PLANNED.value,
                due_at=at,
                next_attempt_at=at,
                payload={"resend_of": claim, "targets": [x.to_json() for x in chosen]},
                created_at=at,
            )
            .on_conflict_do_nothing()
            .returning(o.id)
        ).scalar_one_or_none()
        if inserted is not None:
            return int(inserted)
    raise ResendError(f"claim {claim} could not be planned for resending; try again")


def original_step(conn: Connection, company_id: int, step: str) -> str:
    """The step of the claim a resend goes back to, through resends of resends: its
    phase's settings (the weekly limit of calls) are the ones that hold."""
    o = t.outbox.c
    for _ in range(100):  # a chain of resends is short; a loop is not followed forever
        if not step.startswith(RESEND_PREFIX):
            return step
        claim = step.removeprefix(RESEND_PREFIX).partition("/")[0]
        if not claim.isdigit():
            return step
        found = conn.execute(
            select(o.step).where(o.id == int(claim), o.company_id == company_id)
        ).scalar_one_or_none()
        if found is None:
            return step
        step = str(found)
    return step


def _within_call_limit(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    claim: int,
    customer_id: int,
    step: str,
    chosen: list[Target],
    at: datetime,
) -> list[Target]:
    """``chosen`` without its calls when the debtor was called as often in 7 days as the
    claim's phase allows (``call.max_per_7_days``, ``cobro.engine.call_limit``): the
    claim's messages on its other channels go. ``ResendError`` when none of them is for
    the debtor: the call alone was asked for, and when it is allowed again is said."""
    if not any(x.channel == "voice" for x in chosen):
        return chosen
    step = original_step(conn, company_id, step)
    limit = config.call_settings(step).max_per_7_days
    calls = WeeklyCalls()
    calls.load(conn, company_id, [customer_id], at)
    if calls.refused(customer_id, limit, at) is None:
        return chosen
    kept = [x for x in chosen if x.channel != "voice"]
    if not any(x.role in OUTWARD_ROLES for x in kept):
        c = t.customers.c
        tz = conn.execute(select(c.timezone).where(c.id == customer_id)).scalar_one_or_none()
        allowed = next_call(
            calls.next_allowed(customer_id, limit, at), tz or config.company.timezone
        )
        raise ResendError(
            f"claim {claim} reached the debtor by a call only, and the debtor was called "
            f"{calls.count(customer_id, at)} time(s) within 7 days, the most {step} allows "
            f"(call.max_per_7_days: {limit}); {allowed}"
        )
    return kept


def _subject(data: bytes) -> str:
    """The decoded Subject of an email as sent."""
    header = BytesHeaderParser(policy=default_policy).parsebytes(data)
    return str(header.get("Subject", ""))


def resent_message(
    original: Original,
    target: Target,
    *,
    outbox_id: int,
    company: str,
    sender_domain: str,
    at: datetime,
    meta: dict[str, str] | None = None,
) -> Outgoing:
    """The message of ``original`` for ``target``, as the resend row ``outbox_id`` sends it:
    the bytes first handed over (an email readdressed: new Date, Message-ID and, for
    another address, To)."""
    digest = hashlib.sha256(target.address.lower().encode()).hexdigest()[:12]
    message_id = f"<cobro.{company}.{outbox_id}.{digest}@{sender_domain}>"
    data = original.data
    subject = ""
    if target.channel == "email":
        subject = _subject(data)
        data = readdress(
            data,
            date=at.astimezone(UTC),
            message_id=message_id,
            to=target.address if target.readdressed else None,
            headers={
                "X-Cobro-Claim": f"{company}/{outbox_id}/resend",
                "X-Cobro-Resend-Of": original.message_id or "",
            },
        )
    elif target.channel == "push":
        subject = _json_title(data)
    return Outgoing(
        outbox_id=outbox_id,
        address=target.address,
        recipient_name="",
        subject=subject,
        text="",
        html="",
        message_id=message_id,
        meta=meta or {},
        raw=data,
        resend_of=original.delivery,
    )


def _json_title(data: bytes) -> str:
    try:
        return str(json.loads(data).get("title", ""))
    except (ValueError, AttributeError):
        return ""


def pay_link_signed_at(
    data: bytes, channel: str, config: CobroConfig, secret: str
) -> datetime | None:
    """When the pay link in a message as sent was signed (its age is checked against
    ``company.link_max_age_days`` when it is opened); None when it has none."""
    if channel == "email":
        part = BytesParser(policy=default_policy).parsebytes(data).get_body(("plain",))
        text = str(part.get_content()) if part is not None else ""
    else:
        text = data.decode("utf-8", "replace")
    base = re.escape(config.company.portal_url.rstrip("/"))
    found = re.search(base + r"/([A-Za-z0-9_.-]+)", text)
    if found is None:
        return None
    try:
        _, signed = URLSafeTimedSerializer(secret, salt="cobro.portal").loads(
            found.group(1), return_timestamp=True
        )
    except BadSignature:
        return None
    return signed if isinstance(signed, datetime) else None


@dataclass(frozen=True)
class ResendOutcome:
    """What became of a resend: its row's status and its deliveries."""

    claim: int
    resend: int  # the resend's outbox id
    status: str
    reason: str | None
    deliveries: list[dict[str, Any]]
    link_signed_at: datetime | None  # of the pay link in the messages resent, if any

    def link_expired(self, config: CobroConfig, now: datetime) -> datetime | None:
        """When the pay link in the messages resent stopped working, if it has (it was
        signed when the claim was first rendered); None while it works or there is none."""
        if self.link_signed_at is None:
            return None
        expires = self.link_signed_at + timedelta(days=config.company.link_max_age_days)
        return expires if expires <= now else None

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "resend": self.resend,
            "status": self.status,
            "reason": self.reason,
            "deliveries": self.deliveries,
        }


def resend_outcome(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    secret: str,
    claim: int,
    resend: int,
) -> ResendOutcome:
    """The outcome of the resend row ``resend`` of ``claim``, with its deliveries."""
    o, d = t.outbox.c, t.deliveries.c
    row = conn.execute(
        select(o.status, o.reason, o.payload).where(o.id == resend, o.company_id == company_id)
    ).one()
    repeats = {(x.channel, x.address.lower()): x.delivery for x in targets(row.payload)}
    done = [
        {
            "id": int(x.id),
            "channel": x.channel,
            "recipient": x.recipient,
            "status": x.status,
            "message_id": x.message_id,
            "error": x.error,
            "resend_of": repeats.get((x.channel, x.recipient.lower())),
        }
        for x in conn.execute(
            select(d.id, d.channel, d.recipient, d.status, d.message_id, d.error)
            .where(d.outbox_id == resend, d.company_id == company_id)
            .order_by(d.id)
        )
    ]
    kept = originals_by_id(conn, company_id, sorted(set(repeats.values())))
    signed = [
        at
        for x in kept.values()
        if (at := pay_link_signed_at(x.data, x.channel, config, secret)) is not None
    ]
    return ResendOutcome(claim, resend, row.status, row.reason, done, min(signed, default=None))
