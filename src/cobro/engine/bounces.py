"""Email bounces and complaints: read, matched to their message, recorded.

A bounce is read from its raw bytes: a delivery status notification (RFC 3464: per
recipient ``Action``, ``Status`` and ``Diagnostic-Code``), or one of the non-standard
reports real servers still send (qmail, old Exim, Yahoo...), whose failed addresses
``flufl.bounce`` finds; a feedback report (RFC 5965, ARF) is a complaint. A ``Status``
of class 5 is a hard bounce, class 4 (or ``Action: delayed``) a soft one; without a
status the SMTP reply code quoted, else what ``flufl.bounce`` says, decides.

Its message is found by the VERP return path it was sent back to (``bounce+REF@DOMAIN``,
``cobro.channels.email.verp_address``), else by the original Message-ID it quotes.
``record_bounce`` records it: the one place a bounce changes anything.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from typing import Any

from sqlalchemy import Connection, select

from cobro.channels.email import verp_ref
from cobro.domain.delivery import DeliveryState
from cobro.engine.deliveries import Followup, Learned, record_state
from cobro.engine.webhooks import message_bounced
from cobro.store import tables as t

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([45])(\d\d)(?:[ :-]|$)", re.MULTILINE)
_MESSAGE_ID = re.compile(r"<cobro\.[^<>\s@]+@[^<>\s]+>", re.IGNORECASE)
_VERP = re.compile(r"bounce\+([A-Za-z0-9]{8,40})@[A-Za-z0-9.-]+", re.IGNORECASE)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+'=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Failed:
    """One recipient a report is about."""

    address: str  # lower-case
    kind: str  # hard, soft or complaint
    status: str | None = None  # the enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None

    @property
    def detail(self) -> str:
        what = {HARD: "hard bounce", SOFT: "soft bounce", COMPLAINT: "complaint"}[self.kind]
        parts = [what]
        if self.status:
            parts.append(self.status)
        if self.diagnostic:
            parts.append(self.diagnostic)
        return " ".join(parts)[:1000]


@dataclass(frozen=True)
class Bounce:
    """What a report says, and what it names of the original message."""

    failed: tuple[Failed, ...]
    refs: tuple[str, ...] = ()  # VERP references it carries
    message_ids: tuple[str, ...] = ()  # original Message-IDs it quotes
    subject: str = ""

    @property
    def kind(self) -> str | None:
        """hard, soft or complaint for the whole report (its worst), None: not a bounce."""
        kinds = {f.kind for f in self.failed}
        for kind in (COMPLAINT, HARD, SOFT):
            if kind in kinds:
                return kind
        return None


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    if isinstance(payload, str):
        return payload
    return ""


def _whole_text(msg: Message) -> str:
    """Every text the report holds, headers of attached messages included."""
    out: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart() and ctype != "message/rfc822":
            continue
        if ctype == "message/rfc822" or ctype == "message/global":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                inner = inner[0]
            if isinstance(inner, Message):
                out.extend(f"{k}: {v}" for k, v in inner.items())
            continue
        if ctype.startswith("text/") or ctype.startswith("message/"):
            out.append(_text(part))
    return "\n".join(out)


def _dsn_fields(part: Message) -> list[dict[str, str]]:
    """The per-recipient field groups of a ``message/delivery-status`` part."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses it as header blocks
        groups = [p for p in payload if isinstance(p, Message)]
        for g in groups[1:] or groups:
            blocks.append({k.lower(): " ".join(str(v).split()) for k, v in g.items()})
        return [b for b in blocks if "action" in b or "status" in b or "final-recipient" in b]
    text = _text(part)
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip().lower()
                fields[last] = value.strip()
        if "action" in fields or "status" in fields or "final-recipient" in fields:
            blocks.append(fields)
    return blocks


def _address_of(field_value: str) -> str | None:
    """``rfc822; user@example.com`` -> ``user@example.com``."""
    value = field_value.partition(";")[2] if ";" in field_value else field_value
    found = _ADDRESS.search(value)
    return found.group(0).lower().strip(".") if found else None


def _kind_of_status(status: str | None, action: str | None) -> str | None:
    if action and action.lower() in ("delivered", "relayed", "expanded"):
        return None
    if status:
        m = _STATUS.search(status)
        if m:
            if m.group(1) == "2":
                return None
            return HARD if m.group(1) == "5" else SOFT
    if action and action.lower() == "delayed":
        return SOFT
    if action and action.lower() == "failed":
        return HARD
    return None


def _kind_of_text(text: str) -> tuple[str | None, str | None]:
    """(kind, status) from the codes a free-text report quotes."""
    m = _STATUS.search(text)
    if m and m.group(1) != "2":
        return (HARD if m.group(1) == "5" else SOFT), m.group(0)
    c = _SMTP_CODE.search(text)
    if c:
        return (HARD if c.group(1) == "5" else SOFT), None
    return None, None


def _original_headers(msg: Message) -> list[Message]:
    """The original message's headers, from a ``message/rfc822`` or
    ``text/rfc822-headers`` part."""
    found: list[Message] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                inner = inner[0]
            if isinstance(inner, Message):
                found.append(inner)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            found.append(email.message_from_string(_text(part), policy=compat32))
    return found


def _diagnostic(fields: dict[str, str]) -> str | None:
    value = fields.get("diagnostic-code")
    if not value:
        return None
    return value.partition(";")[2].strip() if ";" in value else value


def parse_bounce(data: bytes, envelope_to: Iterable[str] = ()) -> Bounce:
    """What the report ``data`` says; ``envelope_to`` are the addresses it was delivered
    to (a VERP return path among them names the message)."""

    msg = email.message_from_bytes(data, policy=compat32)
    whole = _whole_text(msg)
    refs: list[str] = []
    for address in [*envelope_to, *msg.get_all("To", []), *msg.get_all("Delivered-To", [])]:
        ref = verp_ref(str(address))
        if ref:
            refs.append(ref)
    for m in _VERP.finditer(whole):
        refs.append(m.group(1).lower())
    originals = _original_headers(msg)
    ids: list[str] = []
    for headers in originals:
        for name in ("Message-ID", "Message-Id", "X-Original-Message-ID"):
            value = headers.get(name)
            if value:
                ids.append(str(value).strip())
    ids.extend(m.group(0) for m in _MESSAGE_ID.finditer(whole))
    for name in ("X-Original-Message-ID", "In-Reply-To", "References"):
        ids.extend(m.group(0) for m in _MESSAGE_ID.finditer(str(msg.get(name, ""))))
    subject = str(msg.get("Subject", ""))

    failed: list[Failed] = []
    report_type = (msg.get_param("report-type") or "") if msg.is_multipart() else ""
    if msg.get_content_type() == "multipart/report" and str(report_type).lower() == (
        "feedback-report"
    ):
        failed.extend(_complaint(msg, originals))
    else:
        for part in msg.walk():
            if part.get_content_type() in DSN_TYPES:
                for fields in _dsn_fields(part):
                    found = _address_of(
                        fields.get("final-recipient") or fields.get("original-recipient") or ""
                    )
                    kind = _kind_of_status(fields.get("status"), fields.get("action"))
                    if found and kind:
                        status = _STATUS.search(fields.get("status", ""))
                        failed.append(
                            Failed(
                                found,
                                kind,
                                status.group(0) if status else None,
                                _diagnostic(fields),
                            )
                        )
        if not failed:
            failed.extend(_non_standard(msg, whole, ids))
    return Bounce(
        tuple(failed),
        tuple(dict.fromkeys(refs)),
        tuple(dict.fromkeys(i for i in ids if i)),
        subject,
    )


def _complaint(msg: Message, originals: list[Message]) -> list[Failed]:
    """The complaining recipient of an ARF report: ``Original-Rcpt-To`` or
    ``Removal-Recipient`` of its feedback part, else the original message's To."""
    out: list[Failed] = []
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        for fields in _dsn_like(part):
            feedback = fields.get("feedback-type", "abuse")
            for key in ("original-rcpt-to", "removal-recipient"):
                address = _address_of(fields.get(key, ""))
                if address:
                    out.append(Failed(address, COMPLAINT, None, f"feedback-type {feedback}"))
    if not out:
        for headers in originals:
            address = _address_of(str(headers.get("To", "")))
            if address:
                out.append(Failed(address, COMPLAINT, None, "feedback-type abuse"))
    return out


def _dsn_like(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for g in payload:
            if isinstance(g, Message):
                blocks.append({k.lower(): str(v) for k, v in g.items()})
        return blocks
    fields: dict[str, str] = {}
    for line in _text(part).splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            fields.setdefault(name.strip().lower(), value.strip())
    return [fields]


def _non_standard(msg: Message, whole: str, ids: list[str]) -> list[Failed]:
    """A report that is not a DSN: the failed addresses ``flufl.bounce`` finds (its
    detectors know qmail, Exim, Yahoo, Exchange and others), classified by the codes the
    text quotes, else by what ``flufl.bounce`` says."""
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    found: dict[str, str] = {}
    quoted = " ".join(ids).lower()
    for raw, default in [*((a, HARD) for a in permanent), *((a, SOFT) for a in temporary)]:
        match = _ADDRESS.search(raw.decode("utf-8", "replace"))
        address = match.group(0).lower() if match else ""
        # (a detector may take a quoted Message-ID or a return path for an address)
        if address and address not in quoted and not _VERP.fullmatch(address):
            found.setdefault(address, default)
    failed_header = msg.get_all("X-Failed-Recipients", [])
    for value in failed_header:
        for address in _ADDRESS.findall(str(value)):
            found.setdefault(address.lower(), HARD)
    out: list[Failed] = []
    for address, default in found.items():
        # the codes quoted next to the address, else anywhere in the report
        at = whole.lower().find(address)
        near = whole[at : at + 600] if at >= 0 else whole
        kind, status = _kind_of_text(near)
        if kind is None:
            kind, status = _kind_of_text(whole)
        if _DELAYED.search(whole):
            kind = SOFT
        out.append(Failed(address, kind or default, status, _first_line_with_code(near)))
    return out


_DELAYED = re.compile(
    r"(has not yet been delivered|delayed|will keep trying|still trying|not been able to "
    r"deliver .* yet|is a warning)",
    re.IGNORECASE,
)


def _first_line_with_code(text: str) -> str | None:
    for line in text.splitlines():
        if _STATUS.search(line) or _SMTP_CODE.search(line):
            return line.strip()[:300]
    return None


# --------------------------------------------------------------------------- record


@dataclass
class BounceOutcome:
    """What recording one report did."""

    kind: str | None
    matched: list[Learned] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # addresses of no known message

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "deliveries": [m.delivery_id for m in self.matched],
            "suppressed": any(m.suppressed for m in self.matched),
            "fallback": any(m.fallback for m in self.matched),
            "unmatched": self.unmatched,
        }


def match_delivery(conn: Connection, company_id: int, bounce: Bounce, address: str) -> int | None:
    """The email delivery ``bounce`` is about for ``address``: the one its VERP return
    path names, else the latest to ``address`` under a Message-ID it quotes."""
    d = t.deliveries.c
    for ref in bounce.refs:
        found = conn.execute(
            select(d.id, d.recipient).where(
                d.company_id == company_id, d.ref == ref, d.channel == "email"
            )
        ).one_or_none()
        if found is not None and (
            len(bounce.failed) == 1 or found.recipient.lower() == address.lower()
        ):
            return int(found.id)
    if bounce.message_ids:
        found_id = conn.execute(
            select(d.id)
            .where(
                d.company_id == company_id,
                d.channel == "email",
                d.message_id.in_(list(bounce.message_ids)),
                d.status == "sent",
            )
            .order_by(
                (d.recipient == address).desc(),
                d.id.desc(),
            )
            .limit(1)
        ).scalar()
        if found_id is not None:
            return int(found_id)
    return None


def take_bounce(
    engine: Any,
    company_id: int,
    data: bytes,
    envelope_to: Iterable[str],
    at: datetime,
    settings: Followup,
) -> BounceOutcome:
    """Read the report ``data`` and record it, in one transaction."""
    bounce = parse_bounce(data, envelope_to)
    with engine.begin() as conn:
        return record_bounce(conn, company_id, bounce, at, settings)


def record_bounce(
    conn: Connection,
    company_id: int,
    bounce: Bounce,
    at: datetime,
    settings: Followup,
) -> BounceOutcome:
    """Record ``bounce``: each failed recipient's delivery moves to a permanent (hard) or
    temporary (soft) failure, a complaint suppresses the address; the address is
    suppressed or its failures counted (``record_state``)."""
    outcome = BounceOutcome(bounce.kind)
    for failed in bounce.failed:
        delivery = match_delivery(conn, company_id, bounce, failed.address)
        if delivery is None:
            outcome.unmatched.append(failed.address)
            continue
        if failed.kind == COMPLAINT:
            learned = record_state(
                conn, company_id, delivery, DeliveryState.DELIVERED, source="complaint",
                detail=failed.detail, at=at, settings=settings, suppress_as="complaint",
            )  # fmt: skip
            suppress_address(conn, company_id, "email", failed.address, "complaint",
                             failed.detail, at, delivery)  # fmt: skip
            learned = Learned(learned.delivery_id, learned.state, learned.moved, True, False)
        else:
            state = (
                DeliveryState.PERMANENT_FAILURE
                if failed.kind == HARD
                else DeliveryState.TEMPORARY_FAILURE
            )
            why = "hard_bounce" if failed.kind == HARD else None
            learned = record_state(
                conn, company_id, delivery, state, source="bounce", detail=failed.detail,
                at=at, settings=settings, suppress_as=why,
            )  # fmt: skip
        outcome.matched.append(learned)
        # Endpoints subscribed to message.bounced learn it in this transaction (once per
        # delivery and kind).
        message_bounced(conn, company_id, delivery, failed.detail or failed.kind, at, failed.kind)
    return outcome


def suppress_address(
    conn: Connection,
    company_id: int,
    channel: str,
    address: str,
    reason: str,
    detail: str | None,
    at: datetime,
    delivery_id: int | None = None,
) -> bool:
    """Suppress ``address`` on ``channel`` (if it is not already); True when it was not."""
    from cobro.engine.deliveries import normalized
    from cobro.store.db import insert_ignoring

    s = t.suppressions.c
    address = normalized(channel, address)
    conn.execute(
        insert_ignoring(conn, t.suppressions)
        .values(company_id=company_id, channel=channel, address=address, updated_at=at)
        .on_conflict_do_nothing()
    )
    done = conn.execute(
        t.suppressions.update()
        .where(
            s.company_id == company_id,
            s.channel == channel,
            s.address == address,
            s.suppressed_at.is_(None),
        )
        .values(
            suppressed_at=at,
            reason=reason,
            detail=(detail or None) and detail[:1000],
            delivery_id=delivery_id,
            updated_at=at,
        )
    ).rowcount
    return bool(done)
