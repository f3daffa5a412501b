"""``/webhooks``: a company's endpoints added, read and removed by an admin key (the
secret shown once), what was posted to them listed with its attempts and posted again;
other keys refused."""

from __future__ import annotations

from sqlalchemy import update

from cobro.store import tables as t

from ..portal.helpers import two_debtors_claimed
from .conftest import NOW, Server

ENDPOINT = {"url": "https://erp.acme.example/hooks", "name": "erp", "events": ["dispute.opened"]}


def test_an_admin_adds_an_endpoint_and_gets_its_secret_once(server: Server) -> None:
    admin = server.client("acme", "admin")
    made = admin.post("/webhooks", json=ENDPOINT)
    listed = admin.get("/webhooks")
    one = admin.get("/webhooks/erp")

    assert made.status_code == 201, made.text
    assert made.json()["secret"].startswith("whsec_")
    assert made.json()["events"] == ["dispute.opened"]
    assert [e["name"] for e in listed.json()] == ["erp"]
    assert "secret" not in listed.text and "secret" not in one.json()
    assert one.json()["url"] == ENDPOINT["url"]


def test_bad_endpoints_are_refused_naming_the_problem(server: Server) -> None:
    admin = server.client("acme", "admin")
    bad_url = admin.post("/webhooks", json={**ENDPOINT, "url": "ftp://x.example"})
    bad_event = admin.post("/webhooks", json={**ENDPOINT, "events": ["claim.eaten"]})
    reserved = admin.post("/webhooks", json={**ENDPOINT, "name": "deliveries"})
    assert admin.post("/webhooks", json=ENDPOINT).status_code == 201
    taken = admin.post("/webhooks", json=ENDPOINT)

    for refused in (bad_url, bad_event, reserved, taken):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert "claim.eaten" in bad_event.json()["detail"]
    assert "exists already" in taken.json()["detail"]


def test_only_admin_keys_reach_the_endpoints(server: Server) -> None:
    for role in ("collector", "read-only"):
        client = server.client("acme", role)
        assert client.get("/webhooks").status_code == 403
        assert client.post("/webhooks", json=ENDPOINT).status_code == 403


def test_a_weaker_key_replaying_an_admins_idempotency_key_is_refused_403(
    server: Server,
) -> None:
    """The answer kept for an Idempotency-Key holds the endpoint's secret: a key whose role
    may not add endpoints gets 403 with that key and body, never the admin's answer."""
    made = server.client("acme", "admin", headers={"idempotency-key": "add-erp"}).post(
        "/webhooks", json=ENDPOINT
    )
    assert made.status_code == 201
    secret = made.json()["secret"]
    for role in ("collector", "read-only"):
        weaker = server.client("acme", role, headers={"idempotency-key": "add-erp"})
        refused = weaker.post("/webhooks", json=ENDPOINT)

        assert refused.status_code == 403, (role, refused.text)
        assert refused.json()["type"] == "/api/v1/problems/forbidden"
        assert secret not in refused.text and "idempotent-replayed" not in refused.headers
    again = server.client("acme", "admin", headers={"idempotency-key": "add-erp"}).post(
        "/webhooks", json=ENDPOINT
    )
    assert again.headers["idempotent-replayed"] == "true" and again.json() == made.json()


def test_a_weaker_key_replaying_a_collectors_idempotency_key_is_refused_403(
    server: Server,
) -> None:
    customer = {"external_id": "C1", "name": "Acme Industrial"}
    collector = server.client("acme", "collector", headers={"idempotency-key": "crm-1"})
    assert collector.post("/customers", json=customer).status_code == 201
    read_only = server.client("acme", "read-only", headers={"idempotency-key": "crm-1"})

    assert read_only.post("/customers", json=customer).status_code == 403


def test_an_event_is_listed_with_its_delivery_and_can_be_posted_again(server: Server) -> None:
    two_debtors_claimed(server.companies["acme"])
    admin = server.client("acme", "admin")
    assert admin.post("/webhooks", json=ENDPOINT).status_code == 201
    opened = admin.post("/disputes", json={"customer": "C1", "item": "F-2", "reason": "x"})
    assert opened.is_success, opened.text

    (delivery,) = admin.get("/webhooks/deliveries", params={"endpoint": "erp"}).json()["data"]
    waiting = admin.post(f"/webhooks/deliveries/{delivery['id']}/redeliver")
    ws = server.companies["acme"]
    with ws.engine.begin() as conn:  # as the retry window's end leaves it
        conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == delivery["id"])
            .values(status="failed", reason="HTTP 500", finished_at=NOW)
        )
    again = admin.post(f"/webhooks/deliveries/{delivery['id']}/redeliver")
    unknown_status = admin.get("/webhooks/deliveries", params={"status": "eaten"})

    assert delivery["event"] == "dispute.opened" and delivery["customer"] == "C1"
    assert delivery["status"] == "planned" and delivery["attempts"] == []
    assert waiting.status_code == 409
    assert again.status_code == 202 and again.json()["status"] == "planned"
    assert unknown_status.status_code == 422


def test_removing_an_endpoint_cancels_what_waits_for_it(server: Server) -> None:
    two_debtors_claimed(server.companies["acme"])
    admin = server.client("acme", "admin")
    assert admin.post("/webhooks", json=ENDPOINT).status_code == 201
    assert admin.post("/disputes", json={"customer": "C1", "item": "F-2", "reason": "x"}).is_success

    removed = admin.delete("/webhooks/erp")

    assert removed.status_code == 200 and removed.json() == {"name": "erp", "cancelled": 1}
    assert admin.get("/webhooks/erp").status_code == 404
    assert admin.delete("/webhooks/erp").status_code == 404


def test_redelivering_the_largest_id_is_not_found(server: Server) -> None:
    """The largest id the API takes (2**31 - 1) names no delivery: 404, on PostgreSQL too
    (whose integer column holds nothing past it)."""
    admin = server.client("acme", "admin")

    for delivery_id in (2**31 - 1, 1):
        response = admin.post(f"/webhooks/deliveries/{delivery_id}/redeliver")
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "/api/v1/problems/not-found"
