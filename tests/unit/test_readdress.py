"""A message as sent, readdressed for a resend: only Date, Message-ID, To and the given
headers change; the rest, folded fields and body included, stays byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cobro.errors import PermanentFailure
from cobro.render.mime import Envelope, FilePart, build_email, readdress

AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 4, 1, 12, 30, tzinfo=UTC)


def message() -> bytes:
    env = Envelope(
        "cobros@demo.example", "Cobros", "ap@acme.example", "Acme", None, "<m.1@demo.example>", AT
    )
    subject = "Recordatorio: factura pendiente de pago " * 5  # long and not ASCII: folded
    return build_email(
        env,
        subject + "ñ",
        "Texto",
        "<p>HTML</p>",
        [FilePart("estado.pdf", "application/pdf", b"%PDF-1.7 ...")],
        {"X-Cobro-Claim": "demo/1/b2b/01"},
    )


def test_readdress_changes_only_the_named_headers_and_keeps_the_body() -> None:
    data = message()
    again = readdress(
        data,
        date=LATER,
        message_id="<m.2@demo.example>",
        to="tesoreria@acme.example",
        headers={"X-Cobro-Claim": "demo/7/resend", "X-Cobro-Resend-Of": "<m.1@demo.example>"},
    )
    head, _, body = again.partition(b"\r\n\r\n")
    old_head, _, old_body = data.partition(b"\r\n\r\n")
    assert body == old_body
    lines = head.split(b"\r\n")
    assert b"To: tesoreria@acme.example" in lines
    assert b"Message-ID: <m.2@demo.example>" in lines
    assert b"Date: Wed, 01 Apr 2026 12:30:00 +0000" in lines
    assert b"X-Cobro-Claim: demo/7/resend" in lines
    assert lines[-1] == b"X-Cobro-Resend-Of: <m.1@demo.example>"  # absent before: added
    kept = [
        x
        for x in old_head.split(b"\r\n")
        if not x.startswith((b"To:", b"Date:", b"Message-ID:", b"X-Cobro-Claim:"))
    ]
    assert [x for x in lines if x in kept] == kept  # the Subject's folded lines included
    assert sum(x.startswith(b"Subject:") for x in lines) == 1


def test_readdress_without_a_new_address_keeps_the_original_to() -> None:
    data = message()
    again = readdress(data, date=LATER, message_id="<m.3@demo.example>")
    assert b"To: Acme <ap@acme.example>" in again.split(b"\r\n\r\n")[0].split(b"\r\n")


@pytest.mark.parametrize("to", ["a@b.example\r\nBcc: x@evil.example", "a@b.example, c@d.example"])
def test_readdress_refuses_anything_but_one_address(to: str) -> None:
    with pytest.raises(PermanentFailure):
        readdress(message(), date=LATER, message_id="<m.4@demo.example>", to=to)


def test_readdress_keeps_header_values_on_one_line() -> None:
    again = readdress(
        message(),
        date=LATER,
        message_id="<m.5@demo.example>\r\nBcc: x@evil.example",
        headers={"X-Cobro-Resend-Of": "a\r\nBcc: y@evil.example"},
    )
    head = again.split(b"\r\n\r\n")[0]
    assert not any(x.startswith(b"Bcc:") for x in head.split(b"\r\n"))
