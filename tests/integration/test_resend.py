"""Resending a claim's message: the message kept as sent, a new delivery through the outbox,
recorded as a resend; refusals; and a crash mid-resend."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from cobro.domain.calendar import send_instant
from cobro.engine.resend import ResendError, resend_claim, resend_outcome
from cobro.engine.runs import dispatch_due, dispatch_rows, run_day
from cobro.evidence.history import claim_history
from cobro.evidence.verify import verify_evidence
from cobro.store import tables as t
from cobro.workspace import Workspace, open_workspace
from fakes.twilio import FakeTwilio
from local_smtp import LocalSMTP

from .conftest import RecordingHandler, SmtpServer
from .support import business, d, deliveries, invoice, load, outbox, parse
from .test_channels import EMAIL_COST, PHONE, channels_yaml

DAY = d("2025-03-10")  # phase 01 of b2b for F-1, due 2025-03-03: debtor and sales rep
LATER = datetime(2025, 3, 12, 15, 30, tzinfo=UTC)


def claimed(ws: Workspace) -> Workspace:
    """Acme, with a sales rep, sent phase 01 on DAY (two messages)."""
    business(ws, "C1", "ap@acme.example", "Acme Industrial")
    load(
        ws,
        "contacts",
        {
            "external_id": "K1",
            "customer": "C1",
            "name": "Rep",
            "email": "rep@demo.example",
            "roles": "sales_rep",
        },
    )
    invoice(ws, "F-1", "C1", d("2025-03-03"), "1200.00")
    run_day(ws, DAY)
    return ws


def claim_id(ws: Workspace) -> int:
    (row,) = [r for r in outbox(ws) if r.step == "b2b/01"]
    return int(row.id)


def resend(ws: Workspace, claim: int, to: str | None = None, at: datetime = LATER) -> int:
    with ws.engine.begin() as conn:
        row = resend_claim(conn, ws.config, ws.company_id, claim, to=to, at=at)
    dispatch_rows(ws, frozenset({row}), at)
    return row


def split(data: bytes) -> tuple[dict[str, str], bytes]:
    """A message's header fields (unfolded) and its body bytes."""
    head, _, body = data.partition(b"\r\n\r\n")
    msg = parse(head + b"\r\n\r\n")
    return {k.lower(): str(v) for k, v in msg.items()}, body


def evidence_ok(ws: Workspace) -> None:
    with ws.engine.connect() as conn:
        report = verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)
    assert report.ok, report.to_json()


def test_a_resend_sends_the_message_as_kept_again_as_new_deliveries_of_a_resend(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    ws = claimed(smtp_ws)
    claim = claim_id(ws)
    first = {r.rcpt_tos[0]: r.data for r in smtp_server.received}
    assert set(first) == {"ap@acme.example", "rep@demo.example"}
    smtp_server.received.clear()

    row = resend(ws, claim)

    again = {r.rcpt_tos[0]: r.data for r in smtp_server.received}
    assert set(again) == set(first)
    for rcpt, data in again.items():
        head, body = split(data)
        old_head, old_body = split(first[rcpt])
        assert body == old_body  # the same text, HTML, logo and attachments, byte for byte
        assert head["subject"] == old_head["subject"] and head["to"] == old_head["to"]
        assert head["message-id"] != old_head["message-id"]
        assert head["x-cobro-resend-of"] == old_head["message-id"]
        assert head["x-cobro-claim"] == f"demo/{row}/resend"
        assert parse(data)["Date"].datetime == LATER
    # New deliveries of a new outbox row, each a resend of the original delivery.
    originals = {x.recipient: x for x in deliveries(ws) if x.outbox_id == claim}
    resent = {x.recipient: x for x in deliveries(ws) if x.outbox_id == row}
    assert {x.status for x in resent.values()} == {"sent"}
    for rcpt, x in resent.items():
        assert x.body_sha256 == originals[rcpt].body_sha256
        assert x.at == LATER
    with ws.engine.connect() as conn:
        history = claim_history(conn, ws.config, ws.company_id, "C1")
    by_id = {c.outbox_id: c for c in history}
    assert by_id[row].resend_of == claim and by_id[row].status == "sent"
    assert by_id[row].phase_name == f"Resend of claim {claim}"
    assert {x.recipient: x.resend_of for x in by_id[row].deliveries} == {
        rcpt: originals[rcpt].id for rcpt in resent
    }
    assert all(x.resend_of is None for x in by_id[claim].deliveries)
    evidence_ok(ws)
    # The pay link resent is the one issued when the claim was first sent (stamped with
    # the run's send instant): it stops working link_max_age_days (30) after that, which
    # the outcome tells.
    with ws.engine.connect() as conn:
        outcome = resend_outcome(conn, ws.config, ws.company_id, ws.secret, claim, row)
    signed = outcome.link_signed_at
    company = ws.config.company
    assert signed == send_instant(DAY, company.send_time, company.timezone)
    assert outcome.link_expired(ws.config, signed + timedelta(days=29)) is None
    assert outcome.link_expired(ws.config, signed + timedelta(days=31)) == signed + timedelta(
        days=30
    )
    assert [(x["recipient"], x["status"]) for x in outcome.deliveries] == [
        (x.recipient, "sent") for x in sorted(resent.values(), key=lambda x: x.id)
    ]
    with ws.engine.connect() as conn:
        kinds = [
            (e.kind, e.ref)
            for e in conn.execute(select(t.evidence).order_by(t.evidence.c.seq))
            if e.ref == f"outbox:{row}"
        ]
    assert kinds.count(("delivery", f"outbox:{row}")) == 2
    assert kinds.count(("claim.sent", f"outbox:{row}")) == 1


def test_two_resends_are_two_deliveries(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    ws = claimed(smtp_ws)
    claim = claim_id(ws)
    smtp_server.received.clear()
    one = resend(ws, claim, to="ap@acme.example")
    two = resend(ws, claim, to="ap@acme.example")
    assert one != two
    assert [r.rcpt_tos for r in smtp_server.received] == [("ap@acme.example",)] * 2
    ids = {str(parse(r.data)["Message-ID"]) for r in smtp_server.received}
    assert len(ids) == 2
    steps = [r.step for r in outbox(ws) if r.id in (one, two)]
    assert steps == [f"resend/{claim}/1", f"resend/{claim}/2"]
    evidence_ok(ws)


def test_a_resend_to_another_address_is_the_debtors_message_readdressed(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    ws = claimed(smtp_ws)
    claim = claim_id(ws)
    debtor_first = next(r for r in smtp_server.received if r.rcpt_tos == ("ap@acme.example",))
    smtp_server.received.clear()

    row = resend(ws, claim, to="  Tesoreria@Acme.example ")

    (got,) = smtp_server.received
    assert got.rcpt_tos == ("Tesoreria@acme.example",)
    head, body = split(got.data)
    assert head["to"] == "Tesoreria@acme.example"
    assert body == split(debtor_first.data)[1]  # the debtor's message, not the staff copy
    (x,) = [x for x in deliveries(ws) if x.outbox_id == row]
    assert (x.recipient, x.recipient_role, x.status) == ("Tesoreria@acme.example", "debtor", "sent")
    evidence_ok(ws)


@pytest.mark.parametrize(
    ("to", "problem"),
    [
        ("ap@acme.example\r\nBcc: all@evil.example", "line break or control character"),
        ("ap@acme.example\nBcc: all@evil.example", "line break or control character"),
        ("not an address", "neither an email address nor a phone number"),
        ("a@b@c.example", "not a valid email address"),
        ("+34 600 000 00", "not a valid phone number"),
        ("+34 600 111 222", r"was not sent to the debtor by sms \(it went by email\)"),
    ],
)
def test_a_bad_address_is_refused_and_nothing_is_planned(
    smtp_ws: Workspace, smtp_server: SmtpServer, to: str, problem: str
) -> None:
    ws = claimed(smtp_ws)
    rows, claim = len(outbox(ws)), claim_id(ws)
    with pytest.raises(ResendError, match=problem), ws.engine.begin() as conn:
        resend_claim(conn, ws.config, ws.company_id, claim, to=to, at=LATER)
    assert len(outbox(ws)) == rows


def test_unknown_claims_claims_of_another_company_and_unsent_claims_are_refused(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    ws = claimed(smtp_ws)
    claim = claim_id(ws)
    business(ws, "C2", "c2@acme.example")
    invoice(ws, "F-2", "C2", d("2025-03-20"), "10.00")
    run_day(ws, d("2025-03-13"), as_of=datetime(2025, 3, 13, 6, 0, tzinfo=UTC))  # not yet sent
    (planned,) = [r for r in outbox(ws) if r.status == "planned"]
    with ws.engine.begin() as conn:
        for company, bad, problem in (
            (ws.company_id, 999_999, "no claim 999999"),
            (ws.company_id + 1, claim, f"no claim {claim}"),
            (ws.company_id, planned.id, f"claim {planned.id} was never sent .it is planned."),
        ):
            with pytest.raises(ResendError, match=problem):
                resend_claim(conn, ws.config, company, bad, to=None, at=LATER)


# --------------------------------------------------------------------------- crashes


def _resend_and_die(root: str, url: str, claim: int, die_at: str) -> None:
    """``cobro resend CLAIM`` in a child process killed at ``die_at``: just before the
    SMTP server's 250 (``smtp``), or once the delivery is recorded, when the row's outcome
    is about to be (``outcome``)."""
    ws = open_workspace(root, url)  # type: ignore[arg-type]

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        outcome = statement.lstrip().upper().startswith("UPDATE OUTBOX SET STATUS")
        if die_at == "outcome" and outcome and "finished_at" in statement:
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(ws.engine, "before_cursor_execute", hook)
    resend(ws, claim)
    os._exit(0)


class Killing(RecordingHandler):
    """Records mail; kills the process ``victim`` when a message has arrived, before its
    250 reply."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: int | None = None

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def killing_server() -> Iterator[SmtpServer]:
    handler = Killing()
    controller = LocalSMTP(handler)
    controller.start()
    try:
        yield SmtpServer(controller.hostname, controller.port, handler)
    finally:
        controller.stop()


@pytest.mark.parametrize("die_at", ["smtp", "outcome"])
def test_a_crash_mid_resend_leaves_one_outbox_row_that_the_next_dispatch_finishes_once(
    make_ws: Callable[..., Workspace], killing_server: SmtpServer, die_at: str
) -> None:
    smtp_server = killing_server
    ws = claimed(make_ws(replace=smtp_server.replace))
    claim = claim_id(ws)
    (first,) = [r for r in smtp_server.received if r.rcpt_tos == ("ap@acme.example",)]
    smtp_server.received.clear()
    fork = multiprocessing.get_context("fork")
    url = ws.engine.url.render_as_string(hide_password=False)
    child = fork.Process(target=_resend_and_die, args=(str(ws.root), url, claim, die_at))
    child.start()
    assert isinstance(smtp_server.handler, Killing)
    if die_at == "smtp":
        smtp_server.handler.victim = child.pid
    child.join(60)
    smtp_server.handler.victim = None
    assert child.exitcode == -signal.SIGKILL
    (row,) = [r for r in outbox(ws) if r.step.startswith("resend/")]
    assert row.status == "sending"  # the crash left the row half done

    dispatch_due(ws, datetime.now(UTC))  # the operator's next dispatch (or the watcher)
    dispatch_due(ws, datetime.now(UTC) + timedelta(minutes=1))

    (row,) = [r for r in outbox(ws) if r.step.startswith("resend/")]
    assert row.status == "sent"
    mine = [x for x in deliveries(ws) if x.outbox_id == row.id]
    assert {(x.recipient, x.status) for x in mine} == {
        ("ap@acme.example", "sent"),
        ("rep@demo.example", "sent"),
    }
    assert len(mine) == 2  # one delivery per recipient, whatever the crash
    got = [r for r in smtp_server.received if r.rcpt_tos == ("ap@acme.example",)]
    if die_at == "outcome":  # recorded before the crash: not sent again
        assert len(got) == 1
    else:  # arrived but never acknowledged: sent again under the same Message-ID
        assert len({str(parse(r.data)["Message-ID"]) for r in got}) == 1
    assert split(got[0].data)[1] == split(first.data)[1]
    evidence_ok(ws)


@pytest.fixture
def sms_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        yield tw


def test_a_claim_sent_by_sms_is_resent_as_the_same_text(
    make_ws: Callable[..., Workspace], sms_api: FakeTwilio, smtp_server: SmtpServer
) -> None:
    twilio = sms_api
    ws = make_ws(
        replace={
            **smtp_server.replace,
            EMAIL_COST: channels_yaml(twilio, False),
            "        template: reminder_due\n": "        template: reminder_due\n"
            "        channels: [sms, email]\n",
        }
    )
    load(ws, "customers", {"external_id": "P1", "name": "Ana", "kind": "person", "phone": PHONE})
    invoice(ws, "F1", "P1", d("2026-05-10"), "120.50")
    run_day(ws, d("2026-05-10"))
    [sms] = twilio.messages
    (row,) = outbox(ws)

    resend(ws, row.id)
    resend(ws, row.id, to="699 000 111")  # a national number: read in the company's country
    with pytest.raises(ResendError, match="was not sent to the debtor by email"):
        resend(ws, row.id, to="ana@example.com")

    assert [(m["to"], m["body"]) for m in twilio.messages[1:]] == [
        (PHONE, sms["body"]),
        ("+34699000111", sms["body"]),
    ]
    assert smtp_server.received == []
    evidence_ok(ws)
