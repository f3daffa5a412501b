"""Channels that know what happened: Twilio's status callbacks and inbound SMS reach a real
HTTP server running the app, signed as Twilio signs them; what they say moves each
delivery on, suppresses numbers, opts debtors out and sends today's claim on the next
channel of its phase. Twilio is a local server driven through the official client."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from cobro.engine.runs import dispatch_due, run_day
from cobro.engine.tasks import list_tasks
from cobro.evidence.history import claim_history
from cobro.evidence.verify import verify_evidence
from cobro.store import tables as t
from cobro.web.app import create_app
from cobro.workspace import Workspace, open_workspace
from fakes.twilio import FakeTwilio, twilio_signature

from .conftest import SmtpServer
from .portal.helpers import Clock
from .serving import listening, origin, serving
from .support import load
from .test_channels import (
    EMAIL_COST,
    PHONE,
    UNPAID_CHANNELS,
    UPCOMING_CHANNELS,
    at,
    channels_yaml,
    mails_to,
    subscribe,
)

REMIND_DAY = date(2026, 3, 18)  # the reminder of the charge of 2026-03-20 (lead 2 days)


@dataclass
class Gym:
    ws: Workspace
    tw: FakeTwilio
    smtp: SmtpServer
    sock: socket.socket
    clock: Clock

    @property
    def origin(self) -> str:
        return origin(self.sock)

    @property
    def status_url(self) -> str:
        return f"{self.origin}/callbacks/gym/twilio/status"

    @property
    def inbound_url(self) -> str:
        return f"{self.origin}/callbacks/gym/twilio/inbound"

    def serving(self) -> Any:
        return serving(create_app(self.ws, clock=self.clock), self.sock)

    def remind(self, day: date = REMIND_DAY) -> None:
        run_day(self.ws, day, as_of=at(day.isoformat(), "09:00"))


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        yield tw


@pytest.fixture
def gym(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> Callable[..., Gym]:
    """A gym whose upcoming-charge reminders go on ``channels``; ``cobro serve`` is to be
    reached at a local port (``company.public_url``)."""

    def make(
        channels: str = "sms, email", extra: str = "", replace: dict[str, str] | None = None
    ) -> Gym:
        sock = listening()
        ws = make_ws(
            "gym",
            replace={
                **smtp_server.replace,
                "  id: demo ": "  id: gym ",
                "  portal_url: https://pagos.demo.example/portal": (
                    f"  portal_url: https://pagos.demo.example/portal\n  public_url: {origin(sock)}"
                ),
                EMAIL_COST: EMAIL_COST + extra + channels_yaml(twilio, False)[len(EMAIL_COST) :],
                UPCOMING_CHANNELS: f"    channels: [{channels}]\n",
                UNPAID_CHANNELS: UNPAID_CHANNELS,
                **(replace or {}),
            },
        )
        load(
            ws,
            "customers",
            {
                "external_id": "M1",
                "name": "Lucía Gómez",
                "email": "lucia@example.com",
                "phone": "612 345 678",
                "language": "es",
            },
        )
        subscribe(ws)
        return Gym(ws, twilio, smtp_server, sock, Clock(at(REMIND_DAY.isoformat(), "09:05")))

    return make


def rows(ws: Workspace, table: Any, *columns: str) -> list[Any]:
    with ws.engine.connect() as conn:
        cols = [table.c[c] for c in columns]
        return list(
            conn.execute(
                select(*cols).where(table.c.company_id == ws.company_id).order_by(table.c.id)
            )
        )


def member_deliveries(ws: Workspace) -> list[Any]:
    d = t.deliveries.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(d.id, d.outbox_id, d.channel, d.recipient, d.status, d.state, d.ref)
                .add_columns(d.provider_id)
                .where(d.company_id == ws.company_id, d.recipient_role != "admin")
                .order_by(d.id)
            )
        )


def chain_is_sound(ws: Workspace) -> None:
    with ws.engine.connect() as conn:
        report = verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)
    assert report.ok, [*report.problems, *(str(p) for p in report.records)]


# --------------------------------------------------------------------------- status


def test_status_callbacks_signed_by_twilio_move_the_sms_to_delivered(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms, email")
    with g.serving():
        g.remind()
        [sms] = g.tw.messages
        assert sms["status_callback"] is not None
        assert sms["status_callback"].startswith(g.status_url + "?ref=")
        [row] = member_deliveries(g.ws)
        assert (row.channel, row.status, row.state) == ("sms", "sent", "sent")
        answers = [c["answer"] for c in g.tw.send_callbacks()]
    assert answers == [204, 204]
    [row] = member_deliveries(g.ws)
    assert (row.status, row.state) == ("sent", "delivered")
    assert row.provider_id == f"twilio:{sms['sid']}"
    events = rows(g.ws, t.delivery_events, "delivery_id", "state", "source")
    assert [(e.delivery_id, e.state, e.source) for e in events] == [(row.id, "delivered", "twilio")]
    with g.ws.engine.connect() as conn:
        [claim] = [c for c in claim_history(conn, g.ws.config, g.ws.company_id, "M1")]
    assert claim.deliveries[0].state == "delivered"
    assert any(e.kind == "delivery.state" and "delivered" in e.text for e in claim.events)
    chain_is_sound(g.ws)


def test_a_repeated_or_late_callback_changes_nothing(gym: Callable[..., Gym]) -> None:
    g = gym("sms, email")
    with g.serving():
        g.remind()
        sent, delivered = g.tw.send_callbacks()
        # Twilio retries a callback; a "sent" arriving after "delivered" is stale.
        assert g.tw.post_signed(delivered["url"], delivered["params"]) == 204
        assert g.tw.post_signed(sent["url"], sent["params"]) == 204
    [row] = member_deliveries(g.ws)
    assert row.state == "delivered"
    assert len(rows(g.ws, t.delivery_events, "id")) == 1
    chain_is_sound(g.ws)


def test_unsigned_or_wrongly_signed_callbacks_are_refused_and_change_nothing(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms, email")
    g.tw.outcomes[PHONE] = "undelivered"
    with g.serving():
        g.remind()
        _sent, failed = g.tw.callbacks
        url, params = failed["url"], failed["params"]
        forged = twilio_signature("not-the-token", url, params)
        assert g.tw.post_signed(url, params, signature="") == 403
        assert g.tw.post_signed(url, params, signature=forged) == 403
        # signed for other parameters (a replayed signature on a changed status)
        assert g.tw.post_signed(url, {**params, "ErrorCode": "30003"}, failed["signature"]) == 403
        # signed for another company's path
        other = url.replace("/callbacks/gym/", "/callbacks/other/")
        assert g.tw.post_signed(other, params) == 404
    [row] = member_deliveries(g.ws)
    assert (row.status, row.state) == ("sent", "sent")
    assert rows(g.ws, t.delivery_events, "id") == []
    assert rows(g.ws, t.suppressions, "id") == []
    assert [r.status for r in rows(g.ws, t.outbox, "status")] == ["sent"]


# --------------------------------------------------------------------------- next channel


def test_an_undelivered_sms_sends_todays_claim_by_email_the_same_day(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms, email")
    g.tw.outcomes[PHONE] = "undelivered"
    with g.serving():
        g.remind()
        assert mails_to(g.smtp, "lucia@example.com") == []
        answers = [c["answer"] for c in g.tw.send_callbacks()]
    assert answers == [204, 204]
    [sms] = member_deliveries(g.ws)
    assert sms.state == "permanent_failure"
    [suppressed] = rows(g.ws, t.suppressions, "channel", "address", "reason", "suppressed_at")
    assert (suppressed.channel, suppressed.address, suppressed.reason) == (
        "sms",
        PHONE,
        "undelivered",
    )
    [claim] = [r for r in rows(g.ws, t.outbox, "id", "status", "step") if r.step != "admin"]
    assert claim.status == "planned"  # due again at once, not tomorrow

    report = dispatch_due(g.ws, at(REMIND_DAY.isoformat(), "09:10"))
    assert report.sent == 1
    [mail] = mails_to(g.smtp, "lucia@example.com")
    assert "39,90" in mail["Subject"]
    assert len(g.tw.messages) == 1  # the SMS is not tried again
    after = member_deliveries(g.ws)
    assert [(x.channel, x.state) for x in after] == [
        ("sms", "permanent_failure"),
        ("email", "sent"),
    ]
    chain_is_sound(g.ws)


def test_an_sms_undelivered_on_a_later_day_only_steers_the_next_message(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms, email")
    g.tw.outcomes[PHONE] = "undelivered"
    g.clock.now = datetime(2026, 3, 19, 8, 0, tzinfo=UTC)  # reported the next day
    with g.serving():
        g.remind()
        g.tw.send_callbacks()
    assert [r.status for r in rows(g.ws, t.outbox, "status")] == ["sent"]
    assert mails_to(g.smtp, "lucia@example.com") == []
    assert [s.address for s in rows(g.ws, t.suppressions, "address")] == [PHONE]
    chain_is_sound(g.ws)


# --------------------------------------------------------------------------- opt-outs


def test_a_stop_reply_opts_the_debtor_out_of_sms(gym: Callable[..., Gym]) -> None:
    g = gym("sms, email")
    with g.serving():
        assert g.tw.reply("+34699999999", "BAJA", g.inbound_url) == 200  # nobody's number
        assert g.tw.reply(PHONE, "hola", g.inbound_url) == 200  # not a stop word
        assert g.tw.reply(PHONE, "baja", g.inbound_url, signature_ok=False) == 403
        assert rows(g.ws, t.optouts, "id") == []
        assert g.tw.reply(PHONE, " Baja. ", g.inbound_url) == 200
        g.remind()
    [optout] = rows(g.ws, t.optouts, "channel", "source")
    assert (optout.channel, optout.source) == ("sms", "sms_reply")
    assert g.tw.messages == []  # no more SMS
    [mail] = mails_to(g.smtp, "lucia@example.com")
    assert "39,90" in mail["Subject"]
    chain_is_sound(g.ws)


def test_every_channel_exhausted_opens_a_task_never_a_silent_drop(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms")
    with g.serving():
        assert g.tw.reply(PHONE, "STOP", g.inbound_url) == 200
        g.remind()
    assert g.tw.messages == []
    [claim] = [r for r in rows(g.ws, t.outbox, "status", "reason", "step") if r.step != "admin"]
    assert claim.status == "failed"
    assert claim.reason.startswith("no channel reaches this debtor: sms opted out")
    with g.ws.engine.connect() as conn:
        [task] = list_tasks(conn, g.ws.company_id, customer="M1")
    assert task.action.startswith("no_channel/")
    assert task.message.startswith("No channel reaches this debtor")
    chain_is_sound(g.ws)


# --------------------------------------------------------------------------- kill -9


def _dispatch_child(root: str, url: str, as_of: datetime) -> None:
    ws = open_workspace(root, url)  # type: ignore[arg-type]
    dispatch_due(ws, as_of)
    os._exit(0)


def test_kill_9_between_twilio_accepting_and_the_record_sends_nothing_twice(
    gym: Callable[..., Gym],
) -> None:
    g = gym("sms, email")
    run_day(g.ws, REMIND_DAY, as_of=at(REMIND_DAY.isoformat(), "06:00"))  # planned only
    fork = multiprocessing.get_context("fork")
    url = g.ws.engine.url.render_as_string(hide_password=False)
    child = fork.Process(
        target=_dispatch_child,
        args=(str(g.ws.root), url, at(REMIND_DAY.isoformat(), "09:00")),
    )
    # Twilio has taken the message; the dispatcher dies before it hears the answer.
    g.tw.on_message = lambda count: os.kill(child.pid or 0, signal.SIGKILL)
    child.start()
    child.join(60)
    g.tw.on_message = None
    assert child.exitcode == -signal.SIGKILL
    assert len(g.tw.messages) == 1
    [row] = member_deliveries(g.ws)
    assert (row.status, row.state) == ("sending", "sending")  # in doubt

    with g.serving():
        answers = [c["answer"] for c in g.tw.send_callbacks()]
    assert answers == [204, 204]
    [row] = member_deliveries(g.ws)
    assert (row.status, row.state) == ("sent", "delivered")
    assert row.provider_id == f"twilio:{g.tw.messages[0]['sid']}"

    # The operator runs dispatch again once the lease is over: nothing is sent twice.
    # (the killed holder is a process of this host that is gone: its rows are free)
    report = dispatch_due(g.ws, at(REMIND_DAY.isoformat(), "10:00"))
    assert len(g.tw.messages) == 1
    assert mails_to(g.smtp, "lucia@example.com") == []
    assert report.sent == 1
    assert [r.status for r in rows(g.ws, t.outbox, "status")] == ["sent"]
    chain_is_sound(g.ws)


# --------------------------------------------------------------------------- unsubscribe


def test_one_click_unsubscribe_stops_reminders_by_email_but_not_a_final_notice(
    gym: Callable[..., Gym],
) -> None:
    from email.parser import BytesParser
    from email.policy import default

    import httpx

    from .support import invoice

    g = gym(
        "email",
        extra="    unsubscribe: true\n",
        replace={
            "        template: reminder_after\n": (
                "        template: reminder_after\n        unsubscribable: false\n"
            )
        },
    )
    invoice(g.ws, "F1", "M1", date(2025, 3, 6), "80.00")
    day = date(2025, 3, 3)  # the consumer policy's "before" reminder
    run_day(g.ws, day, as_of=at(day.isoformat(), "09:00"))
    [mail] = [
        BytesParser(policy=default).parsebytes(r.data)
        for r in g.smtp.received
        if "F1" in r.data.decode("utf-8", "replace")
    ]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(mail["List-Unsubscribe"]).strip("<>")
    assert url.startswith(f"{g.origin}/unsubscribe/")
    with g.serving():
        assert httpx.get(url).status_code == 200  # a GET (a mail scanner) changes nothing
        assert rows(g.ws, t.optouts, "id") == []
        assert httpx.post(url[:-3] + "xyz", data={}).status_code == 404  # altered token
        answer = httpx.post(url, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    [optout] = rows(g.ws, t.optouts, "channel", "source")
    assert (optout.channel, optout.source) == ("email", "unsubscribe")
    before = len(g.smtp.received)
    due = date(2025, 3, 6)
    run_day(g.ws, due, as_of=at(due.isoformat(), "09:00"))
    assert len(g.smtp.received) == before  # the "due" reminder is not emailed
    late = date(2025, 3, 11)  # "after": a notice the debtor cannot opt out of
    run_day(g.ws, late, as_of=at(late.isoformat(), "09:00"))
    [notice] = [BytesParser(policy=default).parsebytes(r.data) for r in g.smtp.received[before:]]
    assert notice["To"].addresses[0].addr_spec == "lucia@example.com"
    assert notice["List-Unsubscribe"] is None
    chain_is_sound(g.ws)


def test_an_import_column_records_opt_outs_and_names_a_wrong_channel(
    gym: Callable[..., Gym],
) -> None:
    from cobro.intake.importer import import_records

    from .support import LOADED

    g = gym("sms, email")
    load(g.ws, "customers", {"external_id": "M1", "name": "Lucía Gómez", "optouts": "sms"})
    report = import_records(
        g.ws,
        "customers",
        [(2, {"external_id": "M2", "name": "John Smith", "optouts": "sms, fax"})],
        LOADED,
        "test",
    )
    [problem] = report.rejected
    assert "optouts" in str(problem) and "'fax'" in str(problem)
    [optout] = rows(g.ws, t.optouts, "channel", "source", "detail")
    assert (optout.channel, optout.source) == ("sms", "import")
    # A file that no longer lists it does not undo it (a STOP reply stays a STOP).
    load(g.ws, "customers", {"external_id": "M1", "name": "Lucía Gómez", "optouts": ""})
    assert len(rows(g.ws, t.optouts, "id")) == 1
    with g.serving():
        g.remind()
    assert g.tw.messages == []
    chain_is_sound(g.ws)
