"""Email bounces: every report in tests/data/bounces is classified and matched to the message
it is about; a real SMTP server accepts Cobro's mail, then sends real-format reports back to
the bounce endpoint (``cobro bounces serve``'s handler, on aiosmtpd), and what they say
steers the next message to the next channel."""

from __future__ import annotations

import asyncio
import mailbox
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import select

from cobro.engine.bounces import COMPLAINT, HARD, SOFT, parse_bounce, record_bounce
from cobro.engine.deliveries import Followup
from cobro.engine.runs import run_day
from cobro.evidence.verify import verify_evidence
from cobro.intake.bounces import BounceHandler, read_maildir
from cobro.store import tables as t
from cobro.workspace import Workspace
from fakes.twilio import FakeTwilio
from local_smtp import LocalSMTP, bound_socket

from .portal.helpers import Clock
from .support import invoice, load, local
from .test_channels import EMAIL_COST, channels_yaml

FIXTURES = Path(__file__).parent.parent / "data" / "bounces"
BOUNCE_DOMAIN = "bounces.demo.example"
SENDER = "cobros@demo.example"
PHONE = "+34612345678"
DAY = date(2025, 3, 3)  # phase "before" of the consumer policy, invoices due 2025-03-06

# Each report: what it is (hard, soft or complaint) and the status it quotes.
EXPECTED: dict[str, tuple[str, str | None]] = {
    "postfix-user-unknown.eml": (HARD, "5.1.1"),
    "postfix-host-not-found.eml": (HARD, "5.4.4"),
    "postfix-delayed-mailbox-full.eml": (SOFT, "4.2.2"),
    "postfix-local-unknown-user.eml": (HARD, "5.0.0"),
    "exim-user-unknown.eml": (HARD, "5.1.1"),
    "exim-retry-timeout.eml": (HARD, None),
    "exim-delay-warning.eml": (SOFT, "4.0.0"),
    "exchange-recipient-not-found.eml": (HARD, "5.1.10"),
    "exchange-mailbox-full.eml": (HARD, "5.2.2"),
    "exchange-message-expired.eml": (SOFT, "4.4.7"),
    "office365-access-denied.eml": (HARD, "5.4.1"),
    "outlook-mailbox-unavailable.eml": (HARD, "5.5.0"),
    "gmail-no-such-user.eml": (HARD, "5.1.1"),
    "gmail-over-quota-delay.eml": (SOFT, "4.2.2"),
    "gmail-account-disabled.eml": (HARD, "5.2.1"),
    "ses-permanent.eml": (HARD, "5.1.1"),
    "ses-complaint.eml": (COMPLAINT, None),
    "outlook-jmrp-complaint.eml": (COMPLAINT, None),
    "qmail-no-mailbox.eml": (HARD, "5.1.1"),
    "qmail-remote-refused.eml": (HARD, "5.7.1"),
    "sendmail-user-unknown.eml": (HARD, "5.1.1"),
    "sendmail-warning-4h.eml": (SOFT, "4.4.7"),
    "yahoo-no-account.eml": (HARD, None),
    "mdaemon-greylisted-warning.eml": (SOFT, "4.7.1"),
}


def test_every_fixture_is_listed() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


def report(name: str, delivery: Any) -> tuple[bytes, list[str]]:
    """Fixture ``name`` about ``delivery``, and the envelope recipients it came to (its
    VERP return path when the report went there)."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    verp = f"bounce+{delivery.ref}@{BOUNCE_DOMAIN}"
    envelope = [verp] if "@@VERP@@" in text else [SENDER]
    for key, value in (
        ("@@RCPT@@", delivery.recipient),
        ("@@VERP@@", verp),
        ("@@MSGID@@", delivery.message_id),
        ("@@SENDER@@", SENDER),
    ):
        text = text.replace(key, value)
    return text.encode(), envelope


def email_deliveries(ws: Workspace) -> list[Any]:
    d = t.deliveries.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(d.id, d.recipient, d.ref, d.message_id, d.status, d.state, d.outbox_id)
                .where(d.company_id == ws.company_id, d.channel == "email")
                .order_by(d.id)
            )
        )


def suppressions(ws: Workspace) -> dict[str, Any]:
    s = t.suppressions.c
    with ws.engine.connect() as conn:
        return {
            r.address: r
            for r in conn.execute(
                select(s.address, s.channel, s.reason, s.soft_failures, s.suppressed_at).where(
                    s.company_id == ws.company_id
                )
            )
        }


def chain_is_sound(ws: Workspace) -> None:
    with ws.engine.connect() as conn:
        found = verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)
    assert found.ok, [*found.problems, *(str(p) for p in found.records)]


def consumer_yaml(tw: FakeTwilio | None, channels: str = "email, sms") -> dict[str, str]:
    """The starter's consumer reminders on ``channels``, bounces to the bounce domain."""
    return {
        EMAIL_COST: EMAIL_COST
        + f"    bounces:\n      domain: {BOUNCE_DOMAIN}\n      soft_limit: 2\n"
        + (channels_yaml(tw, False)[len(EMAIL_COST) :] if tw else ""),
        "        template: reminder_before\n": (
            f"        template: reminder_before\n        channels: [{channels}]\n"
        ),
        "        template: reminder_due\n": (
            f"        template: reminder_due\n        channels: [{channels}]\n"
        ),
    }


# --------------------------------------------------------------------------- fixtures


def test_each_report_is_classified_and_matched_to_its_message(
    make_ws: Callable[..., Workspace], smtp_server: Any
) -> None:
    ws = make_ws(replace={**smtp_server.replace, **consumer_yaml(None, "email")})
    names = sorted(EXPECTED)
    load(
        ws,
        "customers",
        *(
            {"external_id": f"P{i}", "name": f"Debtor {i}", "email": f"p{i}@debtors.example"}
            for i in range(len(names))
        ),
    )
    for i in range(len(names)):
        invoice(ws, f"F{i}", f"P{i}", DAY + timedelta(days=3), "80.00")
    run_day(ws, DAY, as_of=local(ws, DAY, "09:00"))
    sent = {x.recipient: x for x in email_deliveries(ws)}
    assert len(sent) == len(names)
    # Each message left with its VERP return path as the envelope sender.
    by_rcpt = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.received}
    for x in sent.values():
        assert by_rcpt[x.recipient] == f"bounce+{x.ref}@{BOUNCE_DOMAIN}"

    at = local(ws, DAY, "18:00")
    settings = Followup(ws.config.company.timezone, 2)
    for i, name in enumerate(names):
        delivery = sent[f"p{i}@debtors.example"]
        data, envelope = report(name, delivery)
        bounce = parse_bounce(data, envelope)
        kind, status = EXPECTED[name]
        assert bounce.kind == kind, name
        assert [f.address for f in bounce.failed] == [delivery.recipient], name
        assert bounce.failed[0].status == status, name
        with ws.engine.begin() as conn:
            outcome = record_bounce(conn, ws.company_id, bounce, at, settings)
        assert [m.delivery_id for m in outcome.matched] == [delivery.id], name
        assert outcome.unmatched == [], name

    states = {x.recipient: x.state for x in email_deliveries(ws)}
    gone = suppressions(ws)
    for i, name in enumerate(names):
        address, kind = f"p{i}@debtors.example", EXPECTED[name][0]
        expected_state = {
            HARD: "permanent_failure",
            SOFT: "temporary_failure",
            COMPLAINT: "delivered",  # it arrived (and was reported): suppressed anyway
        }[kind]
        assert states[address] == expected_state, name
        if kind == SOFT:  # one soft bounce is counted, not enough to suppress
            assert gone[address].soft_failures == 1 and gone[address].suppressed_at is None
        else:
            assert gone[address].suppressed_at is not None, name
            assert gone[address].reason == ("complaint" if kind == COMPLAINT else "hard_bounce")
    chain_is_sound(ws)


def test_a_report_for_no_known_message_changes_nothing(
    make_ws: Callable[..., Workspace], smtp_server: Any
) -> None:
    ws = make_ws(replace={**smtp_server.replace, **consumer_yaml(None, "email")})
    fake = type("D", (), {"ref": "00ff00ff00ff00ff00ff", "recipient": "x@nowhere.example"})()
    fake.message_id = "<cobro.demo.999.000000000000@demo.example>"  # type: ignore[attr-defined]
    data, envelope = report("postfix-user-unknown.eml", fake)
    with ws.engine.begin() as conn:
        outcome = record_bounce(
            conn,
            ws.company_id,
            parse_bounce(data, envelope),
            datetime(2025, 3, 3, tzinfo=UTC),
            Followup(),
        )
    assert (outcome.kind, outcome.matched, outcome.unmatched) == (HARD, [], ["x@nowhere.example"])
    assert suppressions(ws) == {}


# --------------------------------------------------------------------------- SMTP


@dataclass
class RemoteMta:
    """The debtor's mail server: accepts every message, and for the recipients told to
    bounce, queues the report its software writes (fixture ``reports[rcpt]``) to the
    message's return path, sent to ``relay`` when the test says (``flush``)."""

    relay: tuple[str, int]
    reports: dict[str, str] = field(default_factory=dict)
    queued: list[tuple[str, bytes]] = field(default_factory=list)
    accepted: list[tuple[str, str, str]] = field(default_factory=list)  # from, to, msg id
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=default_policy).parsebytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            with self.lock:
                self.accepted.append((envelope.mail_from, rcpt, str(msg["Message-ID"])))
            name = self.reports.get(rcpt)
            if name is not None:
                ref = envelope.mail_from.partition("+")[2].partition("@")[0]
                row = type("R", (), {})()
                row.ref, row.recipient, row.message_id = ref, rcpt, str(msg["Message-ID"])
                data, _ = report(name, row)
                with self.lock:
                    self.queued.append((envelope.mail_from, data))
        return "250 2.0.0 Ok: queued"

    def flush(self) -> list[str]:
        """Send every queued report over SMTP; the replies of the bounce endpoint."""
        with self.lock:
            queued, self.queued = self.queued, []

        async def send() -> list[str]:
            replies = []
            for to, data in queued:  # from the null sender <>, as reports are
                client = aiosmtplib.SMTP(hostname=self.relay[0], port=self.relay[1])
                await client.connect()
                await client.mail("")
                await client.rcpt(to)
                reply = await client.data(data)
                await client.quit()
                replies.append(f"{reply.code} {reply.message}")
            return replies

        return asyncio.run(send())


@dataclass
class Mail:
    ws: Workspace
    mta: RemoteMta
    bounces: BounceHandler
    clock: Clock
    twilio: FakeTwilio


@pytest.fixture
def mail(
    make_ws: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Mail]]:
    stack: list[Any] = []

    def make(channels: str = "email, sms") -> Mail:
        tw = FakeTwilio().__enter__()
        stack.append(tw)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        clock = Clock(datetime(2025, 3, 3, 17, 0, tzinfo=UTC))
        bounce_sock, mta_sock = bound_socket(), bound_socket()
        bounce_port, mta_port = bounce_sock.getsockname()[1], mta_sock.getsockname()[1]
        mta = RemoteMta(("127.0.0.1", bounce_port))
        ws = make_ws(
            replace={
                "host: capture": "host: 127.0.0.1",
                "port: 587": f"port: {mta_port}",
                **consumer_yaml(tw, channels),
            }
        )
        handler = BounceHandler([ws], clock)
        for controller in (
            LocalSMTP(handler, bounce_sock),
            LocalSMTP(mta, mta_sock),
        ):
            controller.start()
            stack.append(controller)
        load(
            ws,
            "customers",
            {
                "external_id": "P1",
                "name": "Ana Pérez",
                "email": "ana@debtors.example",
                "phone": "612 345 678",
                "language": "es",
            },
        )
        invoice(ws, "F1", "P1", DAY + timedelta(days=3), "80.00")
        return Mail(ws, mta, handler, clock, tw)

    yield make
    for each in reversed(stack):
        if isinstance(each, FakeTwilio):
            each.__exit__(None, None, None)
        else:
            each.stop()


def test_email_bounced_yesterday_sends_todays_reminder_by_sms(
    mail: Callable[..., Mail],
) -> None:
    m = mail("email, sms")
    m.mta.reports["ana@debtors.example"] = "gmail-no-such-user.eml"
    run_day(m.ws, DAY, as_of=local(m.ws, DAY, "09:00"))  # "before": by email
    assert [a[1] for a in m.mta.accepted] == ["ana@debtors.example"]
    assert m.twilio.messages == []

    m.clock.now = local(m.ws, DAY + timedelta(days=1), "08:00")  # the report comes next day
    replies = m.mta.flush()
    assert [r.startswith("250") for r in replies] == [True]
    [email] = email_deliveries(m.ws)
    assert email.state == "permanent_failure"
    assert suppressions(m.ws)["ana@debtors.example"].reason == "hard_bounce"
    assert m.twilio.messages == []  # not the same day: today's claim stays as it was

    due = DAY + timedelta(days=3)  # "due": the next reminder goes by SMS
    run_day(m.ws, due, as_of=local(m.ws, due, "09:00"))
    assert [x[1] for x in m.mta.accepted] == ["ana@debtors.example"]  # no more email
    [sms] = m.twilio.messages
    assert sms["to"] == PHONE
    chain_is_sound(m.ws)


def test_an_email_bounced_the_same_day_goes_by_sms_that_day(mail: Callable[..., Mail]) -> None:
    m = mail("email, sms")
    m.mta.reports["ana@debtors.example"] = "postfix-user-unknown.eml"
    run_day(m.ws, DAY, as_of=local(m.ws, DAY, "09:00"))
    m.clock.now = local(m.ws, DAY, "09:30")
    m.mta.flush()
    run_day(m.ws, DAY, as_of=local(m.ws, DAY, "10:00"))  # the same day: sent now, by SMS
    [sms] = m.twilio.messages
    assert sms["to"] == PHONE
    chain_is_sound(m.ws)


def test_soft_bounces_suppress_the_address_after_the_limit(mail: Callable[..., Mail]) -> None:
    m = mail("email")
    m.mta.reports["ana@debtors.example"] = "postfix-delayed-mailbox-full.eml"
    run_day(m.ws, DAY, as_of=local(m.ws, DAY, "09:00"))
    m.clock.now = local(m.ws, DAY + timedelta(days=1), "08:00")
    m.mta.flush()
    first = suppressions(m.ws)["ana@debtors.example"]
    assert (first.soft_failures, first.suppressed_at) == (1, None)
    due = DAY + timedelta(days=3)
    run_day(m.ws, due, as_of=local(m.ws, due, "09:00"))
    assert len(m.mta.accepted) == 2  # still written to after one soft bounce
    m.clock.now = local(m.ws, due + timedelta(days=1), "08:00")
    m.mta.flush()
    second = suppressions(m.ws)["ana@debtors.example"]
    assert second.soft_failures == 2
    assert second.reason == "soft_bounces"  # soft_limit: 2
    chain_is_sound(m.ws)


def test_the_bounce_endpoint_refuses_mail_for_other_domains(mail: Callable[..., Mail]) -> None:
    m = mail("email")

    async def send() -> Any:
        return await aiosmtplib.send(
            b"Subject: hi\r\n\r\nhello\r\n",
            sender="someone@elsewhere.example",
            recipients=["victim@elsewhere.example"],
            hostname=m.mta.relay[0],
            port=m.mta.relay[1],
        )

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        asyncio.run(send())


def test_reports_are_read_from_a_maildir_once(mail: Callable[..., Mail], tmp_path: Path) -> None:
    m = mail("email")
    m.mta.reports["ana@debtors.example"] = "qmail-no-mailbox.eml"
    run_day(m.ws, DAY, as_of=local(m.ws, DAY, "09:00"))
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    (_to, data) = m.mta.queued[0]
    box.add(data)
    box.add(b"From: a@b.example\r\nSubject: not a bounce\r\n\r\nhello\r\n")
    at = local(m.ws, DAY + timedelta(days=1), "08:00")
    first = read_maildir(m.ws, tmp_path / "bounces", at)
    assert (first.read, first.matched, first.not_bounces) == (2, 1, 1)
    assert read_maildir(m.ws, tmp_path / "bounces", at).read == 0
    [email] = email_deliveries(m.ws)
    assert email.state == "permanent_failure"
    chain_is_sound(m.ws)
