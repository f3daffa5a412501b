"""Outgoing webhooks against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL:
each event type emitted where it happens, signatures checked with the ``standardwebhooks``
package, retries with back-off (time moves through the instant dispatch is given), kill -9
of the sender, and one company's events never reaching another's endpoints."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks import WebhookVerificationError

from cobro.channels.webhook import WebhookChannel
from cobro.domain.calendar import send_instant
from cobro.engine.responses import Client, add_promise, open_dispute, record_view, resolve_dispute
from cobro.engine.runs import dispatch_due, email_channel, run_day
from cobro.engine.webhooks import (
    EVENT_TYPES,
    TICKET,
    Delivery,
    Event,
    WebhookError,
    add_endpoint,
    emit,
    find_endpoint,
    list_deliveries,
    message_bounced,
    redeliver,
    remove_endpoint,
    set_enabled,
)
from cobro.evidence.chain import verify_chain
from cobro.evidence.history import claim_history
from cobro.evidence.records import check_records
from cobro.store import tables as t
from cobro.workspace import Workspace, open_workspace, utcnow
from fakes.webhooks import Received, WebhookReceiver

from .support import business, d, invoice, load, local, outbox

DAY = d("2025-03-03")  # phase 00 of b2b for invoices due 2025-03-10
# Phase 00 blocks the account (released at the next run: nothing is overdue yet) and asks
# the helpdesk endpoint for a ticket.
PHASE_00 = "        template: b2b_00\n        mode: full\n"
TICKETING = {
    PHASE_00: PHASE_00 + "        block_account: true\n        webhook: helpdesk\n",
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as found:
        yield found


@pytest.fixture
def helpdesk() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as found:
        yield found


def add(ws: Workspace, url: str, name: str = "hooks", events: str | None = None) -> str:
    """Add an endpoint; its secret."""
    with ws.engine.begin() as conn:
        return add_endpoint(conn, ws.company_id, url, utcnow(), name=name, events=events)[1]


def deliveries(ws: Workspace, **filters: Any) -> list[Delivery]:
    with ws.engine.connect() as conn:
        return list_deliveries(conn, ws.company_id, **filters)


def customer_id(ws: Workspace, external_id: str) -> int:
    c = t.customers.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(c.id).where(c.company_id == ws.company_id, c.external_id == external_id)
            ).scalar_one()
        )


def item_id(ws: Workspace, number: str) -> int:
    r = t.receivables.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(r.id).where(r.company_id == ws.company_id, r.number == number)
            ).scalar_one()
        )


def dispute(ws: Workspace, customer: str, number: str, at: datetime) -> int:
    debtor, item = customer_id(ws, customer), item_id(ws, number)
    with ws.engine.begin() as conn:
        return open_dispute(conn, ws.company_id, debtor, item, "not ordered", at, source="staff")


def webhook_rows(ws: Workspace) -> int:
    o = t.outbox.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(o.company_id == ws.company_id, o.step.like("webhook/%"))
            ).scalar_one()
        )


def a_debtor_disputing(ws: Workspace, at: datetime) -> None:
    """B1 owes F-1 and disputes it at ``at``: one ``dispute.opened`` event."""
    business(ws, "B1", "ap@b1.example", "Atlantic Tools")
    invoice(ws, "F-1", "B1", d("2025-03-01"), "500.00")
    dispute(ws, "B1", "F-1", at)


# --------------------------------------------------------------------------- signing


def test_a_claim_sent_is_posted_signed_and_the_receiver_verifies_it(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="claim.sent")
    business(ws, "B1", "ap@b1.example", "Atlantic Tools")
    invoice(ws, "F-1", "B1", d("2025-03-10"), "1250.50")

    report = run_day(ws, DAY)

    assert report.by_channel == {"email": 1, "webhook": 1}
    (got,) = receiver.received
    payload = got.verify(secret)
    claim = next(r for r in outbox(ws) if r.step == "b2b/00")
    assert payload == {
        "type": "claim.sent",
        "timestamp": send_instant(DAY, ws.config.company.send_time, "Europe/Madrid").isoformat(),
        "data": {
            "company": "demo",
            "customer": {"id": "B1", "name": "Atlantic Tools"},
            "claim": {
                "id": claim.id,
                "step": "b2b/00",
                "kind": "phase",
                "name": "Debt due in the next 7 days",
                "date": "2025-03-03",
                "items": [
                    {
                        "number": "F-1",
                        "due_on": "2025-03-10",
                        "balance": {"amount": "1250.50", "currency": "EUR"},
                    }
                ],
                "total": [{"amount": "1250.50", "currency": "EUR"}],
            },
        },
    }
    assert datetime.fromisoformat(payload["timestamp"]).utcoffset() == timedelta(0)
    assert got.headers["content-type"] == "application/json"
    assert got.webhook_id.startswith("msg_")
    # Another secret, or a body changed on the way, does not verify.
    with pytest.raises(WebhookVerificationError):
        Received(got.path, got.headers, got.body).verify(add(ws, receiver.url(), "other"))
    with pytest.raises(WebhookVerificationError):
        Received(got.path, got.headers, got.body.replace(b"1250.50", b"1.00")).verify(secret)
    (delivery,) = deliveries(ws)
    assert (delivery.endpoint, delivery.event, delivery.customer) == ("hooks", "claim.sent", "B1")
    assert (delivery.status, delivery.webhook_id) == ("sent", got.webhook_id)
    assert [(a.status_code, a.error) for a in delivery.attempts] == [(200, None)]
    # The claim keeps its evidence; the webhook post is not a claim.
    with ws.engine.connect() as conn:
        assert [c.step for c in claim_history(conn, ws.config, ws.company_id)] == ["b2b/00"]
        assert verify_chain(conn, ws.company_id).ok
        assert check_records(conn, ws.company_id) == []


# --------------------------------------------------------------------------- retries


def test_a_receiver_that_fails_twice_then_accepts_gets_exactly_one_accepted_delivery(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="dispute.opened")
    receiver.answer(500, 503)
    t0 = utcnow().replace(microsecond=0)
    a_debtor_disputing(ws, t0)

    first = dispatch_due(ws, t0)
    assert (first.sent, first.retrying, len(receiver.received)) == (0, 1, 1)
    assert dispatch_due(ws, t0 + timedelta(minutes=4)).retrying == 0  # not due yet
    assert len(receiver.received) == 1
    second = dispatch_due(ws, t0 + timedelta(minutes=5))  # 5 minutes after the first
    assert (second.sent, second.retrying, len(receiver.received)) == (0, 1, 2)
    assert dispatch_due(ws, t0 + timedelta(minutes=9)).retrying == 0  # waits 5 more
    third = dispatch_due(ws, t0 + timedelta(minutes=10))
    assert (third.sent, third.retrying, third.failed) == (1, 0, 0)
    assert dispatch_due(ws, t0 + timedelta(days=1)).sent == 0  # nothing left

    assert [r.status for r in receiver.received] == [500, 503, 200]
    assert len(receiver.accepted) == 1
    assert len({r.webhook_id for r in receiver.received}) == 1  # one delivery, retried
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.verify(secret)["type"] == "dispute.opened" for r in receiver.received)
    (delivery,) = deliveries(ws)
    assert delivery.status == "sent"
    assert [(a.attempt, a.at, a.status_code) for a in delivery.attempts] == [
        (1, t0, 500),
        (2, t0 + timedelta(minutes=5), 503),
        (3, t0 + timedelta(minutes=10), 200),
    ]
    assert [a.accepted for a in delivery.attempts] == [False, False, True]
    assert delivery.attempts[0].error == "HTTP 500: not now"


def test_a_delivery_failing_for_the_retry_budget_fails_and_can_be_posted_again(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="dispute.opened")
    receiver.answer(default=500)
    t0 = utcnow().replace(microsecond=0)
    a_debtor_disputing(ws, t0)

    assert dispatch_due(ws, t0).retrying == 1
    assert dispatch_due(ws, t0 + timedelta(hours=71)).retrying == 1
    gave_up = dispatch_due(ws, t0 + timedelta(hours=72))  # dispatch.retry_hours: 72

    assert (gave_up.failed, gave_up.retrying) == (1, 0)
    (failure,) = gave_up.failures
    assert (failure.customer, failure.customer_name) == ("B1", "Atlantic Tools")
    assert failure.reason == "still failing after 72 h: HTTP 500: not now"
    assert "webhook hooks (dispute.opened)" in str(failure)
    (delivery,) = deliveries(ws, status="failed")
    assert len(delivery.attempts) == 3
    assert dispatch_due(ws, t0 + timedelta(days=10)).failed == 0  # failed for good

    receiver.answer(default=200)
    t1 = t0 + timedelta(days=10)
    with ws.engine.begin() as conn:
        redeliver(conn, ws.company_id, delivery.id, t1)
    assert dispatch_due(ws, t1).sent == 1
    assert len({r.webhook_id for r in receiver.received}) == 1  # the same delivery
    assert receiver.received[-1].verify(secret)["type"] == "dispute.opened"
    assert deliveries(ws)[0].status == "sent"


def test_a_redirect_is_not_followed(ws: Workspace, receiver: WebhookReceiver) -> None:
    add(ws, receiver.url(), events="dispute.opened")
    t0 = utcnow().replace(microsecond=0)
    with WebhookReceiver() as elsewhere:
        stolen = elsewhere.url("/stolen")
        receiver.answer(302, Location=stolen)
        a_debtor_disputing(ws, t0)
        report = dispatch_due(ws, t0)
        assert elsewhere.received == []
    assert report.retrying == 1
    (delivery,) = deliveries(ws)
    (attempt,) = delivery.attempts
    assert attempt.status_code == 302
    assert attempt.error == f"HTTP 302: redirect to {stolen} not followed"


def test_an_endpoint_that_does_not_answer_in_time_is_retried(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="dispute.opened")
    t0 = utcnow().replace(microsecond=0)
    a_debtor_disputing(ws, t0)
    channels = {"email": email_channel(ws, t0), "webhook": WebhookChannel(timeout_s=0.3)}
    receiver.hold(1)
    try:
        first = dispatch_due(ws, t0, channels=channels)
    finally:
        receiver.release()
    assert first.retrying == 1
    (attempt,) = deliveries(ws)[0].attempts
    assert (attempt.status_code, attempt.error) == (None, "no answer within 0.3 s")
    assert dispatch_due(ws, t0 + timedelta(minutes=5), channels=channels).sent == 1
    assert receiver.received[-1].accepted and receiver.received[-1].verify(secret)


def test_an_endpoint_broken_in_the_database_fails_alone_without_showing_its_secret(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), "good", events="dispute.opened")
    add(ws, receiver.url("/broken"), "broken", events="dispute.opened")
    e = t.webhook_endpoints.c
    with ws.engine.begin() as conn:
        conn.execute(
            t.webhook_endpoints.update().where(e.name == "broken").values(secret="whsec_!!!!")
        )
    t0 = utcnow().replace(microsecond=0)
    a_debtor_disputing(ws, t0)

    report = dispatch_due(ws, t0)

    assert (report.sent, report.retrying) == (1, 1)
    (got,) = receiver.received
    assert got.path == "/hooks" and got.verify(secret)["type"] == "dispute.opened"
    (broken,) = deliveries(ws, endpoint="broken")
    assert broken.status == "planned"
    assert [a.error for a in broken.attempts] == ["cannot post: EmptyWebhookSecretError"]


# --------------------------------------------------------------------------- events


def test_every_event_type_is_emitted_where_it_happens(
    make_ws: Callable[..., Workspace],
    receiver: WebhookReceiver,
    helpdesk: WebhookReceiver,
) -> None:
    ws = make_ws(replace=TICKETING)
    secret = add(ws, receiver.url(), "everything")  # every event type
    desk = add(ws, helpdesk.url(), "helpdesk", events="task.created")
    business(ws, "B1", "ap@b1.example", "Atlantic Tools")
    invoice(ws, "F-1", "B1", d("2025-03-10"), "500.00")
    load(ws, "customers", {"external_id": "B2", "name": "No Address", "kind": "business"})
    invoice(ws, "G-1", "B2", d("2025-03-10"), "80.00")

    # DAY: B1's claim is sent (it blocks the account and asks the helpdesk for a ticket);
    # B2's cannot be: it fails, and a staff task is opened.
    first = run_day(ws, DAY)
    # claim.sent, account.blocked, claim.failed, task.created (to both), ticket.requested
    assert (first.sent, first.failed, first.blocked) == (1 + 6, 1, 1)
    assert first.by_channel == {"email": 1, "webhook": 6}
    claim = next(r for r in outbox(ws) if r.step == "b2b/00" and r.customer == "B1")
    b1, f1 = customer_id(ws, "B1"), item_id(ws, "F-1")
    with ws.engine.begin() as conn:
        record_view(
            conn,
            ws.company_id,
            b1,
            claim.id,
            "read",
            local(ws, DAY, "10:00"),
            Client("203.0.113.9", "Mozilla/5.0"),
        )
        d_id = open_dispute(
            conn,
            ws.company_id,
            b1,
            f1,
            "wrong price",
            local(ws, DAY, "11:00"),
            source="portal",
            outbox_id=claim.id,
        )
        resolve_dispute(conn, ws.company_id, d_id, False, "price agreed", local(ws, DAY, "12:00"))
        promise = add_promise(
            conn,
            ws.company_id,
            b1,
            [f1],
            DAY + timedelta(days=1),
            0,
            local(ws, DAY, "13:00"),
            today=DAY,
            max_days=30,
            source="staff",
        )
        email = conn.execute(
            select(t.deliveries.c.id).where(t.deliveries.c.outbox_id == claim.id)
        ).scalar_one()
        message_bounced(
            conn, ws.company_id, email, "550 5.1.1 no such mailbox", local(ws, DAY, "14:00")
        )
    # Two days on: nothing of B1's is overdue, so the account is released; the promise
    # (due the day before, no grace) is broken.
    run_day(ws, DAY + timedelta(days=2))

    bodies = [r.verify(secret) for r in receiver.received]
    by_type = {b["type"]: b["data"] for b in bodies}
    assert Counter(b["type"] for b in bodies) == {
        **dict.fromkeys(EVENT_TYPES, 1),
        "task.created": 2,  # B2's failed claim, and B1's dispute
    }
    assert all(b["data"]["company"] == "demo" for b in bodies)
    assert by_type["account.blocked"] == {
        "company": "demo",
        "customer": {"id": "B1", "name": "Atlantic Tools"},
        "by": {"step": "b2b/00"},
    }
    assert by_type["account.unblocked"]["reason"] == "paid"
    assert by_type["claim.failed"]["customer"]["id"] == "B2"
    assert by_type["claim.failed"]["reason"] == "the debtor has no email address"
    assert by_type["read.confirmed"]["claim"]["id"] == claim.id
    assert by_type["dispute.opened"]["dispute"] == {
        "id": d_id,
        "item": {"number": "F-1", "balance": {"amount": "500.00", "currency": "EUR"}},
        "reason": "wrong price",
        "source": "portal",
        "claim": claim.id,
        "attachment": None,
    }
    assert by_type["dispute.resolved"]["dispute"]["status"] == "rejected"
    assert by_type["promise.broken"]["promise"]["id"] == promise
    assert by_type["promise.broken"]["promise"]["unpaid"] == [
        {"number": "F-1", "balance": {"amount": "500.00", "currency": "EUR"}}
    ]
    assert by_type["message.bounced"]["delivery"]["id"] == email
    assert by_type["message.bounced"]["reason"] == "550 5.1.1 no such mailbox"
    assert by_type["message.bounced"]["kind"] == "hard"
    actions = sorted(b["data"]["task"]["action"] for b in bodies if b["type"] == "task.created")
    assert [a.split("/")[0] for a in actions] == ["delivery_failed", "dispute"]

    desk_bodies = [r.verify(desk) for r in helpdesk.received]
    assert sorted(b["type"] for b in desk_bodies) == sorted(
        [TICKET, "task.created", "task.created"]
    )
    ticket = next(b["data"] for b in desk_bodies if b["type"] == TICKET)
    assert ticket["customer"]["id"] == "B1" and ticket["claim"]["id"] == claim.id
    assert all(r.accepted for r in [*receiver.received, *helpdesk.received])
    # Webhook posts are neither claims nor evidence: the history and the chain hold.
    with ws.engine.connect() as conn:
        assert {c.step for c in claim_history(conn, ws.config, ws.company_id)} == {"b2b/00"}
        assert verify_chain(conn, ws.company_id).ok
        assert check_records(conn, ws.company_id) == []


def test_a_scheduled_task_action_asks_its_endpoint_for_a_ticket_per_debtor(
    make_ws: Callable[..., Workspace], helpdesk: WebhookReceiver
) -> None:
    action = (
        "actions:\n"
        "  - key: call-large-debtors\n"
        "    description: Call businesses with large overdue debt\n"
        "    type: task\n"
        "    days: [3]\n"
        "    segment: large_b2b_debt\n"
        "    message: Call the customer about the overdue debt\n"
        "    webhook: helpdesk\n"
    )
    ws = make_ws(replace={"default_policy: consumer\n": f"default_policy: consumer\n{action}"})
    secret = add(ws, helpdesk.url(), "helpdesk", events="claim.failed")
    business(ws, "B1", "ap@b1.example", "Big Debtor")
    invoice(ws, "F-1", "B1", d("2025-01-15"), "6000.00")

    report = run_day(ws, DAY)

    assert report.tasks == 1
    (got,) = helpdesk.received
    body = got.verify(secret)
    assert body["type"] == TICKET
    assert body["data"]["action"] == {
        "key": "call-large-debtors",
        "name": "Call businesses with large overdue debt",
    }
    assert body["data"]["task"]["message"] == "Call the customer about the overdue debt"
    assert body["data"]["customer"]["id"] == "B1"
    run_day(ws, DAY)  # the same day again: no second ticket
    assert len(helpdesk.received) == 1


def test_a_ticket_for_an_endpoint_that_does_not_exist_is_reported_and_the_claim_still_goes(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(replace=TICKETING)
    business(ws, "B1", "ap@b1.example", "Atlantic Tools")
    invoice(ws, "F-1", "B1", d("2025-03-10"), "500.00")

    report = run_day(ws, DAY)

    assert (report.sent, report.failed) == (1, 0)
    assert report.errors == (
        "B1 Atlantic Tools: b2b/00 of 2025-03-03: no webhook endpoint named 'helpdesk' (add it "
        "with `cobro webhooks add URL --name helpdesk`); no ticket was requested",
    )
    assert webhook_rows(ws) == 0


def test_an_event_emitted_twice_is_delivered_once(ws: Workspace, receiver: WebhookReceiver) -> None:
    add(ws, receiver.url(), events="task.created")
    business(ws, "B1", "ap@b1.example")
    at = utcnow()
    event = Event("task.created", "77", customer_id(ws, "B1"), at, {"task": {"id": 77}})
    for _ in range(2):
        with ws.engine.begin() as conn:
            emit(conn, ws.company_id, [event])
    assert webhook_rows(ws) == 1
    assert dispatch_due(ws, at).sent == 1
    assert len(receiver.received) == 1


def test_a_delivery_bounced_again_the_same_way_is_one_event_and_another_way_is_another(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="message.bounced")
    business(ws, "B1", "ap@b1.example")
    invoice(ws, "F-1", "B1", d("2025-03-10"), "500.00")
    run_day(ws, DAY)
    with ws.engine.connect() as conn:
        email = conn.execute(select(t.deliveries.c.id)).scalar_one()
    at = local(ws, DAY, "12:00")
    with ws.engine.begin() as conn:
        for kind in ("soft", "soft", "hard"):
            message_bounced(conn, ws.company_id, email, f"{kind} bounce", at, kind=kind)
        with pytest.raises(ValueError, match="bounce kind 'bad'"):
            message_bounced(conn, ws.company_id, email, "?", at, kind="bad")
        with pytest.raises(WebhookError, match="no delivery 999999"):
            message_bounced(conn, ws.company_id, 999999, "?", at)

    assert dispatch_due(ws, at).sent == 2
    kinds = sorted(r.verify(secret)["data"]["kind"] for r in receiver.received)
    assert kinds == ["hard", "soft"]


def test_disabled_and_removed_endpoints_get_nothing(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    add(ws, receiver.url(), events="dispute.opened")
    t0 = utcnow().replace(microsecond=0)
    a_debtor_disputing(ws, t0)
    with ws.engine.begin() as conn:
        set_enabled(conn, ws.company_id, "hooks", False)
    invoice(ws, "F-2", "B1", d("2025-03-01"), "20.00")
    dispute(ws, "B1", "F-2", t0)  # not enqueued: the endpoint is disabled

    report = dispatch_due(ws, t0)

    assert (report.sent, report.cancelled) == (0, 1)
    assert receiver.received == []
    assert [(x.status, x.reason) for x in deliveries(ws)] == [("cancelled", "endpoint disabled")]
    with ws.engine.begin() as conn:
        set_enabled(conn, ws.company_id, "hooks", True)
    invoice(ws, "F-3", "B1", d("2025-03-01"), "30.00")
    dispute(ws, "B1", "F-3", t0)
    with ws.engine.begin() as conn:
        assert remove_endpoint(conn, ws.company_id, "hooks", t0) == 1
        with pytest.raises(WebhookError, match="no webhook endpoint named 'hooks'"):
            find_endpoint(conn, ws.company_id, "hooks")
    assert dispatch_due(ws, t0).sent == 0
    assert receiver.received == []
    assert [(x.status, x.reason) for x in deliveries(ws)] == [
        ("cancelled", "endpoint removed"),
        ("cancelled", "endpoint disabled"),
    ]


# --------------------------------------------------------------------------- isolation


def test_another_companys_endpoints_never_receive_this_companys_events(
    make_ws: Callable[..., Workspace], receiver: WebhookReceiver
) -> None:
    first = make_ws("first")
    second = make_ws("second", replace={"  id: demo ": "  id: other "})
    assert first.company_id != second.company_id
    with WebhookReceiver() as theirs:
        mine_secret = add(first, receiver.url())  # every event type, both named "hooks"
        theirs_secret = add(second, theirs.url())
        t0 = utcnow().replace(microsecond=0)
        a_debtor_disputing(first, t0)  # B1 of the first company
        business(second, "B1", "ap@other.example", "Other B1")
        invoice(second, "F-1", "B1", d("2025-03-01"), "70.00")
        dispute(second, "B1", "F-1", t0)

        assert dispatch_due(first, t0).sent == 2  # dispute.opened, task.created
        assert theirs.received == []
        assert dispatch_due(second, t0).sent == 2
        mine = [r.verify(mine_secret) for r in receiver.received]
        others = [r.verify(theirs_secret) for r in theirs.received]
    assert {b["data"]["company"] for b in mine} == {"demo"}
    assert {b["data"]["customer"]["name"] for b in mine} == {"Atlantic Tools"}
    assert {b["data"]["company"] for b in others} == {"other"}
    assert {b["data"]["customer"]["name"] for b in others} == {"Other B1"}

    their_ids = {x.id for x in deliveries(second)}
    assert their_ids and not their_ids & {x.id for x in deliveries(first)}
    first_debtor, first_delivery = customer_id(first, "B1"), deliveries(first)[0].id
    with second.engine.begin() as conn:
        # Ids and debtors of the first company are unknown to the second.
        with pytest.raises(WebhookError, match="no webhook delivery"):
            redeliver(conn, second.company_id, first_delivery, t0)
        stray = Event("task.created", "1", first_debtor, t0, {})
        assert emit(conn, second.company_id, [stray]) == 0
        remove_endpoint(conn, second.company_id, "hooks", t0)
    with first.engine.connect() as conn:
        assert find_endpoint(conn, first.company_id, "hooks").url == receiver.url()


# --------------------------------------------------------------------------- kill -9


def _dispatch(root: str, url: str) -> None:
    """The killed process: ``cobro dispatch``, in-process."""
    ws = open_workspace(root, url)
    dispatch_due(ws, utcnow())
    os._exit(0)  # no clean-up of what the parent opened before the fork


def test_kill_9_of_the_sender_mid_delivery_then_a_restart_delivers_it_once(
    ws: Workspace, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), events="dispute.opened")
    a_debtor_disputing(ws, utcnow())
    receiver.hold(1)  # the first post waits for an answer that comes too late
    child = multiprocessing.get_context("fork").Process(
        target=_dispatch, args=(str(ws.root), ws.engine.url.render_as_string(False))
    )
    child.start()
    try:
        assert receiver.wait_for(1), "the post never arrived"
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    finally:
        receiver.release()
    assert child.exitcode == -signal.SIGKILL
    (row,) = [r for r in outbox(ws) if r.step.startswith("webhook/")]
    assert row.status == "sending"  # held by a process that is gone

    restarted = dispatch_due(ws, utcnow())

    assert (restarted.sent, restarted.lost) == (1, 0)
    first, second = receiver.received
    assert first.status is None and second.accepted  # the killed sender never heard back
    assert first.webhook_id == second.webhook_id  # the receiver sees one delivery
    assert first.body == second.body
    assert second.verify(secret)["type"] == "dispute.opened"
    (delivery,) = deliveries(ws)
    assert delivery.status == "sent"
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(2, 200)]
    assert dispatch_due(ws, utcnow()).sent == 0
    assert len(receiver.received) == 2
