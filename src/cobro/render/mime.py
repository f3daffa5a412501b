"""Real MIME email: HTML with a plain-text alternative; header data cannot inject headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from email_validator import EmailNotValidError, validate_email

from cobro.errors import PermanentFailure


def _one_line(value: str) -> str:
    """Header values never contain line breaks, whatever the data says."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def checked_address(addr: str) -> str:
    """A syntactically valid single address, or ``PermanentFailure``."""
    if any(c in addr for c in "\r\n,;<>"):
        raise PermanentFailure(f"not a single email address: {addr!r}")
    try:
        return validate_email(addr, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PermanentFailure(f"not a valid email address {addr!r}: {exc}") from exc


@dataclass(frozen=True)
class Envelope:
    sender_email: str
    sender_name: str
    to_email: str
    to_name: str
    reply_to: str | None
    message_id: str
    date: datetime


def build_email(env: Envelope, subject: str, text: str, html: str) -> EmailMessage:
    """An RFC 5322 message ready for SMTP."""
    msg = EmailMessage(policy=SMTP)
    local, _, domain = checked_address(env.sender_email).rpartition("@")
    msg["From"] = Address(_one_line(env.sender_name), local, domain)
    to_local, _, to_domain = checked_address(env.to_email).rpartition("@")
    msg["To"] = Address(_one_line(env.to_name), to_local, to_domain)
    if env.reply_to:
        r_local, _, r_domain = checked_address(env.reply_to).rpartition("@")
        msg["Reply-To"] = Address("", r_local, r_domain)
    msg["Subject"] = _one_line(subject)
    msg["Date"] = format_datetime(env.date)
    msg["Message-ID"] = env.message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
