"""A notice that an event asks for (a payment receipt) goes ahead of the day's claims that
a watching dispatcher has not taken yet, instead of waiting for all of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cobro.engine.runs import run_day
from cobro.intake.events import post_event
from cobro.store import tables as t
from cobro.workspace import Workspace, utcnow

from .conftest import Received
from .support import d, outbox
from .test_exactly_once import Counting, Watcher, day_already_due, debtors, server, smtp_to

__all__ = ["server"]  # the fixture

CLAIMS = 60


def claim_ids(received: list[Received]) -> list[int]:
    """The outbox row of each message the server received, in the order it arrived."""
    return [int(str(m.message["X-Cobro-Claim"]).split("/")[1]) for m in received]


def test_a_receipt_posted_while_the_days_claims_go_out_is_sent_before_those_not_taken_yet(
    make_ws: Callable[..., Workspace],
    reopen: Callable[[Workspace], Workspace],
    server: tuple[Counting, int],
) -> None:
    handler, port = server
    ws = make_ws(replace=smtp_to(port))
    day = day_already_due(ws)
    debtors(ws, CLAIMS, day + timedelta(days=7))
    post_event(
        ws,
        "subscription.created",
        {
            "id": "created-S1",
            "customer": "C7",
            "subscription": "S1",
            "plan": "Mensual",
            "price": "20.00",
        },
        utcnow() - timedelta(hours=1),
    )
    assert run_day(ws, day, send=False).planned == CLAIMS

    events = reopen(ws)
    waiting: list[int] = []  # the day's claims not taken yet when the payment arrived
    posted = threading.Event()
    o = t.outbox.c

    def pay_on_the_third_message(count: int) -> None:
        if count != 3:
            return
        with events.engine.connect() as conn:
            waiting.extend(
                conn.execute(
                    select(o.id).where(o.run_id.is_not(None), o.status == "planned")
                ).scalars()
            )
        charge = {"id": "c1", "subscription": "S1", "charge": "CH1", "amount": "20"}
        post_event(events, "charge.succeeded", charge, utcnow())
        posted.set()

    handler.on_message = pay_on_the_third_message
    watcher = Watcher(reopen(ws))
    try:
        assert handler.wait_for(CLAIMS) and posted.wait(60)
        # every row: the claims, the subscription's notices, the payment's
        assert handler.wait_for(len(outbox(ws)))
    finally:
        watcher.close()

    assert posted.is_set()
    receipt = next(r.id for r in outbox(ws) if r.step == "receipt/CH1")
    order = claim_ids(handler.received)
    assert order.count(receipt) == 1
    assert sorted(order) == sorted({*order})  # each row once
    # The payment arrived after the watch's pass had started (it was not due as of the
    # pass), while most of the day's claims were still waiting: every one of them went
    # after the receipt.
    assert len(waiting) > CLAIMS // 2
    later = order[order.index(receipt) + 1 :]
    assert set(waiting) <= set(later)


def test_metrics_report_the_prompt_lag_apart_from_the_days_backlog(
    make_ws: Callable[..., Workspace],
) -> None:
    """``/metrics``: while the day's claims wait (since the send time), the queue lag is
    their age; ``cobro_prompt_lag_seconds`` is the age of the oldest receipt waiting, and
    0 when none is."""
    from fastapi.testclient import TestClient

    from cobro.domain.calendar import send_instant
    from cobro.web.app import create_app

    ws = make_ws()
    day = d("2025-03-03")
    debtors(ws, 3, day + timedelta(days=7))
    post_event(
        ws,
        "subscription.created",
        {"id": "created-S1", "customer": "C1", "subscription": "S1", "plan": "M", "price": "9"},
        datetime(2025, 3, 1, tzinfo=UTC),
    )
    assert run_day(ws, day, send=False).planned == 3
    company = ws.config.company
    send_at = send_instant(day, company.send_time, company.timezone)
    slug = company.id

    def scrape(at: datetime) -> str:
        with TestClient(create_app(ws, clock=lambda: at)) as client:
            response = client.get("/metrics")
        assert response.status_code == 200
        return response.text

    # The subscription's notices, if any, are sent: only the day's claims wait.
    with ws.engine.begin() as conn:
        conn.execute(t.outbox.update().where(t.outbox.c.run_id.is_(None)).values(status="sent"))
    text = scrape(send_at + timedelta(minutes=10))
    assert f'cobro_queue_lag_seconds{{company="{slug}"}} 600.0' in text
    assert f'cobro_prompt_lag_seconds{{company="{slug}"}} 0.0' in text

    charge = {"id": "c1", "subscription": "S1", "charge": "CH1", "amount": "9"}
    post_event(ws, "charge.succeeded", charge, send_at + timedelta(minutes=5))
    text = scrape(send_at + timedelta(minutes=10))
    assert f'cobro_queue_lag_seconds{{company="{slug}"}} 600.0' in text
    assert f'cobro_prompt_lag_seconds{{company="{slug}"}} 300.0' in text
