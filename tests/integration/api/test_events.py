"""``/events`` on every database: the event types and checks of ``cobro event post``, a
redelivered event without a second effect, bad payloads as problems naming the field,
the list of received events, roles, Idempotency-Key, and one company apart from another."""

from __future__ import annotations

from typing import Any

from cobro.store import tables as t

from .conftest import Client, Server
from .records import add_customers, count, page_through

CREATED = {
    "id": "evt-1",
    "customer": "M1",
    "subscription": "S1",
    "plan": "Gold",
    "price": "39.90",
    "occurred_at": "2025-03-01T09:30:00+01:00",
}


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "data": data}


def subscribed(client: Client) -> None:
    add_customers(client, "M1")
    made = client.post("/events", json=event("subscription.created", CREATED))
    assert made.status_code == 201, made.text


def test_an_event_is_recorded_applied_and_a_redelivery_has_no_second_effect(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    subscribed(client)
    paid = {"id": "evt-2", "subscription": "S1", "charge": "ch_1", "amount": "39.90"}

    first = client.post("/events", json=event("charge.succeeded", paid))
    again = client.post("/events", json=event("charge.succeeded", paid))

    assert first.status_code == 201
    assert first.json()["id"] == "evt-2" and first.json()["duplicate"] is False
    assert "receipt/ch_1" in first.json()["notices"]
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["notices"] == []
    assert client.get("/subscriptions/S1").json()["paid_charges"] == 1
    assert count(server, "acme", t.charges) == 1


def test_a_bad_event_is_a_problem_naming_the_field_and_changes_nothing(server: Server) -> None:
    client = server.client("acme", "collector")
    subscribed(client)

    def refused(kind: str, data: dict[str, Any]) -> list[tuple[str, str]]:
        response = client.post("/events", json=event(kind, data))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/api/v1/problems/invalid-event"
        return [(e["field"], e["problem"]) for e in response.json()["errors"]]

    charge = {"id": "e3", "subscription": "S1", "amount": "10.00"}
    assert refused("charge.succeeded", charge) == [("body.data.charge", "Field required")]
    assert refused("charge.succeeded", {**charge, "charge": "c", "colour": "red"}) == [
        ("body.data.colour", "Extra inputs are not permitted")
    ]
    assert refused("charge.failed", {**charge, "charge": "c", "subscription": "S9"}) == [
        ("body.data.subscription", "no subscription with external_id 'S9'")
    ]
    assert (
        refused("subscription.paused", {"id": "e4", "subscription": "S1", "from": "x"})[0][0]
        == "body.data.from"
    )
    assert refused("stop_payment.created", {"id": "e5", "customer": "M1"}) == [
        ("body.data.contact", "a stop payment names the contact selected at entry")
    ]
    assert refused("charge.refunded", charge)[0][0] == "body.type"
    nul = refused("charge.succeeded", {**charge, "charge": "a\u0000b"})
    assert nul == [("body.data.charge", "contains a NUL character")]
    deep: dict[str, Any] = {"x": "y"}
    for _ in range(40):
        deep = {"more": deep}
    assert refused("direct_deposit.reversal", {"id": "e6", "customer": "M1", "details": deep})[0][
        1
    ].endswith("nested more than 32 levels deep")
    assert count(server, "acme", t.events) == 1  # only the subscription's
    assert count(server, "acme", t.charges) == 0


def test_a_body_that_is_not_an_event_is_refused(server: Server) -> None:
    client = server.client("acme", "collector")

    no_data = client.post("/events", json={"type": "charge.succeeded"})
    not_object = client.post("/events", json={"type": "charge.succeeded", "data": [1]})

    assert [e["field"] for e in no_data.json()["errors"]] == ["body.data"]
    assert [e["field"] for e in not_object.json()["errors"]] == ["body.data"]


def test_a_banking_event_goes_to_the_contacts_assigned_to_its_notice(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    rows = [
        {"external_id": "K1", "customer": "C1", "name": "Ana", "email": "a@c1.example",
         "roles": ["banking"]},
        {"external_id": "K2", "customer": "C1", "name": "Bea", "email": "b@c1.example",
         "roles": ["primary"]},
    ]  # fmt: skip
    assert client.post("/contacts/batch", json={"rows": rows}).json()["inserted"] == 2
    change = {"id": "noc-1", "customer": "C1", "details": {"account": "****1234"}}

    before = client.post("/events", json=event("direct_deposit.change_notice", change))
    admin = server.client("acme", "admin")
    body = {"type": "direct_deposit_change", "contacts": ["K1"]}
    assert admin.post("/banking-notices", json=body).is_success
    after = client.post(
        "/events", json=event("direct_deposit.change_notice", {**change, "id": "noc-2"})
    )

    assert before.json()["notes"][0].startswith("to K2: primary contacts")
    assert after.json()["notes"][0] == "to K1: contacts assigned to this notification"
    assert after.json()["notices"] == ["banking/direct_deposit_change/noc-2"]


def test_received_events_are_listed_and_read_by_id(server: Server) -> None:
    client = server.client("acme", "collector")
    subscribed(client)
    server.clock.now = server.clock.now.replace(hour=11)
    for i in range(3):
        data = {"id": f"ch-{i}", "subscription": "S1", "charge": f"c{i}", "amount": "1.00"}
        assert client.post("/events", json=event("charge.succeeded", data)).status_code == 201

    def ids(**params: Any) -> list[str]:
        response = client.get("/events", params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    one = client.get("/events/evt-1").json()
    assert one == {
        "id": "evt-1",
        "type": "subscription.created",
        "data": one["data"],
        "occurred_at": "2025-03-01T08:30:00Z",
        "received_at": "2025-03-04T10:00:00Z",
    }
    assert (one["data"]["subscription"], one["data"]["price"]) == ("S1", "39.90")
    assert ids() == ["evt-1", "ch-0", "ch-1", "ch-2"]
    assert ids(type="charge.succeeded") == ["ch-0", "ch-1", "ch-2"]
    assert ids(received_since="2025-03-04T10:30:00Z") == ["ch-0", "ch-1", "ch-2"]
    assert ids(occurred_before="2025-03-02T00:00:00Z") == ["evt-1"]
    assert ids(occurred_after="2025-03-02T00:00:00Z") == ["ch-0", "ch-1", "ch-2"]
    assert [e["id"] for e in page_through(client, "/events", 3)] == ids()
    assert client.get("/events/nope").status_code == 404


def test_one_company_never_sees_or_changes_anothers_events(server: Server) -> None:
    acme, beta = server.client("acme", "collector"), server.client("beta", "collector")
    subscribed(acme)
    charge = {"id": "evt-2", "subscription": "S1", "charge": "ch_1", "amount": "39.90"}

    assert beta.get("/events/evt-1").status_code == 404
    assert beta.get("/events").json()["data"] == []
    refused = beta.post("/events", json=event("charge.succeeded", charge))
    add_customers(beta, "M1")
    own = beta.post("/events", json=event("subscription.created", CREATED))  # same id: beta's

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.data.subscription"
    assert own.status_code == 201 and own.json()["duplicate"] is False
    assert acme.get("/subscriptions/S1").json()["paid_charges"] == 0
    assert count(server, "acme", t.events) == count(server, "beta", t.events) == 1


def test_posting_events_needs_a_collector_key(server: Server) -> None:
    add_customers(server.client("acme", "collector"), "M1")
    reader = server.client("acme", "read-only")

    assert reader.post("/events", json=event("subscription.created", CREATED)).status_code == 403
    assert reader.get("/events").status_code == 200
    assert count(server, "acme", t.events) == 0


def test_an_event_posted_again_with_its_idempotency_key_is_answered_the_same(
    server: Server,
) -> None:
    add_customers(server.client("acme", "collector"), "M1")
    client = server.client("acme", "collector", headers={"idempotency-key": "deliver-evt-1"})

    first = client.post("/events", json=event("subscription.created", CREATED))
    again = client.post("/events", json=event("subscription.created", CREATED))

    assert first.status_code == again.status_code == 201  # replayed, not "duplicate"
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
