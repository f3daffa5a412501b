"""``/receivables`` on every database: create or update one, batches of up to 10,000 with
per-row errors and good rows kept, credit notes, filters, pages, roles, Idempotency-Key,
and one company never seeing or changing another's."""

from __future__ import annotations

from typing import Any

from cobro.store import tables as t

from .conftest import Server
from .records import add_customers, count, page_through

# The clock reads 2025-03-04 (conftest.NOW).
INVOICE = {
    "external_id": "R1",
    "customer": "C1",
    "number": "F-2025-001",
    "issued_on": "2025-01-15",
    "due_on": "2025-02-14",
    "amount": "1234.50",
    "description": "January supplies",
}


def receivable(ext: str, customer: str = "C1", **fields: Any) -> dict[str, Any]:
    base = {"external_id": ext, "customer": customer, "due_on": "2025-03-20", "amount": "100.00"}
    return base | fields


def test_a_receivable_is_created_then_updated_by_its_external_id(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    made = client.post("/receivables", json=INVOICE)
    changed = client.post("/receivables", json={**INVOICE, "amount": "1300.00"})
    again = client.post("/receivables", json={**INVOICE, "amount": "1300.00"})

    assert made.status_code == 201
    body = made.json()
    assert body == {
        "external_id": "R1",
        "customer": "C1",
        "kind": "invoice",
        "number": "F-2025-001",
        "invoice": None,
        "issued_on": "2025-01-15",
        "due_on": "2025-02-14",
        "currency": "EUR",
        "amount": "1234.50",
        "balance": "1234.50",
        "description": "January supplies",
        "status": "open",
        "overdue": True,
        "updated_at": body["updated_at"],
    }
    assert body["updated_at"].endswith("Z") or body["updated_at"].endswith("+00:00")
    assert changed.status_code == again.status_code == 200
    assert changed.json()["amount"] == changed.json()["balance"] == "1300.00"
    assert client.get("/receivables/R1").json() == again.json()
    assert count(server, "acme", t.receivables) == 1


def test_a_field_left_out_keeps_its_value_and_number_defaults_to_the_external_id(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    assert client.post("/receivables", json=INVOICE).status_code == 201

    updated = client.post(
        "/receivables",
        json={"external_id": "R1", "customer": "C1", "due_on": "2025-02-14", "amount": "50"},
    )
    plain = client.post("/receivables", json=receivable("R2", currency="usd"))

    assert updated.json()["description"] == "January supplies"
    assert updated.json()["amount"] == "50.00"
    assert plain.json()["number"] == "R2"
    assert plain.json()["currency"] == "USD"


def test_a_credit_note_is_a_receivable_kind_applied_to_the_debtors_items(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    assert client.post("/receivables", json=receivable("R1", amount="100.00")).is_success

    credit = client.post(
        "/receivables",
        json=receivable("CN1", kind="credit_note", invoice="R1", amount="30.00"),
    )
    negative = client.post("/receivables", json=receivable("CN2", amount="-5.00"))

    assert credit.status_code == 201
    assert credit.json()["kind"] == "credit_note"
    assert credit.json()["amount"] == "-30.00"
    assert credit.json()["balance"] == "0.00"  # applied in full to R1
    assert credit.json()["status"] == "paid"
    assert negative.json()["kind"] == "credit_note"
    assert negative.json()["amount"] == "-5.00"
    assert client.get("/receivables/R1").json()["balance"] == "65.00"
    credit_notes = client.get("/receivables", params={"kind": "credit_note"}).json()["data"]
    assert [r["external_id"] for r in credit_notes] == ["CN1", "CN2"]


def test_a_refused_receivable_names_its_field_and_nothing_is_kept(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    unknown_customer = client.post("/receivables", json=receivable("R1", customer="C9"))
    locale_amount = client.post("/receivables", json=receivable("R1", amount="1.234,50"))
    too_precise = client.post("/receivables", json=receivable("R1", amount="10.001"))
    json_number = client.post("/receivables", json=receivable("R1", amount=10.5))
    bad_date = client.post("/receivables", json=receivable("R1", due_on="14/02/2025"))
    balance_over = client.post(
        "/receivables", json=receivable("R1", amount="10.00", balance="20.00")
    )

    def fields(response: Any) -> list[str]:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        return [e["field"] for e in response.json()["errors"]]

    assert fields(unknown_customer) == ["body.customer"]
    assert "no customer with external_id 'C9'" in unknown_customer.json()["errors"][0]["problem"]
    assert fields(locale_amount) == ["body.amount"]
    assert fields(too_precise) == ["body.amount"]
    assert "more decimal places than EUR allows" in too_precise.json()["errors"][0]["problem"]
    assert fields(json_number) == ["body.amount"]
    assert fields(bad_date) == ["body.due_on"]
    assert fields(balance_over) == ["body.balance"]
    assert count(server, "acme", t.receivables) == 0


def test_a_batch_keeps_good_rows_and_reports_each_bad_row_by_index_and_field(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1", "C2")
    rows = [
        receivable("R1"),
        receivable("R2", amount="abc"),
        receivable("R3", customer="C9"),
        {"external_id": "R4", "customer": "C2", "amount": "10.00"},  # no due_on
        receivable("R5", colour="red"),
        receivable("R6", customer="C2", amount="75.25"),
        receivable("R1", amount="200.00"),  # R1 again in the same batch
        receivable("R7", amount=12.5),
        "not an object",
    ]

    response = client.post("/receivables/batch", json={"rows": rows})

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["inserted"], report["updated"], report["unchanged"]) == (2, 0, 0)
    rejected = [(e["row"], e["field"]) for e in report["rejected"]]
    assert rejected == [
        (1, "amount"),
        (2, "customer"),
        (3, "due_on"),
        (4, "colour"),
        (6, "external_id"),
        (7, "amount"),
        (8, ""),
    ]
    problems = {e["row"]: e["problem"] for e in report["rejected"]}
    assert "'R1' appears again in this batch (first on row 0)" in problems[6]
    assert "'abc' is not an amount" in problems[1]
    kept = {r["external_id"]: r["balance"] for r in client.get("/receivables").json()["data"]}
    assert kept == {"R1": "100.00", "R6": "75.25"}


def test_a_batch_upserts_by_external_id(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    rows = [receivable(f"R{i}") for i in range(5)]
    first = client.post("/receivables/batch", json={"rows": rows})
    rows[2] = receivable("R2", amount="80.00")
    second = client.post("/receivables/batch", json={"rows": [*rows, receivable("R5")]})

    assert first.json() == {
        "inserted": 5,
        "updated": 0,
        "unchanged": 0,
        "rejected": [],
        "warnings": [],
    }
    assert (second.json()["inserted"], second.json()["updated"]) == (1, 1)
    assert second.json()["unchanged"] == 4
    assert client.get("/receivables/R2").json()["amount"] == "80.00"
    assert count(server, "acme", t.receivables) == 6


def test_a_batch_of_10000_is_taken_and_one_of_10001_refused_whole(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    rows = [receivable(f"R{i:05d}", amount=f"{1 + i % 500}.{i % 100:02d}") for i in range(10_001)]

    too_many = client.post("/receivables/batch", json={"rows": rows})
    assert too_many.status_code == 422
    assert [e["field"] for e in too_many.json()["errors"]] == ["body.rows"]
    assert count(server, "acme", t.receivables) == 0

    taken = client.post("/receivables/batch", json={"rows": rows[:10_000]})
    assert taken.status_code == 200
    assert taken.json()["inserted"] == 10_000 and taken.json()["rejected"] == []
    assert count(server, "acme", t.receivables) == 10_000
    assert client.get("/receivables/R09999").json()["amount"] == "500.99"


def test_an_empty_batch_is_refused(server: Server) -> None:
    response = server.client("acme", "collector").post("/receivables/batch", json={"rows": []})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.rows"


def test_lists_filter_by_customer_status_due_dates_overdue_currency_and_kind(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1", "C2")
    rows = [
        receivable("OLD", due_on="2025-01-10"),  # overdue
        receivable("SOON", due_on="2025-03-10"),
        receivable("PAID", due_on="2025-02-01", amount="40.00", balance="0"),
        receivable("USD", customer="C2", due_on="2025-02-20", currency="USD"),  # overdue
        receivable("TODAY", customer="C2", due_on="2025-03-04"),  # due today: not overdue
        receivable("CREDIT", customer="C2", due_on="2025-03-04", amount="-1.00"),  # on TODAY
    ]
    assert client.post("/receivables/batch", json={"rows": rows}).json()["rejected"] == []

    def ids(**params: Any) -> list[str]:
        response = client.get("/receivables", params=params)
        assert response.status_code == 200, response.text
        return [r["external_id"] for r in response.json()["data"]]

    assert ids() == ["OLD", "SOON", "PAID", "USD", "TODAY", "CREDIT"]
    assert ids(customer="C2") == ["USD", "TODAY", "CREDIT"]
    assert ids(status="paid") == ["PAID", "CREDIT"]
    assert ids(status="open", customer="C1") == ["OLD", "SOON"]
    assert ids(overdue="true") == ["OLD", "USD"]
    assert ids(overdue="false", customer="C1") == ["SOON", "PAID"]
    assert ids(due_before="2025-02-20") == ["OLD", "PAID"]
    assert ids(due_after="2025-03-04") == ["SOON"]
    assert ids(due_after="2025-01-31", due_before="2025-03-05") == [
        "PAID",
        "USD",
        "TODAY",
        "CREDIT",
    ]
    assert ids(currency="usd") == ["USD"]
    assert ids(kind="credit_note") == ["CREDIT"]
    assert ids(customer="C9") == []
    assert client.get("/receivables", params={"status": "late"}).status_code == 422
    assert client.get("/receivables", params={"due_before": "soon"}).status_code == 422


def test_pages_follow_the_order_of_creation_without_gaps_or_repeats(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    rows = [receivable(f"R{i}") for i in range(7)]
    assert client.post("/receivables/batch", json={"rows": rows}).json()["inserted"] == 7

    first = client.get("/receivables", params={"limit": 3}).json()
    # Added and updated while paging: the update stays in place, the new row comes last.
    assert client.post("/receivables", json=receivable("R1", amount="5.00")).status_code == 200
    assert client.post("/receivables", json=receivable("NEW")).status_code == 201
    rest = page_through(client, "/receivables", 3, cursor=first["next_cursor"])

    seen = [r["external_id"] for r in first["data"] + rest]
    assert seen == [*(f"R{i}" for i in range(7)), "NEW"]


def test_one_company_never_sees_or_changes_anothers_receivables(server: Server) -> None:
    acme, beta = server.client("acme", "collector"), server.client("beta", "collector")
    add_customers(acme, "C1")
    assert acme.post("/receivables", json=INVOICE).status_code == 201

    assert beta.get("/receivables/R1").status_code == 404
    assert beta.get("/receivables").json()["data"] == []
    assert beta.get("/receivables", params={"customer": "C1"}).json()["data"] == []
    # Beta cannot attach to acme's debtor, nor touch acme's R1 with its own.
    refused = beta.post("/receivables", json={**INVOICE, "amount": "1.00"})
    assert [e["field"] for e in refused.json()["errors"]] == ["body.customer"]
    batch = beta.post("/receivables/batch", json={"rows": [{**INVOICE, "amount": "2.00"}]})
    assert batch.json()["rejected"][0]["field"] == "customer"
    add_customers(beta, "C1")
    own = beta.post("/receivables", json={**INVOICE, "amount": "3.00"})

    assert own.status_code == 201  # beta's own R1
    assert acme.get("/receivables/R1").json()["amount"] == "1234.50"
    assert beta.get("/receivables/R1").json()["amount"] == "3.00"
    assert count(server, "acme", t.receivables) == count(server, "beta", t.receivables) == 1


def test_reading_needs_any_key_and_writing_a_collector_key(server: Server) -> None:
    add_customers(server.client("acme", "collector"), "C1")
    reader = server.client("acme", "read-only")

    one = reader.post("/receivables", json=INVOICE)
    many = reader.post("/receivables/batch", json={"rows": [INVOICE]})

    assert one.status_code == many.status_code == 403
    assert count(server, "acme", t.receivables) == 0
    assert reader.get("/receivables").status_code == 200
    assert server.client("acme", "collector").post("/receivables", json=INVOICE).is_success
    assert reader.get("/receivables/R1").status_code == 200
    assert server.anonymous().get("/receivables").status_code == 401


def test_a_batch_posted_again_with_its_idempotency_key_is_answered_the_same(
    server: Server,
) -> None:
    client = server.client("acme", "collector", headers={"idempotency-key": "import-2025-03-04"})
    add_customers(server.client("acme", "collector"), "C1")
    rows = [receivable("R1"), receivable("R2", customer="C9")]

    first = client.post("/receivables/batch", json={"rows": rows})
    again = client.post("/receivables/batch", json={"rows": rows})
    other = client.post("/receivables/batch", json={"rows": rows[:1]})

    assert first.json()["inserted"] == 1
    assert again.json() == first.json()  # not "unchanged": the first answer, replayed
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert count(server, "acme", t.receivables) == 1


def test_ids_and_filters_no_database_can_hold_are_answered_as_problems(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    nul_id = client.get("/receivables/R%001")
    line_break_id = client.get("/receivables/R%0A1")
    nul_filter = client.get("/receivables", params={"customer": "C\x001"})
    nul_row = client.post("/receivables/batch", json={"rows": [receivable("R\x001")]})
    unauthenticated = server.anonymous().get("/receivables/R%001")

    for response in (nul_id, line_break_id):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert nul_filter.status_code == 422
    assert nul_filter.json()["errors"] == [
        {"field": "query.customer", "problem": "contains a NUL character"}
    ]
    assert nul_row.json()["rejected"] == [
        {"row": 0, "field": "external_id", "problem": "contains a NUL character"}
    ]
    assert unauthenticated.status_code == 401
