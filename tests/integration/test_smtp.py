"""Email over a real SMTP server: the message itself, refusals, retries, and the sender."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from cobro.engine.runs import dispatch_due, email_channel, run_day
from cobro.errors import SenderNotConfigured
from cobro.evidence.history import claim_history
from cobro.workspace import Workspace, utcnow

from .conftest import STARTER_CONFIG, SmtpServer, top_level_block
from .support import (
    business,
    captured,
    d,
    deliveries,
    html,
    invoice,
    load,
    local,
    outbox,
    plain,
)

DAY = d("2025-03-03")  # phase 00 for invoices due 2025-03-10


def one_claim(ws: Workspace, name: str = "Acme Industrial") -> None:
    business(ws, "C1", "ap@acme.example", name)
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")


def test_real_smtp_message_has_html_and_text_alternatives_message_id_date_and_company_from(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    one_claim(smtp_ws)

    report = run_day(smtp_ws, DAY)

    assert report.sent == 1
    (got,) = smtp_server.received
    assert got.mail_from == "cobros@demo.example"
    assert got.rcpt_tos == ("ap@acme.example",)
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "F-1" in plain(msg) and "<td>F-1</td>" in html(msg)
    assert "https://pagos.demo.example/portal/" in plain(msg)
    (sender,) = msg["From"].addresses
    assert sender.display_name == "Cobros Distribuciones Demo"
    assert sender.addr_spec == "cobros@demo.example"
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Acme Industrial", "ap@acme.example")
    assert msg["Reply-To"].addresses[0].addr_spec == "administracion@demo.example"
    assert msg["Date"].datetime == local(smtp_ws, DAY, "09:00")
    message_id = str(msg["Message-ID"])
    assert message_id.startswith("<") and message_id.endswith("@demo.example>")
    (delivery,) = deliveries(smtp_ws)
    assert delivery.message_id == message_id
    assert delivery.status == "sent" and delivery.recipient == "ap@acme.example"
    assert msg["Subject"]


def test_customer_data_cannot_inject_email_headers(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    evil = "Acme\r\nBcc: evil@example.com"
    one_claim(smtp_ws, name=evil)
    load(
        smtp_ws,
        "contacts",
        {
            "external_id": "K-1",
            "customer": "C1",
            "name": "Billing\nBcc: evil2@example.com\nX-Injected: yes",
            "email": "billing@acme.example",
            "roles": "billing",
        },
    )

    run_day(smtp_ws, DAY)

    assert sorted(m.rcpt_tos for m in smtp_server.received) == [
        ("ap@acme.example",),
        ("billing@acme.example",),
    ]
    for got in smtp_server.received:
        msg = got.message
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        headers = got.data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\nbcc:" not in headers and b"\nx-injected:" not in headers
        (to,) = msg["To"].addresses
        assert to.addr_spec == got.rcpt_tos[0]
        assert "evil" not in " ".join(got.rcpt_tos)


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_temporary_smtp_failure_is_retried_later_with_the_same_message_id(
    smtp_ws: Workspace, smtp_server: SmtpServer, stage: str
) -> None:
    one_claim(smtp_ws)
    smtp_server.handler.refuse("ap@acme.example", "451 4.3.0 try later", at=stage, times=1)
    first_at = local(smtp_ws, DAY, "09:00")

    report = run_day(smtp_ws, DAY)

    assert (report.sent, report.failed, report.retrying) == (0, 0, 1)
    assert smtp_server.received == []
    (row,) = outbox(smtp_ws)
    assert row.status == "planned" and row.attempts == 1
    assert row.next_attempt_at > first_at
    (failed,) = deliveries(smtp_ws)
    assert failed.status == "failed" and "451" in (failed.error or "")

    # Not before its next attempt is due...
    assert dispatch_due(smtp_ws, as_of=row.next_attempt_at - timedelta(seconds=1)).sent == 0
    assert smtp_server.received == []
    # ...and then it goes out, once.
    later = dispatch_due(smtp_ws, as_of=row.next_attempt_at)
    assert later.sent == 1
    (got,) = smtp_server.received
    assert got.message["Message-ID"] == failed.message_id
    if stage == "DATA":
        (refused,) = smtp_server.handler.refused
        assert refused.message["Message-ID"] == got.message["Message-ID"]
    (row,) = outbox(smtp_ws)
    assert row.status == "sent" and row.attempts == 2
    assert [(x.attempt, x.status, x.message_id) for x in deliveries(smtp_ws)] == [
        (1, "failed", failed.message_id),
        (2, "sent", failed.message_id),
    ]
    assert dispatch_due(smtp_ws, as_of=row.next_attempt_at + timedelta(days=1)).sent == 0
    assert len(smtp_server.received) == 1


def test_permanent_smtp_failure_marks_the_claim_failed(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    one_claim(smtp_ws)
    smtp_server.handler.refuse("ap@acme.example", "550 5.1.1 no such user")

    report = run_day(smtp_ws, DAY)

    assert (report.sent, report.failed, report.retrying) == (0, 1, 0)
    assert any("550" in e for e in report.errors)
    (row,) = outbox(smtp_ws)
    assert row.status == "failed" and "550" in (row.reason or "")
    (failed,) = deliveries(smtp_ws)
    assert failed.status == "failed" and "550" in (failed.error or "")
    with smtp_ws.engine.connect() as conn:
        (claim,) = claim_history(conn, smtp_ws.config, smtp_ws.company_id, "C1")
    assert claim.status == "failed"
    assert [x.status for x in claim.deliveries] == ["failed"]
    # A failed claim is not retried.
    assert dispatch_due(smtp_ws, as_of=local(smtp_ws, DAY + timedelta(days=1), "09:00")).sent == 0
    assert smtp_server.received == []
    assert len(deliveries(smtp_ws)) == 1


def test_no_valid_sender_address_sends_nothing_and_says_why(
    make_ws: Callable[..., Workspace], reopen: Callable[[Workspace], Workspace]
) -> None:
    starter = STARTER_CONFIG.read_text(encoding="utf-8")
    company = top_level_block(starter, "company")
    assert company is not None
    lines = company.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("  sender:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    sender_block = "".join(lines[start:end])
    ws = make_ws(replace={sender_block: ""})
    assert ws.config.company.sender is None
    one_claim(ws)

    with pytest.raises(SenderNotConfigured) as raised:
        run_day(ws, DAY)

    assert "company.sender" in str(raised.value)
    assert "cobro.yaml" in str(raised.value)
    (row,) = outbox(ws)
    assert row.status == "planned" and row.attempts == 0
    assert captured(ws) == [] and deliveries(ws) == []

    config = ws.root / "cobro.yaml"
    fixed_text = config.read_text(encoding="utf-8").replace(
        "  reply_to:", sender_block + "  reply_to:", 1
    )
    config.write_text(fixed_text, encoding="utf-8")
    fixed = reopen(ws)
    assert fixed.config.company.sender is not None

    report = run_day(fixed, DAY)

    assert report.sent == 1
    (row,) = outbox(fixed)
    assert row.status == "sent"
    (mail,) = captured(fixed)
    assert mail["From"].addresses[0].addr_spec == "cobros@demo.example"


def with_sales_rep(ws: Workspace) -> None:
    business(ws, "C1", "ap@acme.example", "Acme Industrial")
    load(
        ws,
        "contacts",
        {
            "external_id": "K-1",
            "customer": "C1",
            "name": "Rita Rep",
            "email": "rita@demo.example",
            "roles": "sales_rep",
        },
    )
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")


AFTER = d("2025-03-17")  # phase 01 (7 days after due): to the debtor and the sales rep


def test_retry_sends_only_to_the_recipients_not_yet_reached(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    with_sales_rep(smtp_ws)
    smtp_server.handler.refuse("rita@demo.example", "451 4.7.1 greylisted", times=1)

    first = run_day(smtp_ws, AFTER)

    assert (first.sent, first.retrying, first.deliveries) == (0, 1, 1)
    assert [m.rcpt_tos for m in smtp_server.received] == [("ap@acme.example",)]
    (row,) = outbox(smtp_ws)
    assert row.status == "planned"

    again = dispatch_due(smtp_ws, as_of=row.next_attempt_at)

    assert (again.sent, again.deliveries) == (1, 1)
    assert sorted(m.rcpt_tos for m in smtp_server.received) == [
        ("ap@acme.example",),
        ("rita@demo.example",),
    ]
    # Each delivery is recorded as soon as the server answers: in the order they finished.
    assert sorted((x.attempt, x.recipient, x.status) for x in deliveries(smtp_ws)) == [
        (1, "ap@acme.example", "sent"),
        (1, "rita@demo.example", "failed"),
        (2, "rita@demo.example", "sent"),
    ]
    assert outbox(smtp_ws)[0].status == "sent"


# Temporary failures retried for two hours (instead of three days).
SHORT_RETRY = {"default_policy: consumer": "dispatch:\n  retry_hours: 2\ndefault_policy: consumer"}


@pytest.fixture
def short_retry_ws(make_ws: Callable[..., Workspace], smtp_server: SmtpServer) -> Workspace:
    return make_ws(replace={**smtp_server.replace, **SHORT_RETRY})


def retry_until_settled(ws: Workspace) -> list[str]:
    """Dispatch at each next attempt until the row is no longer planned; the statuses seen."""
    seen = []
    for _ in range(10):
        (row,) = outbox(ws)
        seen.append(row.status)
        if row.status != "planned":
            return seen
        dispatch_due(ws, as_of=row.next_attempt_at)
    raise AssertionError(f"still retrying after 10 dispatches: {seen}")


def test_temporary_failures_are_retried_with_growing_waits_for_the_retry_time_then_fail(
    short_retry_ws: Workspace, smtp_server: SmtpServer
) -> None:
    one_claim(short_retry_ws, "Acme Industrial")
    smtp_server.handler.refuse("ap@acme.example", "451 4.3.0 try later")  # every time
    run_day(short_retry_ws, DAY)

    retry_until_settled(short_retry_ws)

    (row,) = outbox(short_retry_ws)
    assert row.status == "failed" and "451" in (row.reason or "")
    assert "still failing after 2 h" in (row.reason or "")
    attempts = deliveries(short_retry_ws)
    assert [x.attempt for x in attempts] == [1, 2, 3, 4, 5, 6, 7]
    assert {x.status for x in attempts} == {"failed"}
    waits = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    # As long as it has failed so far, at least 5 minutes, at most an hour.
    assert waits == [timedelta(minutes=m) for m in (5, 5, 10, 20, 40, 60)]
    assert smtp_server.received == []


def test_claim_that_reached_the_debtor_is_sent_even_if_an_internal_recipient_kept_failing(
    short_retry_ws: Workspace, smtp_server: SmtpServer
) -> None:
    with_sales_rep(short_retry_ws)
    smtp_server.handler.refuse("rita@demo.example", "451 4.3.0 mailbox busy")  # every time
    run_day(short_retry_ws, AFTER)

    retry_until_settled(short_retry_ws)

    assert [m.rcpt_tos for m in smtp_server.received] == [("ap@acme.example",)]
    (row,) = outbox(short_retry_ws)
    # The same situation with a permanent refusal of the rep is recorded as sent.
    assert row.status == "sent"


class WorkerKilled(BaseException):
    """Stands for the process being killed: like SystemExit, no handler catches it."""


class KilledAfterDelivering:
    """The real email channel, but the worker dies right after the server took the message."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.name = real.name
        self.cost_of = real.cost_of

    async def start(self) -> None:
        await self.real.start()

    async def stop(self) -> None:
        await self.real.stop()

    async def send(self, message: Any) -> str:
        await self.real.send(message)
        raise WorkerKilled("worker killed")


def test_dispatch_killed_while_sending_is_resumed_after_its_lease_with_the_same_message_id(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    one_claim(smtp_ws)
    at = local(smtp_ws, DAY, "09:00")
    run_day(smtp_ws, DAY, as_of=local(smtp_ws, DAY, "07:00"))

    with pytest.raises(WorkerKilled, match="worker killed"):
        dispatch_due(
            smtp_ws, as_of=at, channels={"email": KilledAfterDelivering(email_channel(smtp_ws, at))}
        )

    (row,) = outbox(smtp_ws)
    assert row.status == "sending" and row.lease_until > utcnow()
    assert deliveries(smtp_ws) == []
    # Another dispatch while the lease runs (on the real clock) leaves it alone, whatever
    # dated instant it acts on...
    assert dispatch_due(smtp_ws, as_of=at + timedelta(days=5)).sent == 0
    # ...and after it, sends it again under the same Message-ID, so the copy can be told apart.
    after_lease = row.lease_until + timedelta(seconds=1)
    assert dispatch_due(smtp_ws, as_of=at, clock=lambda: after_lease).sent == 1
    first, second = smtp_server.received
    assert first.message["Message-ID"] == second.message["Message-ID"]
    (row,) = outbox(smtp_ws)
    assert row.status == "sent" and row.attempts == 2
    assert [(x.attempt, x.status) for x in deliveries(smtp_ws)] == [(2, "sent")]


class BrokenForOneAddress:
    """The real email channel, except that one address makes it raise an unexpected error."""

    def __init__(self, real: Any, address: str) -> None:
        self.real, self.address = real, address
        self.name, self.cost_of = real.name, real.cost_of

    async def start(self) -> None:
        await self.real.start()

    async def stop(self) -> None:
        await self.real.stop()

    async def send(self, message: Any) -> str:
        if message.address == self.address:
            raise UnicodeEncodeError("ascii", "é", 0, 1, "unexpected")
        return str(await self.real.send(message))


def test_an_unexpected_error_fails_one_message_not_the_batch(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    business(smtp_ws, "C1", "ok1@acme.example")
    business(smtp_ws, "C2", "bad@acme.example")
    business(smtp_ws, "C3", "ok3@acme.example")
    for c in ("C1", "C2", "C3"):
        invoice(smtp_ws, f"F-{c}", c, d("2025-03-10"), "10.00")
    at = local(smtp_ws, d("2025-03-03"), "09:00")
    run_day(smtp_ws, d("2025-03-03"), as_of=local(smtp_ws, d("2025-03-03"), "07:00"))
    channel = BrokenForOneAddress(email_channel(smtp_ws, at), "bad@acme.example")
    report = dispatch_due(smtp_ws, as_of=at, channels={"email": channel})
    assert (report.sent, report.failed) == (2, 1)
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == [
        "ok1@acme.example",
        "ok3@acme.example",
    ]


def test_a_kept_open_connection_closed_by_the_server_is_reopened_at_once() -> None:
    import asyncio
    import socket

    from aiosmtpd.controller import Controller

    from cobro.channels.email import SmtpSettings, SmtpTransport

    class Sink:
        def __init__(self) -> None:
            self.count = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.count += 1
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sink = Sink()
    data = b"Subject: t\r\n\r\nhello\r\n"

    async def scenario() -> None:
        transport = SmtpTransport(SmtpSettings("127.0.0.1", port, connections=1))
        await transport.start()
        first = Controller(sink, hostname="127.0.0.1", port=port)
        first.start()
        await transport.deliver("a@example.com", "b@example.com", data, "m1")
        first.stop()  # the server goes away with the idle connection ...
        second = Controller(sink, hostname="127.0.0.1", port=port)
        second.start()  # ... and is back: the next message must not wait for a retry
        try:
            await transport.deliver("a@example.com", "b@example.com", data, "m2")
        finally:
            await transport.stop()
            second.stop()

    asyncio.run(scenario())
    assert sink.count == 2


def test_staff_copies_of_the_last_phases_tell_staff_what_the_debtor_was_told_and_what_to_do(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    with_sales_rep(smtp_ws)
    load(
        smtp_ws,
        "contacts",
        {
            "external_id": "K-2",
            "customer": "C1",
            "name": "Marta Manager",
            "email": "marta@demo.example",
            "roles": "account_manager",
        },
    )
    # Every phase of the starter b2b policy on its day: 00, 01, 02, 03, 04 and 05.
    for day in ("03-03", "03-17", "03-25", "04-09", "04-24", "05-09"):
        run_day(smtp_ws, d(f"2025-{day}"))

    by_to: dict[str, list[Any]] = {}
    for got in smtp_server.received:
        by_to.setdefault(got.rcpt_tos[0], []).append(got.message)
    debtor_05, rep_05, manager_05 = (
        by_to[a][-1] for a in ("ap@acme.example", "rita@demo.example", "marta@demo.example")
    )
    manager_04 = by_to["marta@demo.example"][-2]
    assert "Su cuenta ha sido bloqueada" in plain(debtor_05)
    assert debtor_05["Subject"] == "ÚLTIMO AVISO – Distribuciones Demo S.L.: cuenta bloqueada"
    for copy in (rep_05, manager_05):
        assert copy["Subject"] == (
            "Copia interna · Acme Industrial: ÚLTIMO AVISO – Distribuciones Demo S.L.: "
            "cuenta bloqueada"
        )
        text = plain(copy)
        assert (
            "Copia interna (no enviada al cliente) sobre el cliente Acme Industrial (C1)." in text
        )
        # The phase by its Spanish name (cobro.yaml's `names`), as the copy is in Spanish.
        assert "Enviado al cliente el 9 de mayo de 2025 (Último aviso, cuenta bloqueada" in text
        assert "Se ha enviado al cliente el último aviso: su cuenta está bloqueada" in text
        assert "Qué hacer: no acepte ni envíe nuevos pedidos" in text
        assert "Su cuenta ha sido bloqueada" not in text and "Estimado/a" not in text
        assert "Qué hacer: no acepte" in html(copy)
        assert "https://crm.demo.example/accounts/C1" in text
        assert "pagos.demo.example" not in text + html(copy)  # no pay link for staff
    text_04 = plain(manager_04)
    assert "declarada a nuestra aseguradora de crédito" in text_04 and "Qué hacer:" in text_04
    assert "puede consultar el detalle" not in text_04.lower()
