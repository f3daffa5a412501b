"""Member reminders by SMS (Twilio's API) and Web Push, with fallback, on each database.

Twilio and the push service are local HTTP servers speaking their real protocols
(``tests/fakes``); email goes to a real SMTP server.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cobro.channels.push import new_vapid_keys
from cobro.engine.runs import dispatch_due, run_day
from cobro.evidence.messages import unpack
from cobro.intake.events import EventError, post_event
from cobro.store import tables as t
from cobro.workspace import Workspace
from fakes.push import BrowserSubscription, FakePushService
from fakes.twilio import FakeTwilio

from .conftest import SmtpServer
from .support import invoice, load

MADRID = ZoneInfo("Europe/Madrid")
SENDER = "+34910000000"
PHONE = "+34612345678"
EMAIL_COST = "    cost: 0.0005                 # per message, in the company currency\n"
UPCOMING_CHANNELS = (
    "    channels: [email]            # in order of preference, of email, sms and push\n"
)
UNPAID_CHANNELS = (
    "    enabled: true                # renewals only, never a failed first purchase\n"
    "    channels: [email]\n"
)


def at(day: str, hhmm: str = "10:00") -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(date.fromisoformat(day), time(h, m), MADRID).astimezone(UTC)


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        yield tw


@pytest.fixture
def push_service() -> Iterator[FakePushService]:
    with FakePushService() as service:
        yield service


def channels_yaml(tw: FakeTwilio | None, push: bool) -> str:
    text = EMAIL_COST
    if tw is not None:
        text += (
            "  sms:\n"
            f"    account_sid: {tw.account_sid}\n"
            f'    sender: "{SENDER}"\n'
            f"    api_url: {tw.url}\n"
            "    cost_per_segment: 0.04\n"
        )
    if push:
        text += "  push:\n    subject: mailto:cobros@gym.example\n    ttl_s: 3600\n"
    return text


@pytest.fixture
def gym_with(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> Callable[..., Workspace]:
    """A gym whose reminders go on ``upcoming`` (and unpaid notices on ``unpaid``)."""

    def make(
        upcoming: str,
        unpaid: str = "email",
        tw: FakeTwilio | None = None,
        push: bool = False,
        name: str = "gym",
    ) -> Workspace:
        ws = make_ws(
            name,
            replace={
                **smtp_server.replace,
                "  id: demo ": f"  id: {name} ",
                EMAIL_COST: channels_yaml(tw, push),
                UPCOMING_CHANNELS: f"    channels: [{upcoming}]\n",
                UNPAID_CHANNELS: UNPAID_CHANNELS.replace("[email]", f"[{unpaid}]"),
            },
        )
        if push:
            (ws.root / "vapid_private.pem").write_text(new_vapid_keys()[0])
        load(
            ws,
            "customers",
            {
                "external_id": "M1",
                "name": "Lucía Gómez",
                "email": "lucia@example.com",
                "phone": "612 345 678",  # national: read as Spain, the company's locale
                "language": "es",
            },
            {"external_id": "M2", "name": "John Smith", "email": "john@example.com"},
        )
        return ws

    return make


def subscribe(ws: Workspace, member: str = "M1", sub: str = "S1", **extra: Any) -> None:
    post_event(
        ws,
        "subscription.created",
        {
            "id": f"created-{sub}",
            "customer": member,
            "subscription": sub,
            "plan": "Mensual Oro",
            "price": "39.90",
            "next_charge_on": "2026-03-20",
            **extra,
        },
        at("2026-03-01"),
    )


def remind(ws: Workspace) -> None:
    """The day the reminder for the charge of 2026-03-20 goes (lead 2 days, 09:00)."""
    run_day(ws, date(2026, 3, 18), as_of=at("2026-03-18", "09:00"))


def deliveries(ws: Workspace) -> list[Any]:
    d = t.deliveries.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(d.channel, d.recipient, d.status, d.cost, d.error)
                # the admin's new-subscriber notice aside
                .where(d.company_id == ws.company_id, d.recipient_role != "admin")
                .order_by(d.id)
            ).all()
        )


def mails_to(smtp: SmtpServer, addr: str) -> list[Any]:
    return [r.message for r in smtp.received if r.message["To"].addresses[0].addr_spec == addr]


def browser(ws: Workspace, service: FakePushService, member: str = "M1") -> BrowserSubscription:
    sub = BrowserSubscription.create(service, f"{member}-phone")
    post_event(
        ws,
        "push.subscribed",
        {"id": f"push-{member}", "customer": member, **sub.info, "user_agent": "Firefox 140"},
        at("2026-03-01"),
    )
    return sub


# --------------------------------------------------------------------------- SMS


def test_upcoming_charge_reminder_by_sms(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws)
    remind(ws)

    [sms] = twilio.messages
    assert (sms["to"], sms["from_"]) == (PHONE, SENDER)
    assert sms["body"] == (
        "Distribuciones Demo S.L.: el 20 mar 2026 cobraremos 39,90 € de su tarifa Mensual Oro."
    )
    assert mails_to(smtp_server, "lucia@example.com") == []  # SMS reached her: no email
    [row] = deliveries(ws)
    assert (row.channel, row.recipient, row.status) == ("sms", PHONE, "sent")
    assert row.cost == Decimal("0.04") * sms["num_segments"]


def test_reminder_falls_back_to_email_when_the_member_has_no_phone(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws, member="M2")
    remind(ws)
    assert twilio.messages == []
    [mail] = mails_to(smtp_server, "john@example.com")
    assert mail["Subject"] == "Distribuciones Demo S.L.: próximo cobro de 39,90 €"


def test_refused_sms_falls_back_to_the_next_channel(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    twilio.refuse[PHONE] = (400, 21610, "Attempt to send to unsubscribed recipient")
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws)
    remind(ws)

    assert twilio.messages == []
    assert len(mails_to(smtp_server, "lucia@example.com")) == 1
    sms, email = deliveries(ws)
    assert (sms.channel, sms.status, email.channel, email.status) == (
        "sms",
        "failed",
        "email",
        "sent",
    )
    assert "21610" in sms.error and "opted out" in sms.error
    o = t.outbox.c
    with ws.engine.connect() as conn:
        status, reason = conn.execute(
            select(o.status, o.reason).where(o.step.like("upcoming/%"))
        ).one()
    assert status == "sent" and "opted out" in reason


def test_sms_outage_is_retried_later_and_sent_once(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    twilio.fail_next = 1  # Twilio answers 503 once
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws)
    remind(ws)
    assert twilio.messages == [] and mails_to(smtp_server, "lucia@example.com") == []
    dispatch_due(ws, at("2026-03-18", "09:04"))  # before the 5-minute back-off: nothing
    assert twilio.messages == []
    dispatch_due(ws, at("2026-03-18", "09:06"))
    dispatch_due(ws, at("2026-03-18", "10:00"))
    assert [m["to"] for m in twilio.messages] == [PHONE]
    assert mails_to(smtp_server, "lucia@example.com") == []  # a temporary failure: no fallback


def test_unpaid_reminder_by_sms_carries_the_pay_link(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio
) -> None:
    ws = gym_with("email", unpaid="sms", tw=twilio)
    subscribe(ws, next_charge_on="2026-04-01")
    for n, kind in ((1, "charge.succeeded"), (2, "charge.failed")):
        post_event(
            ws,
            kind,
            {"id": f"c{n}", "subscription": "S1", "charge": f"CH{n}", "amount": "39.90"},
            at(f"2026-0{2 + n}-01"),
        )
    dispatch_due(ws, at("2026-04-01", "10:01"))
    [sms] = twilio.messages
    text, _, link = sms["body"].rpartition(" ")
    assert text == (
        "Distribuciones Demo S.L.: no pudimos cobrar 39,90 € de Mensual Oro. "
        "Pague aqui para mantener su suscripcion:"  # accents GSM-7 lacks are dropped
    )
    assert link.startswith("https://pagos.demo.example/portal/")


def test_each_company_chooses_its_reminder_channels(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    by_sms = gym_with("sms", tw=twilio, name="by-sms")
    by_email = gym_with("email", tw=twilio, name="by-email")
    for ws in (by_sms, by_email):
        subscribe(ws)
        remind(ws)
    assert [m["to"] for m in twilio.messages] == [PHONE]
    assert [d.channel for d in deliveries(by_sms)] == ["sms"]
    assert len(mails_to(smtp_server, "lucia@example.com")) == 1
    assert [d.channel for d in deliveries(by_email)] == ["email"]


def test_the_sms_auth_token_is_never_logged_or_stored(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    twilio.refuse[PHONE] = (400, 21211, f"The 'To' number {PHONE} is not a valid phone number.")
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws)
    with caplog.at_level(logging.DEBUG):
        remind(ws)
    assert twilio.requests == 1
    assert twilio.auth_token not in caplog.text
    with ws.engine.connect() as conn:
        stored = [
            json.dumps([str(v) for v in row])
            for table in (t.deliveries, t.evidence, t.outbox)
            for row in conn.execute(select(table))
        ]
    assert stored and not any(twilio.auth_token in row for row in stored)


# --------------------------------------------------------------------------- push


def test_upcoming_charge_reminder_by_push(
    gym_with: Callable[..., Workspace],
    twilio: FakeTwilio,
    push_service: FakePushService,
    smtp_server: SmtpServer,
) -> None:
    ws = gym_with("push, sms, email", tw=twilio, push=True)
    phone = browser(ws, push_service)
    subscribe(ws)
    remind(ws)

    [received] = push_service.received
    assert received.ttl == 3600 and received.urgency == "normal"
    shown = json.loads(phone.decrypt(received))
    assert shown["title"] == "Distribuciones Demo S.L.: próximo cobro de 39,90 €"
    assert shown["body"] == (
        "Distribuciones Demo S.L.: el 20 mar 2026 cobraremos 39,90 € de su tarifa Mensual Oro."
    )
    assert shown["url"] is None  # a reminder, not a claim: no pay link
    assert twilio.messages == [] and mails_to(smtp_server, "lucia@example.com") == []
    [row] = deliveries(ws)
    assert (row.channel, row.recipient, row.status) == ("push", phone.endpoint, "sent")


def test_expired_push_subscription_is_retired_and_the_next_channel_used(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, push_service: FakePushService
) -> None:
    ws = gym_with("push, sms", tw=twilio, push=True)
    phone = browser(ws, push_service)
    push_service.gone.add(phone.path)  # the member uninstalled the app: 410 Gone
    subscribe(ws)
    remind(ws)

    assert [m["to"] for m in twilio.messages] == [PHONE]
    p = t.push_subscriptions.c
    with ws.engine.connect() as conn:
        gone_at, reason = conn.execute(select(p.gone_at, p.gone_reason)).one()
    assert gone_at == at("2026-03-18", "09:00") and "410" in reason
    # The next month's reminder does not knock on the dead subscription again.
    requests = push_service.requests
    post_event(
        ws,
        "charge.succeeded",
        {
            "id": "c1",
            "subscription": "S1",
            "charge": "CH1",
            "amount": "39.90",
            "next_charge_on": "2026-04-20",
        },
        at("2026-03-20"),
    )
    run_day(ws, date(2026, 4, 18), as_of=at("2026-04-18", "09:00"))
    assert push_service.requests == requests
    assert len(twilio.messages) == 2


def test_push_subscription_with_bad_keys_is_refused_with_the_field(
    gym_with: Callable[..., Workspace],
) -> None:
    ws = gym_with("email")
    with pytest.raises(EventError) as exc:
        post_event(
            ws,
            "push.subscribed",
            {
                "id": "p1",
                "customer": "M1",
                "endpoint": "http://push.example/abc",
                "keys": {"p256dh": "bm90IGEga2V5", "auth": "c2hvcnQ"},
            },
            at("2026-03-01"),
        )
    problems = " | ".join(exc.value.problems)
    assert "endpoint: a push endpoint is an https:// URL" in problems
    assert "keys.p256dh: p256dh is not a 65-byte value" in problems
    assert "keys.auth: auth is not a 16-byte value" in problems
    with ws.engine.connect() as conn:
        assert conn.execute(select(t.push_subscriptions)).all() == []


# --------------------------------------------------------------------------- dunning phases


def test_a_policy_phase_by_sms_carries_the_total_and_the_pay_link(
    make_ws: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    ws = make_ws(
        replace={
            **smtp_server.replace,
            EMAIL_COST: channels_yaml(twilio, False),
            "        template: reminder_due\n": "        template: reminder_due\n"
            "        channels: [sms, email]\n",
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "P1", "name": "Ana", "kind": "person", "phone": "+34 612 345 678"},
        {"external_id": "P2", "name": "Bea", "kind": "person", "email": "bea@example.com"},
    )
    for n, who in ((1, "P1"), (2, "P2")):
        invoice(ws, f"F{n}", who, date(2026, 5, 10), "120.50")
    run_day(ws, date(2026, 5, 10))

    [sms] = twilio.messages
    text, _, link = sms["body"].rpartition(" ")
    assert sms["to"] == PHONE
    assert text == "Distribuciones Demo S.L.: su pago vence hoy - Total pendiente: 120,50 €"
    assert link.startswith("https://pagos.demo.example/portal/")
    [mail] = mails_to(smtp_server, "bea@example.com")  # no phone: the next channel
    assert "120,50" in mail.get_body(("plain",)).get_content()


# --------------------------------------------------------------------------- as sent
# The message as sent is kept for every channel, covered by its delivery's evidence entry.


def kept(ws: Workspace, channel: str) -> tuple[bytes, str, str]:
    """(message kept, its row's SHA-256, the SHA-256 in its evidence entry) of the one
    delivery on ``channel``."""
    d, ev = t.deliveries.c, t.evidence.c
    with ws.engine.connect() as conn:
        (row,) = conn.execute(
            select(d.message_zlib, d.message_sha256).where(d.channel == channel)
        ).all()
        entries = [
            json.loads(p)
            for p in conn.execute(select(ev.payload).where(ev.kind == "delivery")).scalars()
        ]
    (entry,) = [e for e in entries if e["channel"] == channel]
    return unpack(row.message_zlib), row.message_sha256, entry["message_sha256"]


def test_the_sms_kept_is_the_text_twilio_received(
    gym_with: Callable[..., Workspace], twilio: FakeTwilio, smtp_server: SmtpServer
) -> None:
    ws = gym_with("sms, email", tw=twilio)
    subscribe(ws)
    remind(ws)

    [sms] = twilio.messages
    data, row_digest, entry_digest = kept(ws, "sms")
    assert data == sms["body"].encode()
    assert row_digest == entry_digest == hashlib.sha256(data).hexdigest()


def test_the_push_payload_kept_is_what_the_browser_decrypts(
    gym_with: Callable[..., Workspace],
    twilio: FakeTwilio,
    push_service: FakePushService,
    smtp_server: SmtpServer,
) -> None:
    ws = gym_with("push, sms, email", tw=twilio, push=True)
    phone = browser(ws, push_service)
    subscribe(ws)
    remind(ws)

    [received] = push_service.received
    data, row_digest, entry_digest = kept(ws, "push")
    assert data == phone.decrypt(received)
    assert row_digest == entry_digest == hashlib.sha256(data).hexdigest()
