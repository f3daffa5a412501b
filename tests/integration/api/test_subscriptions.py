"""``/subscriptions`` and ``/charges`` on every database: created through the events
``cobro event post`` takes (the same checks), changed by later events, the notices a
charge queues, filters, pages, roles, Idempotency-Key, and one company apart from
another."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cobro.store import tables as t

from .conftest import Client, Server
from .records import add_customers, count, page_through

GYM = {
    "external_id": "S1",
    "customer": "M1",
    "plan": "Gold monthly",
    "price": "39.90",
    "cycle": "monthly",
    "next_charge_on": "2025-04-01",
}


def charge(ext: str, status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    return {"external_id": ext, "subscription": "S1", "status": status, "amount": "39.90"} | fields


def outbox_steps(server: Server, company: str) -> list[str]:
    ws = server.companies[company]
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(t.outbox.c.step)
                .where(t.outbox.c.company_id == ws.company_id)
                .order_by(t.outbox.c.id)
            ).scalars()
        )


def member(client: Client, *members: str) -> None:
    add_customers(client, *(members or ("M1",)))


def test_a_subscription_is_created_and_read_back(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client)

    made = client.post("/subscriptions", json=GYM)
    again = client.post("/subscriptions", json=GYM)

    assert made.status_code == 201, made.text
    body = made.json()
    assert body == {
        "external_id": "S1",
        "customer": "M1",
        "plan": "Gold monthly",
        "kind": "plan",
        "price": "39.90",
        "currency": "EUR",
        "cycle": "monthly",
        "next_charge_on": "2025-04-01",
        "status": "active",
        "pause_from": None,
        "pause_until": None,
        "ends_on": None,
        "paid_charges": 0,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert again.status_code == 409
    assert again.json()["type"] == "/api/v1/problems/already-exists"
    assert client.get("/subscriptions/S1").json() == body
    created = client.get("/events", params={"type": "subscription.created"}).json()["data"]
    assert [e["data"]["subscription"] for e in created] == ["S1"]


def test_a_refused_subscription_names_its_field_as_the_event_checks_it(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client)

    cases = {
        "body.cycle": {**GYM, "cycle": "fortnightly"},
        "body.customer": {**GYM, "customer": "M9"},
        "body.price": {**GYM, "price": "39.999"},
        "body.kind": {**GYM, "kind": "voucher"},
    }
    for field, body in cases.items():
        response = client.post("/subscriptions", json=body)
        assert response.status_code == 422, (field, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], response.text
    assert (
        "a cycle is weekly, monthly"
        in client.post("/subscriptions", json=cases["body.cycle"]).json()["errors"][0]["problem"]
    )
    assert count(server, "acme", t.subscriptions) == 0
    assert count(server, "acme", t.events) == 0


def test_a_succeeded_charge_queues_the_receipt_and_counts_as_paid(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client)
    assert client.post("/subscriptions", json=GYM).status_code == 201

    paid = client.post("/charges", json=charge("ch_1", next_charge_on="2025-05-01"))
    twice = client.post("/charges", json=charge("ch_1"))

    assert paid.status_code == 201, paid.text
    assert paid.json() == {
        "external_id": "ch_1",
        "subscription": "S1",
        "customer": "M1",
        "status": "succeeded",
        "amount": "39.90",
        "currency": "EUR",
        "charged_at": "2025-03-04T10:00:00Z",
        "first_purchase": True,
        "reason": None,
    }
    assert twice.status_code == 409
    sub = client.get("/subscriptions/S1").json()
    assert (sub["paid_charges"], sub["next_charge_on"]) == (1, "2025-05-01")
    assert "receipt/ch_1" in outbox_steps(server, "acme")
    assert client.get("/charges/ch_1").json() == paid.json()


def test_a_failed_renewal_makes_the_subscription_unpaid_and_queues_a_reminder(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    member(client)
    assert client.post("/subscriptions", json=GYM).status_code == 201
    assert client.post("/charges", json=charge("ch_1")).status_code == 201

    failed = client.post("/charges", json=charge("ch_2", "failed", reason="insufficient_funds"))

    assert failed.status_code == 201
    assert (failed.json()["first_purchase"], failed.json()["reason"]) == (
        False,
        "insufficient_funds",
    )
    assert client.get("/subscriptions/S1").json()["status"] == "unpaid"
    assert "unpaid/ch_2" in outbox_steps(server, "acme")
    unpaid = client.get("/subscriptions", params={"status": "unpaid"}).json()["data"]
    assert [s["external_id"] for s in unpaid] == ["S1"]


def test_a_refused_charge_names_its_field(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client)
    assert client.post("/subscriptions", json=GYM).status_code == 201

    unknown = client.post("/charges", json=charge("ch_1", subscription="S9"))
    precise = client.post("/charges", json=charge("ch_1", amount="1.001"))
    status = client.post("/charges", json=charge("ch_1", "refunded"))

    assert [e["field"] for e in unknown.json()["errors"]] == ["body.subscription"]
    assert [e["field"] for e in precise.json()["errors"]] == ["body.amount"]
    assert [e["field"] for e in status.json()["errors"]] == ["body.status"]
    assert count(server, "acme", t.charges) == 0


def test_events_change_a_subscription(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client)
    assert client.post("/subscriptions", json=GYM).status_code == 201

    paused = client.post(
        "/events",
        json={
            "type": "subscription.paused",
            "data": {"id": "e1", "subscription": "S1", "from": "2025-04-01"},
        },
    )
    expired = client.post(
        "/events", json={"type": "subscription.expired", "data": {"id": "e2", "subscription": "S1"}}
    )

    assert paused.status_code == expired.status_code == 201
    sub = client.get("/subscriptions/S1").json()
    assert (sub["pause_from"], sub["status"], sub["next_charge_on"]) == (
        "2025-04-01",
        "expired",
        None,
    )


def test_lists_of_subscriptions_and_charges_filter_and_page(server: Server) -> None:
    client = server.client("acme", "collector")
    member(client, "M1", "M2")
    subs = [
        GYM,
        {**GYM, "external_id": "S2", "customer": "M2", "kind": "pass", "next_charge_on": None},
        {**GYM, "external_id": "S3", "next_charge_on": "2025-03-10"},
    ]
    for sub in subs:
        assert client.post("/subscriptions", json=sub).status_code == 201
    for ext, sub, status in (
        ("a", "S1", "succeeded"),
        ("b", "S3", "succeeded"),
        ("c", "S1", "failed"),
    ):
        made = client.post("/charges", json=charge(ext, status, subscription=sub))
        assert made.status_code == 201, made.text
    server.clock.now = server.clock.now.replace(hour=12)
    assert client.post("/charges", json=charge("d", subscription="S2")).status_code == 201

    def ids(url: str, **params: Any) -> list[str]:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [x["external_id"] for x in response.json()["data"]]

    assert ids("/subscriptions") == ["S1", "S2", "S3"]
    assert ids("/subscriptions", customer="M1") == ["S1", "S3"]
    assert ids("/subscriptions", kind="pass") == ["S2"]
    assert ids("/subscriptions", next_charge_before="2025-04-01") == ["S3"]
    assert ids("/charges") == ["a", "b", "c", "d"]
    assert ids("/charges", subscription="S1") == ["a", "c"]
    assert ids("/charges", customer="M2") == ["d"]
    assert ids("/charges", status="failed") == ["c"]
    assert ids("/charges", charged_after="2025-03-04T11:00:00+00:00") == ["d"]
    assert ids("/charges", charged_before="2025-03-04T12:00:00+01:00") == ["a", "b", "c"]
    assert ids("/subscriptions/S1/charges") == ["a", "c"]
    assert [c["external_id"] for c in page_through(client, "/charges", 3)] == ["a", "b", "c", "d"]
    assert [s["external_id"] for s in page_through(client, "/subscriptions", 2)] == [
        "S1",
        "S2",
        "S3",
    ]
    assert client.get("/subscriptions/S9/charges").status_code == 404


def test_one_company_never_sees_or_changes_anothers_subscriptions(server: Server) -> None:
    acme, beta = server.client("acme", "collector"), server.client("beta", "collector")
    member(acme)
    assert acme.post("/subscriptions", json=GYM).status_code == 201
    assert acme.post("/charges", json=charge("ch_1")).status_code == 201

    assert beta.get("/subscriptions/S1").status_code == 404
    assert beta.get("/subscriptions/S1/charges").status_code == 404
    assert beta.get("/charges/ch_1").status_code == 404
    assert beta.get("/subscriptions").json()["data"] == []
    assert beta.get("/charges", params={"subscription": "S1"}).json()["data"] == []
    charged = beta.post("/charges", json=charge("ch_2"))
    created = beta.post("/subscriptions", json=GYM)  # beta has no member M1

    assert [e["field"] for e in charged.json()["errors"]] == ["body.subscription"]
    assert [e["field"] for e in created.json()["errors"]] == ["body.customer"]
    assert acme.get("/subscriptions/S1").json()["paid_charges"] == 1
    member(beta)
    assert beta.post("/subscriptions", json=GYM).status_code == 201  # beta's own S1
    assert count(server, "acme", t.subscriptions) == count(server, "beta", t.subscriptions) == 1


def test_reading_needs_any_key_and_writing_a_collector_key(server: Server) -> None:
    member(server.client("acme", "collector"))
    reader = server.client("acme", "read-only")

    assert reader.post("/subscriptions", json=GYM).status_code == 403
    assert reader.post("/charges", json=charge("ch_1")).status_code == 403
    assert reader.get("/subscriptions").status_code == reader.get("/charges").status_code == 200
    assert count(server, "acme", t.subscriptions) == 0


def test_a_subscription_posted_again_with_its_idempotency_key_is_answered_the_same(
    server: Server,
) -> None:
    member(server.client("acme", "collector"))
    client = server.client("acme", "collector", headers={"idempotency-key": "signup-M1"})

    first = client.post("/subscriptions", json=GYM)
    again = client.post("/subscriptions", json=GYM)

    assert first.status_code == again.status_code == 201  # not 409: the first answer again
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert count(server, "acme", t.events) == 1
