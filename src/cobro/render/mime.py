"""Real MIME email, written directly: HTML with a plain-text alternative, attachments.

Messages are built as bytes without ``email.message.EmailMessage`` (which
re-parses every header and costs about 1 ms a message): header values are
single lines by construction (line breaks in data become spaces), names and
subjects outside ASCII are RFC 2047 encoded, bodies are quoted-printable and
attachments base64. The boundaries start with ``=_``, which quoted-printable
and base64 text can never contain.
"""

from __future__ import annotations

import base64
import quopri
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr
from functools import lru_cache
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from cobro.errors import PermanentFailure


def _one_line(value: str) -> str:
    """Header values never contain line breaks, whatever the data says."""
    value = "".join(ch if ch >= " " or ch == "\t" else " " for ch in value)  # no controls
    return " ".join(value.split())


@lru_cache(maxsize=4096)
def checked_address(addr: str) -> str:
    """A syntactically valid single address, or ``PermanentFailure``."""
    if any(c in addr for c in '\r\n,;<>"()'):
        raise PermanentFailure(f"not a single email address: {addr!r}")
    try:
        return str(
            validate_email(addr, check_deliverability=False, allow_smtputf8=False).ascii_email
        )
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


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InlinePart:
    """An image the HTML shows in place, as ``<img src="cid:CONTENT_ID">``."""

    content_id: str
    filename: str
    content_type: str
    data: bytes


def _address(name: str, addr: str) -> str:
    return formataddr((_one_line(name), checked_address(addr)), charset="utf-8")


def _header_text(value: str, name: str = "Subject") -> str:
    value = _one_line(value)
    if value.isascii() and len(value) < 900:
        return value
    return _encoded_words(value.encode("utf-8"), first=len(name) + 2)


def _encoded_words(data: bytes, first: int) -> str:
    """RFC 2047 base64 encoded-words, one per folded line of at most 78 characters (the
    first line also holds the field's name, ``first`` characters); a character's UTF-8
    bytes are never split between two words."""
    words = []
    start = 0
    room = max(78 - first - 12, 8) // 4 * 3  # bytes whose base64 fits the first line
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and end > start + 1 and data[end] & 0xC0 == 0x80:
            end -= 1  # a continuation byte starts the next word with its character
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
        room = 45  # a continuation line: one space and 72 characters
    return "\r\n ".join(words)


def _qp(text: str) -> bytes:
    body = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    return body.replace(b"\n", b"\r\n")


def _b64(data: bytes) -> bytes:
    raw = base64.b64encode(data)
    return b"\r\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))


def _filename(name: str) -> str:
    name = _one_line(name).replace('"', "'").replace("\\", "_")
    if name.isascii():
        return f'filename="{name}"'
    return "filename*=utf-8''" + quote(name, safe="")  # RFC 2231


def _content_id(value: str) -> str:
    """A Content-ID is a bare ``id@domain``: anything else is left out."""
    return "".join(ch for ch in value if ch.isascii() and (ch.isalnum() or ch in ".-_@"))


def build_email(
    env: Envelope,
    subject: str,
    text: str,
    html: str,
    attachments: Sequence[FilePart] = (),
    headers: dict[str, str] | None = None,
    inline: Sequence[InlinePart] = (),
) -> bytes:
    """An RFC 5322 message ready for SMTP, as bytes with CRLF line ends.

    With ``inline`` images the text and HTML alternatives go in a ``multipart/related``
    part together with the images (RFC 2387), inside ``multipart/mixed`` when there are
    attachments too.
    """
    alt = "=_alt_" + secrets.token_hex(12)
    lines = [
        f"From: {_address(env.sender_name, env.sender_email)}",
        f"To: {_address(env.to_name, env.to_email)}",
    ]
    if env.reply_to:
        lines.append(f"Reply-To: {checked_address(env.reply_to)}")
    lines += [
        f"Subject: {_header_text(subject)}",
        f"Date: {format_datetime(env.date)}",
        f"Message-ID: {_one_line(env.message_id)}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
    ]
    for name, value in (headers or {}).items():
        if name.replace("-", "").isalnum() and name.isascii():
            lines.append(f"{name}: {_header_text(value, name)}")
    alternative = b"\r\n".join(
        [
            f"--{alt}".encode(),
            b'Content-Type: text/plain; charset="utf-8"',
            b"Content-Transfer-Encoding: quoted-printable",
            b"",
            _qp(text),
            f"--{alt}".encode(),
            b'Content-Type: text/html; charset="utf-8"',
            b"Content-Transfer-Encoding: quoted-printable",
            b"",
            _qp(html),
            f"--{alt}--".encode(),
            b"",
        ]
    )
    body_type = f'multipart/alternative; boundary="{alt}"'
    body = alternative
    if inline:
        rel = "=_rel_" + secrets.token_hex(12)
        related = [f"--{rel}".encode(), f"Content-Type: {body_type}".encode(), b"", alternative]
        for image in inline:
            related += [
                f"--{rel}".encode(),
                f"Content-Type: {_one_line(image.content_type)}".encode(),
                b"Content-Transfer-Encoding: base64",
                f"Content-ID: <{_content_id(image.content_id)}>".encode(),
                f"Content-Disposition: inline; {_filename(image.filename)}".encode(),
                b"",
                _b64(image.data),
            ]
        related += [f"--{rel}--".encode(), b""]
        body_type = f'multipart/related; type="multipart/alternative"; boundary="{rel}"'
        body = b"\r\n".join(related)
    if not attachments:
        lines.append(f"Content-Type: {body_type}")
        return "\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + body
    mixed = "=_mix_" + secrets.token_hex(12)
    lines.append(f'Content-Type: multipart/mixed; boundary="{mixed}"')
    parts = [
        f"--{mixed}".encode(),
        f"Content-Type: {body_type}".encode(),
        b"",
        body,
    ]
    for a in attachments:
        parts += [
            f"--{mixed}".encode(),
            f"Content-Type: {a.content_type}".encode(),
            b"Content-Transfer-Encoding: base64",
            f"Content-Disposition: attachment; {_filename(a.filename)}".encode(),
            b"",
            _b64(a.data),
        ]
    parts += [f"--{mixed}--".encode(), b""]
    return "\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + b"\r\n".join(parts)


def readdress(
    data: bytes,
    *,
    date: datetime,
    message_id: str,
    to: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """``data`` (a message as sent) to be sent again: a new ``Date`` and ``Message-ID``, a
    new ``To`` (the bare address ``to``) when given, the fields of ``headers`` set (added
    when absent); every other header and the whole body byte for byte as they were.

    The message must have a header block ending in an empty line (CRLF CRLF)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("not a message: no blank line after its header")
    new = {"Date": format_datetime(date), "Message-ID": _one_line(message_id)}
    if to is not None:
        new["To"] = checked_address(to)
    for name, value in (headers or {}).items():
        if name.replace("-", "").isalnum() and name.isascii():
            new[name] = _header_text(value, name)
    wanted = {name.lower(): name for name in new}
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)  # a folded field's continuation
        else:
            fields.append([line])
    out: list[bytes] = []
    done: set[str] = set()
    for field_lines in fields:
        key = field_lines[0].partition(b":")[0].strip().decode("ascii", "replace").lower()
        if key not in wanted:
            out.extend(field_lines)
        elif key not in done:
            name = wanted[key]
            out.append(f"{name}: {new[name]}".encode("ascii"))
            done.add(key)
    for key, name in wanted.items():
        if key not in done:  # absent from the message: added at the end of its header
            out.append(f"{name}: {new[name]}".encode("ascii"))
    return b"\r\n".join(out) + sep + body
