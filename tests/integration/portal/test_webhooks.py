"""What a debtor does on the portal reaches the company's webhook endpoints: a reading
confirmed (the page's POST) and a dispute opened there, each signed and verified by a real
receiver."""

from __future__ import annotations

from cobro.engine.runs import dispatch_due
from cobro.engine.webhooks import add_endpoint
from cobro.workspace import utcnow
from fakes.webhooks import WebhookReceiver

from .conftest import Portal
from .helpers import outbox_id, receivable_id


def test_a_reading_and_a_dispute_on_the_portal_are_posted_to_the_endpoint(portal: Portal) -> None:
    ws = portal.ws
    claim, item = outbox_id(ws, "C1"), receivable_id(ws, "F-1")
    with WebhookReceiver() as receiver:
        with ws.engine.begin() as conn:
            _, secret = add_endpoint(
                conn,
                ws.company_id,
                receiver.url(),
                utcnow(),
                name="crm",
                events="read.confirmed,dispute.opened",
            )
        browser = portal.browser(ip="192.0.2.44", user_agent="Firefox/128.0 (debtor)")
        csrf = browser.csrf(portal.token)
        read = browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf})
        disputed = browser.post(
            f"/portal/{portal.token}/disputes",
            data={"csrf": csrf, "item": str(item), "reason": "Delivery never arrived"},
        )
        assert (read.status_code, disputed.status_code) == (303, 303)

        report = dispatch_due(ws, portal.clock.now)

        bodies = {r.verify(secret)["type"]: r.verify(secret) for r in receiver.received}
    assert report.sent == 2 and set(bodies) == {"read.confirmed", "dispute.opened"}
    confirmed = bodies["read.confirmed"]
    assert confirmed["timestamp"] == portal.clock.now.isoformat()
    assert confirmed["data"]["customer"]["id"] == "C1"
    assert confirmed["data"]["claim"]["id"] == claim
    assert confirmed["data"]["read_at"] == portal.clock.now.isoformat()
    opened = bodies["dispute.opened"]["data"]["dispute"]
    assert (opened["source"], opened["claim"], opened["reason"]) == (
        "portal",
        claim,
        "Delivery never arrived",
    )
    assert opened["item"]["number"] == "F-1"
