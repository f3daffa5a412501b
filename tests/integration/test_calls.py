"""Automated calls: a phase calls the debtor through Twilio's Calls API (a local server
driven through the official client, playing each number's outcome); Twilio fetches the
call's TwiML from, presses keys at, and reports each call's outcome to a real HTTP server
running the app, signed as Twilio signs. Over simulated days: an undelivered SMS makes
the claim a call, an unanswered call is called again up to the phase's attempts and then
goes by email, pressing 1 sends the pay link by SMS, and a debtor is called at most so
many times a week, however many dispatchers call it at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from cobro.engine.dispatch import DispatchReport
from cobro.engine.links import read_token
from cobro.engine.resend import ResendError, resend_claim
from cobro.engine.runs import dispatch_due, dispatch_rows, run_day
from cobro.engine.simulate import simulate
from cobro.evidence.history import claim_history
from cobro.evidence.messages import message_as_sent
from cobro.store import tables as t
from cobro.web.app import create_app
from cobro.workspace import Workspace, open_workspace
from e2e.cli import run_cobro
from fakes.twilio import FakeTwilio, twilio_signature

from .conftest import SmtpServer
from .portal.helpers import Clock
from .serving import listening, origin, serving
from .support import invoice, load, pay, rendezvous
from .test_calendar_dispatch import dispatch_at_once, outbox
from .test_channels import EMAIL_COST, PHONE, SENDER, at, mails_to
from .test_delivery_status import chain_is_sound, rows

DUE = date(2025, 3, 6)
LATE = DUE + timedelta(days=5)  # the consumer policy's "after" phase
CALLER = "+34910000000"
AFTER_PHASE = (
    "      - key: after\n"
    "        name: Payment overdue\n"
    "        names:\n"
    "          es: Pago vencido\n"
    "        when: 5 days after due\n"
    "        template: reminder_after\n"
    "        mode: full\n"
    "        repeat_every_days: 10\n"
    "        max_repeats: 3\n"
)


@dataclass
class Shop:
    ws: Workspace
    tw: FakeTwilio
    smtp: SmtpServer
    sock: socket.socket
    clock: Clock

    def serving(self) -> Any:
        return serving(create_app(self.ws, clock=self.clock), self.sock)

    def dispatch(self, day: date, hhmm: str) -> int:
        """Dispatch at ``hhmm`` of ``day``; the app's clock says the same; messages sent."""
        self.clock.now = at(day.isoformat(), hhmm)
        return dispatch_due(self.ws, self.clock.now).sent

    def play(self, day: date, hhmm: str) -> list[Any]:
        """Twilio plays the calls made so far at ``hhmm`` of ``day``."""
        self.clock.now = at(day.isoformat(), hhmm)
        return self.tw.play_calls()

    def report_sms(self, day: date, hhmm: str) -> list[Any]:
        self.clock.now = at(day.isoformat(), hhmm)
        return self.tw.send_callbacks()


def deliveries(ws: Workspace) -> list[tuple[str, str, str]]:
    d = t.deliveries.c
    with ws.engine.connect() as conn:
        return [
            (r.channel, r.status, r.state)
            for r in conn.execute(
                select(d.channel, d.status, d.state)
                .where(d.company_id == ws.company_id)
                .order_by(d.id)
            )
        ]


def call_events(ws: Workspace) -> list[tuple[str, str]]:
    d, e = t.deliveries.c, t.delivery_events.c
    with ws.engine.connect() as conn:
        return [
            (r.state, r.detail)
            for r in conn.execute(
                select(e.state, e.detail)
                .join(t.deliveries, d.id == e.delivery_id)
                .where(e.company_id == ws.company_id, d.channel == "voice")
                .order_by(e.id)
            )
        ]


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        yield tw


@pytest.fixture
def shop(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> Callable[..., Shop]:
    """A shop whose overdue card holders get the "after" phase on ``channels``, with the
    phase's ``call`` settings; ``cobro serve`` listens at ``company.public_url``."""

    def make(channels: str, call: str, phase: str = "", voice: str = "") -> Shop:
        sock = listening()
        ws = make_ws(
            "shop",
            replace={
                **smtp_server.replace,
                "  id: demo ": "  id: shop ",
                "  portal_url: https://pagos.demo.example/portal": (
                    f"  portal_url: https://pagos.demo.example/portal\n  public_url: {origin(sock)}"
                ),
                EMAIL_COST: EMAIL_COST + "  sms:\n"
                f"    account_sid: {twilio.account_sid}\n"
                f'    sender: "{SENDER}"\n'
                f"    api_url: {twilio.url}\n"
                "  voice:\n"
                f"    account_sid: {twilio.account_sid}\n"
                f'    caller_id: "{CALLER}"\n'
                f"    api_url: {twilio.url}\n"
                "    cost_per_call: 0.12\n" + voice,
                AFTER_PHASE: (
                    AFTER_PHASE.replace("        repeat_every_days: 10\n", phase or "")
                    + f"        channels: [{channels}]\n"
                    + f"        call: {{{call}}}\n"
                ),
            },
        )
        load(
            ws,
            "customers",
            {
                "external_id": "C1",
                "name": "Lucía Gómez",
                "email": "lucia@example.com",
                "phone": "612 345 678",
                "language": "es",
            },
        )
        invoice(ws, "F1", "C1", DUE, "1234.50")
        return Shop(ws, twilio, smtp_server, sock, Clock(at(LATE.isoformat(), "09:00")))

    return make


# --------------------------------------------------------------------------- end to end


def test_an_undelivered_sms_becomes_a_call_retried_unanswered_then_an_email(
    shop: Callable[..., Shop],
) -> None:
    s = shop("sms, voice, email", "attempts: 2, retry_after_minutes: 30")
    s.tw.outcomes[PHONE] = "undelivered"
    s.tw.call_outcomes[PHONE] = "no-answer"
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        assert [m["to"] for m in s.tw.messages] == [PHONE]
        assert [c["answer"] for c in s.report_sms(LATE, "09:02")] == [204, 204]

        assert s.dispatch(LATE, "09:05") == 1  # the SMS did not arrive: a call
        [call] = s.tw.calls
        assert (call["to"], call["from_"], call["machine_detection"]) == (PHONE, CALLER, "Enable")
        assert call["url"] is not None and "/callbacks/shop/twilio/twiml?ref=" in call["url"]
        assert s.play(LATE, "09:06")[0]["answers"] == [204, 204, 204]
        assert call_events(s.ws) == [("temporary_failure", "no answer")]

        assert s.dispatch(LATE, "09:20") == 0  # not again before 30 minutes
        assert len(s.tw.calls) == 1
        assert s.dispatch(LATE, "09:40") == 1  # called again
        assert len(s.tw.calls) == 2
        s.play(LATE, "09:41")
        assert mails_to(s.smtp, "lucia@example.com") == []

        assert s.dispatch(LATE, "09:42") == 1  # two calls unanswered: by email, at once
    assert len(s.tw.calls) == 2 and len(s.tw.messages) == 1
    assert len(mails_to(s.smtp, "lucia@example.com")) == 1
    assert deliveries(s.ws) == [
        ("sms", "sent", "permanent_failure"),
        ("voice", "sent", "temporary_failure"),
        ("voice", "sent", "temporary_failure"),
        ("email", "sent", "sent"),
    ]
    [claim] = rows(s.ws, t.outbox, "status", "step")
    assert claim.status == "sent"
    chain_is_sound(s.ws)


def test_a_call_speaks_spanish_and_pressing_1_sends_the_pay_link_by_sms(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 2")
    s.tw.call_outcomes[PHONE] = "press"
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        [call] = s.play(LATE, "09:01")
        assert call["answers"] == [204, 204, 200, 204, 200, 204]
        spoken, offer, answer = call["heard"]  # after the key, the rest is not played
        assert "Hola Lucía Gómez" in spoken
        assert "1234 euros con 50 céntimos" in spoken
        assert "pendiente desde el 6 de marzo de 2025" in spoken
        assert offer == "Para recibir el enlace de pago por SMS, pulse 1."
        assert answer.startswith("Le enviamos el enlace de pago por SMS")
        assert s.tw.messages == []  # planned, sent by the next dispatch
        assert s.dispatch(LATE, "09:02") == 1
    [sms] = s.tw.messages
    assert sms["to"] == PHONE
    token = sms["body"].rpartition("https://pagos.demo.example/portal/")[2]
    link = read_token(s.ws.secret, token, "shop", s.clock.now, 30)
    [claim_id] = [r.id for r in rows(s.ws, t.outbox, "id", "step") if r.step == "consumer/after"]
    assert (link.customer, link.outbox_id) == ("C1", claim_id)  # the call's claim
    assert mails_to(s.smtp, "lucia@example.com") == []
    assert deliveries(s.ws) == [("voice", "sent", "delivered"), ("sms", "sent", "sent")]
    assert call_events(s.ws)[0] == (
        "delivered",
        "answered by a person: pressed 1 for the pay link by SMS",
    )
    steps = [r.step for r in rows(s.ws, t.outbox, "step")]
    assert steps[1].startswith("paylink/")
    with s.ws.engine.connect() as conn:
        claim = next(c for c in claim_history(conn, s.ws.config, s.ws.company_id, "C1"))
        [voice] = claim.deliveries
        kept = message_as_sent(conn, s.ws.company_id, voice.id)
    assert (voice.channel, voice.state) == ("voice", "delivered")
    assert any(e.kind == "delivery.state" and "pressed 1" in e.text for e in claim.events)
    assert kept is not None and kept.data.startswith(b'<?xml version="1.0"')
    assert b'<Say language="es-ES" voice="Polly.Lucia">Hola' in kept.data
    chain_is_sound(s.ws)


def test_an_answering_machine_hears_nothing_and_the_call_counts_as_unanswered(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 1")
    s.tw.call_outcomes[PHONE] = "machine"
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        [call] = s.play(LATE, "09:01")
        assert call["heard"] == []  # hung up: voicemail is off
        assert s.dispatch(LATE, "09:02") == 1
    assert call_events(s.ws) == [("temporary_failure", "answered by a machine (machine_start)")]
    assert deliveries(s.ws) == [("voice", "sent", "temporary_failure"), ("email", "sent", "sent")]
    assert len(mails_to(s.smtp, "lucia@example.com")) == 1
    chain_is_sound(s.ws)


def test_with_voicemail_the_message_is_left_after_the_beep(shop: Callable[..., Shop]) -> None:
    s = shop("voice, email", "attempts: 1", voice="    voicemail: true\n")
    s.tw.call_outcomes[PHONE] = "machine"
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        [call] = s.play(LATE, "09:01")
        assert call["machine_detection"] == "DetectMessageEnd"
        assert "1234 euros con 50 céntimos" in call["heard"][0]
        assert s.dispatch(LATE, "09:02") == 0
    assert call_events(s.ws) == [
        ("delivered", "answered by a machine (machine_end_beep): message left, 21 s")
    ]
    assert mails_to(s.smtp, "lucia@example.com") == []
    chain_is_sound(s.ws)


def test_unsigned_or_wrongly_signed_call_requests_are_refused_and_change_nothing(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 1")
    with s.serving() as base:
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        [call] = s.tw.calls
        status_url, twiml_url = call["status_callback"], call["url"]
        assert status_url is not None and twiml_url is not None
        params = {"CallSid": call["sid"], "CallStatus": "completed", "AnsweredBy": "human"}
        forged = twilio_signature("not-the-token", status_url, params)
        assert s.tw.post_signed(status_url, params, signature="") == 403
        assert s.tw.post_signed(status_url, params, signature=forged) == 403
        busy = {**params, "CallStatus": "busy"}  # a signature replayed on changed fields
        assert (
            s.tw.post_signed(
                status_url, busy, twilio_signature(s.tw.auth_token, status_url, params)
            )
            == 403
        )
        assert s.tw.post_signed(twiml_url, params, signature="") == 403
        gather = f"{base}/callbacks/shop/twilio/gather?ref=x"
        assert s.tw.post_signed(gather, {"Digits": "1"}, signature=forged) == 403
    assert deliveries(s.ws) == [("voice", "sent", "sent")]
    assert call_events(s.ws) == []
    assert [r.step for r in rows(s.ws, t.outbox, "step")] == ["consumer/after"]


def test_a_debtor_overdue_is_called_every_k_days_until_paid_at_most_n_a_week(
    shop: Callable[..., Shop],
) -> None:
    s = shop(
        "voice, email",
        "attempts: 1, max_per_7_days: 2",
        phase="        repeat_every_days: 2\n",
    )
    with s.serving():
        for day in (LATE, LATE + timedelta(days=2), LATE + timedelta(days=4)):
            run_day(s.ws, day, as_of=at(day.isoformat(), "09:00"))
            s.play(day, "09:01")
        # two calls in 7 days: the third message goes by email
        assert [c["outcome"] for c in s.tw.calls] == ["answered", "answered"]
        assert len(mails_to(s.smtp, "lucia@example.com")) == 1
        day = LATE + timedelta(days=8)  # a week after the first call: called again
        run_day(s.ws, day, as_of=at(day.isoformat(), "09:00"))
        assert len(s.tw.calls) == 3
        pay(s.ws, "P1", "C1", "1234.50", day)
        for later in (day + timedelta(days=2), day + timedelta(days=4)):
            run_day(s.ws, later, as_of=at(later.isoformat(), "09:00"))
    assert len(s.tw.calls) == 3  # paid: no more calls
    assert [c for c, _, _ in deliveries(s.ws)] == ["voice", "voice", "email", "voice"]
    chain_is_sound(s.ws)


def test_a_fallback_call_beyond_the_limit_with_no_channel_after_is_not_made_and_fails_saying_why(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio, first="sms, voice")
    twilio.landlines.add(PHONE)
    report = dispatch_due(ws, at("2026-03-16", "09:00"))  # the four rows in one batch
    assert [call["to"] for call in twilio.calls] == [PHONE]  # the second claim's
    assert channels_to(ws, "C") == ["email", "sms", "voice"]  # the SMS refused, recorded
    [first, *_] = outbox(ws, "C")
    assert first.status == "failed"
    assert first.reason.endswith("; voice: 1 call(s) within 7 days (call.max_per_7_days)")
    assert (report.sent, report.failed) == (3, 1)


# --------------------------------------------------------------------------- resending a call


def the_claim(s: Shop) -> int:
    [claim] = [r.id for r in rows(s.ws, t.outbox, "id", "step") if r.step == "consumer/after"]
    return int(claim)


def plan_resend(s: Shop, claim: int, when: datetime) -> int:
    with s.ws.engine.begin() as conn:
        return resend_claim(conn, s.ws.config, s.ws.company_id, claim, to=None, at=when)


def test_a_resend_of_a_call_beyond_the_weekly_limit_is_refused_saying_when_it_may_call(
    shop: Callable[..., Shop], db_url: str
) -> None:
    s = shop("voice, email", "attempts: 1, max_per_7_days: 1")
    week = (LATE + timedelta(days=7)).isoformat()
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        s.play(LATE, "09:01")
        claim = the_claim(s)
        with pytest.raises(ResendError) as refused:
            plan_resend(s, claim, at(LATE.isoformat(), "11:00"))
        proc = run_cobro(
            s.ws.root,
            "--db",
            db_url,
            "resend",
            str(claim),
            ok=False,
            env={"COBRO_NOW": "2025-03-11T11:00:00+01:00", "TWILIO_AUTH_TOKEN": s.tw.auth_token},
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "the next call is allowed from 2025-03-18 09:00 (Europe/Madrid)" in proc.stderr
        assert len(rows(s.ws, t.outbox, "id")) == 1  # nothing planned
        row = plan_resend(s, claim, at(week, "09:00"))  # the call has left the 7 days
        assert dispatch_rows(s.ws, frozenset({row}), at(week, "09:00")).sent == 1
    assert str(refused.value) == (
        f"claim {claim} reached the debtor by a call only, and the debtor was called 1 "
        "time(s) within 7 days, the most consumer/after allows (call.max_per_7_days: 1); "
        "the next call is allowed from 2025-03-18 09:00 (Europe/Madrid)"
    )
    assert [c["to"] for c in s.tw.calls] == [PHONE, PHONE]
    assert mails_to(s.smtp, "lucia@example.com") == []


def test_a_resend_of_a_resend_keeps_to_the_limit_of_the_first_claims_phase(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 1, max_per_7_days: 1")
    week = (LATE + timedelta(days=7)).isoformat()
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        s.play(LATE, "09:01")
        row = plan_resend(s, the_claim(s), at(week, "09:00"))  # the first call is 7 days old
        assert dispatch_rows(s.ws, frozenset({row}), at(week, "09:00")).sent == 1
        # The resend called: resending it the same day would be a second call within 7
        # days, which consumer/after's limit of one does not allow (not the default 3).
        with pytest.raises(ResendError, match=r"consumer/after allows \(call.max_per_7_days: 1\)"):
            plan_resend(s, row, at(week, "11:00"))
    assert [c["to"] for c in s.tw.calls] == [PHONE, PHONE]


def test_a_resend_beyond_the_weekly_limit_goes_on_the_claim_s_other_channel(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 1, max_per_7_days: 1")
    s.tw.call_outcomes[PHONE] = "no-answer"
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        s.play(LATE, "09:01")
        assert s.dispatch(LATE, "09:02") == 1  # unanswered: by email
        row = plan_resend(s, the_claim(s), at(LATE.isoformat(), "11:00"))
        assert dispatch_rows(s.ws, frozenset({row}), at(LATE.isoformat(), "11:00")).sent == 1
    assert len(s.tw.calls) == 1  # not called again
    assert len(mails_to(s.smtp, "lucia@example.com")) == 2  # the email, resent
    resent = [
        (x.channel, x.status)
        for x in rows(s.ws, t.deliveries, "outbox_id", "channel", "status")
        if x.outbox_id == row
    ]
    assert resent == [("email", "sent")]
    chain_is_sound(s.ws)


def test_a_resend_dispatched_beyond_the_weekly_limit_does_not_call_and_fails_saying_why(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 1, max_per_7_days: 2")
    with s.serving():
        run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "09:00"))
        s.play(LATE, "09:01")
        claim = the_claim(s)
        # Two resends planned while one call more is allowed, sent in one batch.
        first = plan_resend(s, claim, at(LATE.isoformat(), "10:00"))
        second = plan_resend(s, claim, at(LATE.isoformat(), "10:00"))
        report = dispatch_due(s.ws, at(LATE.isoformat(), "10:00"))
    assert (report.sent, report.failed) == (1, 1)
    assert len(s.tw.calls) == 2
    status = {r.id: (r.status, r.reason) for r in rows(s.ws, t.outbox, "id", "status", "reason")}
    assert status[first] == ("sent", None)
    assert status[second] == (
        "failed",
        "voice: 2 call(s) within 7 days (call.max_per_7_days); "
        "the next call is allowed from 2025-03-18 09:00 (Europe/Madrid)",
    )


# --------------------------------------------------------------------------- simulation


def test_the_simulation_shows_calls_beyond_the_weekly_limit_on_the_next_channel(
    shop: Callable[..., Shop], db_url: str
) -> None:
    s = shop(
        "voice, email",
        "attempts: 1, max_per_7_days: 2",
        phase="        repeat_every_days: 2\n",
    )
    run_day(s.ws, LATE)  # a call recorded: it counts for the days simulated
    first, last = LATE + timedelta(days=2), LATE + timedelta(days=6)
    with s.ws.engine.connect() as conn, conn.begin() as trans:
        shown = [
            m for day in simulate(conn, s.ws.config, s.ws.company_id, first, last) for m in day
        ]
        trans.rollback()
    limit = "voice: 2 call(s) within 7 days (call.max_per_7_days)"
    assert [(m.date, m.channel, m.cost, m.call_limit) for m in shown] == [
        (first, "voice", Decimal("0.12"), None),
        (LATE + timedelta(days=4), "email", Decimal("0.0005"), limit),  # costed as email
        (last, "email", Decimal("0.0005"), limit),
    ]
    proc = run_cobro(
        s.ws.root,
        "--db",
        db_url,
        "simulate",
        "--from",
        first.isoformat(),
        "--to",
        last.isoformat(),
        "--json",
        env={"TWILIO_AUTH_TOKEN": s.tw.auth_token},
    )
    report = json.loads(proc.stdout)
    assert (report["messages"], report["beyond_call_limit"]) == (3, 2)
    assert Decimal(report["cost"]) == Decimal("0.121")
    assert [(m["channel"], m.get("call_limit")) for d in report["days"] for m in d["messages"]] == [
        ("voice", None),
        ("email", limit),
        ("email", limit),
    ]

    day = first  # the runs send what the simulation showed
    while day <= last:
        run_day(s.ws, day)
        day += timedelta(days=1)
    assert [c for c, _, _ in deliveries(s.ws)] == ["voice", "voice", "email", "email"]
    assert len(s.tw.calls) == 2


def test_the_simulation_shows_a_call_beyond_the_limit_with_no_channel_after_as_reaching_nobody(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice", "attempts: 1, max_per_7_days: 1", phase="        repeat_every_days: 2\n")
    second = LATE + timedelta(days=2)
    with s.ws.engine.connect() as conn, conn.begin() as trans:
        shown = [
            m for day in simulate(conn, s.ws.config, s.ws.company_id, LATE, second) for m in day
        ]
        trans.rollback()
    limit = "voice: 1 call(s) within 7 days (call.max_per_7_days)"
    assert [(m.date, m.channel, m.recipients, m.cost, m.call_limit) for m in shown] == [
        (LATE, "voice", 1, Decimal("0.12"), None),
        (second, "none", 0, Decimal(0), limit),
    ]
    run_day(s.ws, LATE)  # the runs: the second claim fails, naming the limit
    run_day(s.ws, second)
    assert len(s.tw.calls) == 1
    assert [(r.status, r.reason) for r in rows(s.ws, t.outbox, "status", "reason")] == [
        ("sent", None),
        ("failed", f"no channel reaches this debtor: {limit}"),
    ]


# --------------------------------------------------------------------------- several dispatchers

OTHER_PHONE = "+34612345679"
THIRD_PHONE = "+34612345680"


def called_debtor_and_another(
    make_ws: Callable[..., Workspace],
    smtp_server: SmtpServer,
    twilio: FakeTwilio,
    first: str = "voice, email",
) -> Workspace:
    """A workspace whose consumer phases call, then email, with at most one call in 7 days,
    where on 16 March the debtor C has three claims ready and then D one; the first
    phase's channels are ``first``."""
    phases = {
        f"        template: reminder_{key}\n        mode: full\n": (
            f"        template: reminder_{key}\n        mode: full\n"
            f"        channels: [{first if key == 'before' else 'voice, email'}]\n"
            "        call: {attempts: 1, max_per_7_days: 1}\n"
        )
        for key in ("before", "due", "after")
    }
    ws = make_ws(
        replace={
            **smtp_server.replace,
            EMAIL_COST: EMAIL_COST + "  sms:\n"
            f"    account_sid: {twilio.account_sid}\n"
            f'    sender: "{SENDER}"\n'
            f"    api_url: {twilio.url}\n"
            "  voice:\n"
            f"    account_sid: {twilio.account_sid}\n"
            f'    caller_id: "{CALLER}"\n'
            f"    api_url: {twilio.url}\n"
            "    press_for_sms: false\n",
            **phases,
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "C", "name": "Carla", "email": "c@example.com", "phone": PHONE},
        {"external_id": "D", "name": "Dario", "email": "d@example.com", "phone": OTHER_PHONE},
    )
    invoice(ws, "I-C", "C", date(2026, 3, 10), "100")
    invoice(ws, "I-D", "D", date(2026, 3, 19), "100")
    for day in (7, 10, 15, 16):  # planned only
        run_day(ws, date(2026, 3, day), as_of=at(f"2026-03-{day:02}", "07:00"))
    assert [(r.step, r.status) for r in outbox(ws, "C")] == [
        ("consumer/before", "planned"),
        ("consumer/due", "planned"),
        ("consumer/after", "planned"),
    ]
    return ws


def channels_to(ws: Workspace, customer: str) -> list[str]:
    """The channel of each delivery to the debtor ``customer``, sorted."""
    d, o, c = t.deliveries.c, t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        return sorted(
            conn.execute(
                select(d.channel)
                .join(t.outbox, o.id == d.outbox_id)
                .join(t.customers, c.id == o.customer_id)
                .where(c.external_id == customer)
            ).scalars()
        )


def assert_called_once(
    ws: Workspace, smtp: SmtpServer, tw: FakeTwilio, reports: list[DispatchReport]
) -> None:
    """C was called once and got its two other claims by email (its call of the week is
    made: the next channel); D was called; no claim was sent twice and none is left."""
    assert sorted(call["to"] for call in tw.calls) == [PHONE, OTHER_PHONE]
    assert channels_to(ws, "C") == ["email", "email", "voice"]
    assert channels_to(ws, "D") == ["voice"]
    assert len(mails_to(smtp, "c@example.com")) == 2
    assert mails_to(smtp, "d@example.com") == []
    assert [r.status for r in outbox(ws, "C")] == ["sent", "sent", "sent"]
    assert [r.status for r in outbox(ws, "D")] == ["sent"]
    assert (sum(r.sent for r in reports), sum(r.failed for r in reports)) == (4, 0)
    d = t.deliveries.c
    with ws.engine.connect() as conn:
        per_row = list(conn.execute(select(d.outbox_id)).scalars())
    assert len(per_row) == len(set(per_row)) == 4


def before_a_call_is_recorded(is_postgres: bool) -> Callable[[str], bool]:
    """For ``rendezvous``: the first write of each of two dispatchers that records a call
    as handed over (before the call is placed), once that dispatcher has counted its
    debtor's calls. On PostgreSQL (the write runs in a thread of its own) its first
    statement, the check that the row is still held; on SQLite its BEGIN IMMEDIATE, before
    it takes the write lock."""
    counted = threading.local()
    guard = threading.Lock()
    matched = 0

    def matches(sql: str) -> bool:
        nonlocal matched
        if sql.startswith("SELECT outbox.customer_id, deliveries.at"):
            counted.yes = True
            return False
        if is_postgres:
            hit = sql.startswith("SELECT outbox.id, outbox.attempts") and "FOR UPDATE" in sql
        else:
            hit = sql == "BEGIN IMMEDIATE" and getattr(counted, "yes", False)
        with guard:
            if hit and matched < 2:
                matched += 1
                return True
        return False

    return matches


def test_a_debtor_is_called_at_most_n_a_week_when_two_dispatchers_call_it_at_the_same_time(
    make_ws: Callable[..., Workspace],
    smtp_server: SmtpServer,
    twilio: FakeTwilio,
    reopen: Callable[[Workspace], Workspace],
    is_postgres: bool,
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    workspaces = [ws, reopen(ws)]
    # Each dispatcher has counted the calls of the debtor of its first row before either
    # records its call: the second claims while the first holds a row of C.
    with rendezvous([w.engine for w in workspaces], 2, before_a_call_is_recorded(is_postgres)):
        reports = dispatch_at_once(workspaces, at("2026-03-16", "09:00"))
    assert_called_once(ws, smtp_server, twilio, reports)


def test_a_debtor_is_called_at_most_n_a_week_when_two_dispatchers_claim_its_rows_at_once(
    make_ws: Callable[..., Workspace],
    smtp_server: SmtpServer,
    twilio: FakeTwilio,
    reopen: Callable[[Workspace], Workspace],
    is_postgres: bool,
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    workspaces = [ws, reopen(ws)]
    engines = [w.engine for w in workspaces]
    # Both dispatchers have chosen their first row (one of C each) before either claim
    # commits (PostgreSQL, whose claims run side by side; SQLite's take turns), then both
    # have counted calls before either records one.
    with (
        rendezvous(
            engines if is_postgres else [],
            2,
            lambda sql: (
                sql.startswith("SELECT outbox.id, outbox.customer_id") and "FOR UPDATE" in sql
            ),
            after=True,
        ),
        rendezvous(engines, 2, before_a_call_is_recorded(is_postgres)),
    ):
        reports = dispatch_at_once(workspaces, at("2026-03-16", "09:00"))
    assert_called_once(ws, smtp_server, twilio, reports)


def test_one_batch_with_several_calls_to_one_debtor_calls_it_at_most_n_a_week(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    report = dispatch_due(ws, at("2026-03-16", "09:00"))  # the four rows in one batch
    assert_called_once(ws, smtp_server, twilio, [report])


def test_a_call_counts_for_a_dispatcher_whose_pass_began_earlier(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    first = min(r.id for r in outbox(ws, "C"))
    # A pass begun at 09:05 calls C while a pass begun at 09:00 goes on with the other
    # rows: the call stamped 09:05 counts for it too.
    later = dispatch_rows(ws, frozenset({first}), at("2026-03-16", "09:05"))
    assert later.sent == 1
    earlier = dispatch_due(ws, at("2026-03-16", "09:00"))
    assert_called_once(ws, smtp_server, twilio, [later, earlier])


def test_a_call_more_than_7_days_after_the_instant_of_a_dispatch_does_not_count_for_it(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    before, _, after = (r.id for r in outbox(ws, "C"))
    assert dispatch_rows(ws, frozenset({after}), at("2026-03-16", "09:00")).sent == 1
    # A dispatch for 7 March, 9 days earlier: no 7 days hold both calls.
    assert dispatch_rows(ws, frozenset({before}), at("2026-03-07", "09:00")).sent == 1
    assert [call["to"] for call in twilio.calls] == [PHONE, PHONE]
    assert channels_to(ws, "C") == ["voice", "voice"]
    assert mails_to(smtp_server, "c@example.com") == []


def test_a_call_an_sms_falls_back_to_within_a_batch_counts_for_the_weekly_limit(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    # C's first claim goes by SMS, then a call; its number takes calls but no SMS, so the
    # SMS is refused on the spot and the claim falls back to a call within the batch.
    ws = called_debtor_and_another(make_ws, smtp_server, twilio, first="sms, voice, email")
    twilio.landlines.add(PHONE)
    report = dispatch_due(ws, at("2026-03-16", "09:00"))  # the four rows in one batch
    assert [m["to"] for m in twilio.messages] == [OTHER_PHONE]  # C's refused: not a mobile
    assert [call["to"] for call in twilio.calls] == [PHONE]
    assert channels_to(ws, "C") == ["email", "email", "sms", "voice"]
    assert channels_to(ws, "D") == ["sms"]
    assert len(mails_to(smtp_server, "c@example.com")) == 2
    assert [r.status for r in outbox(ws, "C")] == ["sent", "sent", "sent"]
    assert [r.status for r in outbox(ws, "D")] == ["sent"]
    assert (report.sent, report.failed) == (4, 0)


def test_a_debtor_reached_on_two_numbers_gets_no_more_calls_than_the_limit(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    # C's billing contact has a number of its own: the claim would call both numbers, but
    # the limit of one call in 7 days leaves room for one; the contact gets the email.
    ws = called_debtor_and_another(make_ws, smtp_server, twilio)
    load(
        ws,
        "contacts",
        {
            "external_id": "K-C",
            "customer": "C",
            "name": "Cuentas de Carla",
            "email": "cuentas@example.com",
            "phone": THIRD_PHONE,
            "roles": "billing",
        },
    )
    before, _, _ = (r.id for r in outbox(ws, "C"))
    report = dispatch_rows(ws, frozenset({before}), at("2026-03-16", "09:00"))
    assert report.sent == 1
    assert [call["to"] for call in twilio.calls] == [PHONE]
    assert channels_to(ws, "C") == ["email", "voice"]
    assert len(mails_to(smtp_server, "cuentas@example.com")) == 1
    assert mails_to(smtp_server, "c@example.com") == []


# --------------------------------------------------------------------------- kill -9


def _dispatch_child(root: str, url: str, as_of: datetime) -> None:
    ws = open_workspace(root, url)  # type: ignore[arg-type]
    dispatch_due(ws, as_of)
    os._exit(0)


def _killed_between_twilio_and_the_record(s: Shop) -> None:
    """Plan the claim, then dispatch it in a child process SIGKILLed once Twilio has
    taken the call, before the answer is recorded."""
    run_day(s.ws, LATE, as_of=at(LATE.isoformat(), "06:00"))  # planned only
    fork = multiprocessing.get_context("fork")
    url = s.ws.engine.url.render_as_string(hide_password=False)
    child = fork.Process(
        target=_dispatch_child, args=(str(s.ws.root), url, at(LATE.isoformat(), "09:00"))
    )
    s.tw.on_call = lambda count: os.kill(child.pid or 0, signal.SIGKILL)
    child.start()
    child.join(60)
    s.tw.on_call = None
    assert child.exitcode == -signal.SIGKILL
    assert len(s.tw.calls) == 1
    assert deliveries(s.ws) == [("voice", "sending", "sending")]  # in doubt


def test_kill_9_after_twilio_took_the_call_its_callback_settles_it_and_nothing_is_sent_twice(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 2")
    _killed_between_twilio_and_the_record(s)
    with s.serving():
        [call] = s.play(LATE, "09:05")
    assert all(answer in (200, 204) for answer in call["answers"])
    assert "Hola Lucía Gómez" in call["heard"][0]  # the TwiML kept before the call
    assert deliveries(s.ws) == [("voice", "sent", "delivered")]
    d = t.deliveries.c
    with s.ws.engine.connect() as conn:
        provider = conn.execute(select(d.provider_id)).scalar_one()
    assert provider == f"twilio:{call['sid']}"
    assert s.dispatch(LATE, "11:00") == 1  # the row taken over: already reached
    assert len(s.tw.calls) == 1
    assert mails_to(s.smtp, "lucia@example.com") == []
    assert [r.status for r in rows(s.ws, t.outbox, "status")] == ["sent"]
    chain_is_sound(s.ws)


def test_kill_9_and_no_report_the_call_in_doubt_goes_by_email_never_called_twice(
    shop: Callable[..., Shop],
) -> None:
    s = shop("voice, email", "attempts: 2")
    _killed_between_twilio_and_the_record(s)
    assert s.dispatch(LATE, "09:30") == 1  # taken over: the call is in doubt, not made again
    assert len(s.tw.calls) == 1 and mails_to(s.smtp, "lucia@example.com") == []
    assert deliveries(s.ws) == [("voice", "sending", "sending")]
    assert s.dispatch(LATE, "10:05") == 1  # an hour without a report: the next channel
    assert len(s.tw.calls) == 1
    assert len(mails_to(s.smtp, "lucia@example.com")) == 1
    assert deliveries(s.ws) == [
        ("voice", "sending", "technical_failure"),
        ("email", "sent", "sent"),
    ]
    assert s.dispatch(LATE, "12:00") == 0
    assert len(s.tw.calls) == 1
    chain_is_sound(s.ws)
