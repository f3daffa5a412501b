"""``/payments`` on every database: a payment allocated to the receivable it names then
the oldest due, a recorded payment never changed, reversals, batches with per-row errors,
filters, pages, roles, Idempotency-Key, and one company apart from another."""

from __future__ import annotations

from typing import Any

from cobro.store import tables as t

from .conftest import Client, Server
from .records import add_customers, count, page_through


def payment(ext: str, customer: str = "C1", **fields: Any) -> dict[str, Any]:
    base = {"external_id": ext, "customer": customer, "paid_on": "2025-03-01", "amount": "50.00"}
    return base | fields


def owing(client: Client) -> None:
    """C1 owes R1 (100.00, due first) and R2 (80.00); C2 owes R3 (30.00)."""
    add_customers(client, "C1", "C2")
    rows = [
        {"external_id": "R1", "customer": "C1", "due_on": "2025-01-10", "amount": "100.00"},
        {"external_id": "R2", "customer": "C1", "due_on": "2025-02-10", "amount": "80.00"},
        {"external_id": "R3", "customer": "C2", "due_on": "2025-02-10", "amount": "30.00"},
    ]
    assert client.post("/receivables/batch", json={"rows": rows}).json()["inserted"] == 3


def balance(client: Client, receivable: str) -> str:
    return str(client.get(f"/receivables/{receivable}").json()["balance"])


def test_a_payment_pays_the_receivable_it_names_then_the_oldest_due(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)

    paid = client.post("/payments", json=payment("P1", receivable="R2", amount="120.00"))

    assert paid.status_code == 201
    body = paid.json()
    assert body == {
        "external_id": "P1",
        "customer": "C1",
        "receivable": "R2",
        "paid_on": "2025-03-01",
        "currency": "EUR",
        "amount": "120.00",
        "unallocated": "0.00",
        "reverses": None,
        "reversed_by": None,
        "allocations": [
            {"receivable": "R2", "amount": "80.00"},
            {"receivable": "R1", "amount": "40.00"},
        ],
        "created_at": body["created_at"],
    }
    assert (balance(client, "R1"), balance(client, "R2")) == ("60.00", "0.00")
    assert client.get("/payments/P1").json() == body


def test_a_recorded_payment_is_never_changed(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    assert client.post("/payments", json=payment("P1")).status_code == 201

    same = client.post("/payments", json=payment("P1"))
    other = client.post("/payments", json=payment("P1", amount="60.00"))

    assert same.status_code == 200  # already recorded, nothing changed
    assert other.status_code == 422
    assert [e["field"] for e in other.json()["errors"]] == ["body.amount"]
    assert "a recorded payment cannot be changed" in other.json()["errors"][0]["problem"]
    assert balance(client, "R1") == "50.00"
    assert count(server, "acme", t.payments) == 1


def test_a_reversal_owes_the_payment_again(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    assert client.post("/payments", json=payment("P1", amount="100.00")).status_code == 201

    reversal = client.post("/payments", json=payment("P1-R", reverses="P1", amount=None))
    twice = client.post("/payments", json=payment("P1-R2", reverses="P1", amount=None))

    assert reversal.status_code == 201
    assert reversal.json()["amount"] == "-100.00"
    assert reversal.json()["reverses"] == "P1"
    assert reversal.json()["allocations"] == [{"receivable": "R1", "amount": "-100.00"}]
    assert client.get("/payments/P1").json()["reversed_by"] == "P1-R"
    assert balance(client, "R1") == "100.00"
    assert twice.status_code == 422
    assert twice.json()["errors"][0] == {
        "field": "body.reverses",
        "problem": "payment P1 was already reversed by P1-R",
    }
    reversals = client.get("/payments", params={"reversal": "true"}).json()["data"]
    assert [p["external_id"] for p in reversals] == ["P1-R"]


def test_a_refused_payment_names_its_field(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)

    cases = {
        "body.customer": payment("P1", customer="C9"),
        "body.receivable": payment("P1", receivable="R3"),  # C2's, not C1's
        "body.amount": payment("P1", amount="0"),
        "body.paid_on": payment("P1", paid_on="yesterday"),
        "body.currency": payment("P1", currency="EURO"),
    }
    for field, body in cases.items():
        response = client.post("/payments", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.text
    missing = client.post(
        "/payments", json={k: v for k, v in payment("P1").items() if k != "amount"}
    )
    assert [e["field"] for e in missing.json()["errors"]] == ["body.amount"]
    assert count(server, "acme", t.payments) == 0


def test_a_batch_keeps_good_rows_and_reports_each_bad_row(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    rows = [
        payment("P1", amount="30.00"),
        payment("P2", customer="C9"),
        payment("P3", amount="-5"),
        payment("P4", customer="C2", amount="30.00"),
        payment("P1-R", reverses="P1", amount=None),  # reverses P1 of this batch
        payment("P5", paid_on=None),
        {"external_id": "P6", "customer": "C1", "paid_on": "2025-03-01"},  # no amount
    ]

    report = client.post("/payments/batch", json={"rows": rows}).json()

    assert (report["inserted"], report["updated"], report["unchanged"]) == (3, 0, 0)
    assert [(e["row"], e["field"]) for e in report["rejected"]] == [
        (1, "customer"),
        (2, "amount"),
        (5, "paid_on"),
        (6, "amount"),
    ]
    assert (balance(client, "R1"), balance(client, "R3")) == ("100.00", "0.00")
    assert count(server, "acme", t.payments) == 3


def test_a_batch_of_10001_payments_is_refused_whole(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    rows = [payment(f"P{i}", amount="0.01") for i in range(10_001)]

    response = client.post("/payments/batch", json={"rows": rows})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.rows"
    assert count(server, "acme", t.payments) == 0
    assert balance(client, "R1") == "100.00"


def test_lists_filter_by_customer_receivable_dates_and_currency(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    rows = [
        payment("P1", amount="10.00", paid_on="2025-02-01"),
        payment("P2", amount="10.00", paid_on="2025-02-15", receivable="R2"),
        payment("P3", customer="C2", amount="5.00", paid_on="2025-03-01"),
        payment("P4", currency="USD", amount="7.00", paid_on="2025-03-02"),
    ]
    assert client.post("/payments/batch", json={"rows": rows}).json()["rejected"] == []

    def ids(**params: Any) -> list[str]:
        response = client.get("/payments", params=params)
        assert response.status_code == 200, response.text
        return [p["external_id"] for p in response.json()["data"]]

    assert ids() == ["P1", "P2", "P3", "P4"]
    assert ids(customer="C2") == ["P3"]
    assert ids(receivable="R1") == ["P1"]
    assert ids(receivable="R2") == ["P2"]
    assert ids(paid_before="2025-03-01") == ["P1", "P2"]
    assert ids(paid_after="2025-02-01", paid_before="2025-03-02") == ["P2", "P3"]
    assert ids(currency="USD") == ["P4"]
    assert ids(reversal="false") == ["P1", "P2", "P3", "P4"]
    usd = client.get("/payments/P4").json()
    assert (usd["allocations"], usd["unallocated"]) == ([], "7.00")  # nothing owed in USD


def test_pages_without_gaps_or_repeats(server: Server) -> None:
    client = server.client("acme", "collector")
    owing(client)
    rows = [payment(f"P{i}", amount="1.00") for i in range(7)]
    assert client.post("/payments/batch", json={"rows": rows}).json()["inserted"] == 7

    seen = [p["external_id"] for p in page_through(client, "/payments", 2)]

    assert seen == [f"P{i}" for i in range(7)]


def test_one_company_never_sees_or_changes_anothers_payments(server: Server) -> None:
    acme, beta = server.client("acme", "collector"), server.client("beta", "collector")
    owing(acme)
    assert acme.post("/payments", json=payment("P1")).status_code == 201

    assert beta.get("/payments/P1").status_code == 404
    assert beta.get("/payments").json()["data"] == []
    assert beta.get("/payments", params={"receivable": "R1"}).json()["data"] == []
    reversal = beta.post("/payments", json=payment("X", reverses="P1", amount=None))
    paying = beta.post("/payments/batch", json={"rows": [payment("P2", receivable="R1")]})

    assert reversal.status_code == 422  # no such payment in beta: the same as unknown
    assert paying.json()["inserted"] == 0
    assert balance(acme, "R1") == "50.00"
    assert acme.get("/payments/P1").json()["reversed_by"] is None
    assert count(server, "beta", t.payments) == 0


def test_reading_needs_any_key_and_recording_a_collector_key(server: Server) -> None:
    owing(server.client("acme", "collector"))
    reader = server.client("acme", "read-only")

    assert reader.post("/payments", json=payment("P1")).status_code == 403
    assert reader.post("/payments/batch", json={"rows": [payment("P1")]}).status_code == 403
    assert reader.get("/payments").status_code == 200
    assert count(server, "acme", t.payments) == 0


def test_a_payment_posted_again_with_its_idempotency_key_is_answered_the_same(
    server: Server,
) -> None:
    owing(server.client("acme", "collector"))
    client = server.client("acme", "collector", headers={"idempotency-key": "bank-feed-77"})

    first = client.post("/payments", json=payment("P1"))
    again = client.post("/payments", json=payment("P1"))

    assert first.status_code == again.status_code == 201  # the first answer, not "200"
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(server, "acme", t.payments) == 1
