"""``/contacts``, ``/customers/{id}/contacts`` and ``/banking-notices`` on every database:
the CSV import's columns and checks (roles, ``banking`` among them), batches with per-row
errors, the assignment of contacts to banking notices (banking role only, all or none,
admin keys), roles, Idempotency-Key, and one company apart from another."""

from __future__ import annotations

from typing import Any

from cobro.store import tables as t

from .conftest import Client, Server
from .records import add_customers, count, page_through

TREASURER = {
    "external_id": "K1",
    "customer": "C1",
    "name": "Marta Ruiz",
    "email": "marta@acme.example",
    "phone": "+34 600 111 222",
    "roles": ["banking", "billing"],
    "language": "es",
}


def contact(ext: str, customer: str = "C1", **fields: Any) -> dict[str, Any]:
    base = {"external_id": ext, "customer": customer, "name": f"Contact {ext}"}
    return base | {"email": f"{ext.lower()}@example.com"} | fields


def assign(client: Client, notice_type: str, contacts: list[str]) -> Any:
    return client.post("/banking-notices", json={"type": notice_type, "contacts": contacts})


def notice(client: Client, notice_type: str) -> Any:
    found = client.get("/banking-notices", params={"type": notice_type})
    assert found.status_code == 200, found.text
    [one] = found.json()
    return one


def people(client: Client) -> None:
    """C1 with K1 (banking, billing), K2 (primary) and K3 (banking); C2 with K4 (banking)."""
    add_customers(client, "C1", "C2")
    rows = [
        TREASURER,
        contact("K2", roles=["primary"]),
        contact("K3", roles=["banking"]),
        contact("K4", customer="C2", roles=["banking"]),
    ]
    assert client.post("/contacts/batch", json={"rows": rows}).json()["inserted"] == 4


def test_a_contact_is_created_then_updated_by_its_external_id(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    made = client.post("/contacts", json=TREASURER)
    updated = client.post(
        "/contacts", json={"external_id": "K1", "customer": "C1", "name": "Marta Ruiz Gil"}
    )
    cleared = client.post("/contacts", json={**TREASURER, "phone": None})

    assert made.status_code == 201
    assert made.json() == {
        "external_id": "K1",
        "customer": "C1",
        "name": "Marta Ruiz",
        "email": "marta@acme.example",
        "phone": "+34600111222",
        "roles": ["billing", "banking"],
        "language": "es",
        "banking": [],
        "updated_at": made.json()["updated_at"],
    }
    assert updated.status_code == 200
    assert updated.json()["name"] == "Marta Ruiz Gil"
    assert updated.json()["email"] == "marta@acme.example"  # left out: kept
    assert cleared.json()["phone"] is None
    assert client.get("/contacts/K1").json() == cleared.json()


def test_a_refused_contact_names_its_field_and_nothing_is_kept(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    unknown_role = client.post("/contacts", json={**TREASURER, "roles": ["treasurer"]})
    no_address = client.post(
        "/contacts", json={"external_id": "K1", "customer": "C1", "name": "Nobody"}
    )
    unknown_customer = client.post("/contacts", json={**TREASURER, "customer": "C9"})
    bad_language = client.post("/contacts", json={**TREASURER, "language": "klingon"})

    assert [e["field"] for e in unknown_role.json()["errors"]] == ["body.roles.0"]
    assert no_address.status_code == 422
    assert no_address.json()["errors"][0] == {
        "field": "body.email",
        "problem": "a contact needs an email or a phone",
    }
    assert [e["field"] for e in unknown_customer.json()["errors"]] == ["body.customer"]
    assert [e["field"] for e in bad_language.json()["errors"]] == ["body.language"]
    assert count(server, "acme", t.contacts) == 0


def test_a_batch_keeps_good_rows_reports_bad_ones_and_warns_of_addresses_left_out(
    server: Server,
) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")
    rows = [
        contact("K1"),
        contact("K2", roles="primary"),  # a list is expected
        contact("K3", customer="C9"),
        contact("K4", email="not-an-address", phone="+34600111333"),
        contact("K5", name=""),
    ]

    report = client.post("/contacts/batch", json={"rows": rows}).json()

    assert (report["inserted"], report["updated"], report["unchanged"]) == (2, 0, 0)
    assert [(e["row"], e["field"]) for e in report["rejected"]] == [
        (1, "roles"),
        (2, "customer"),
        (4, "name"),
    ]
    assert [(w["row"], w["field"]) for w in report["warnings"]] == [(3, "email")]
    assert "stored without it" in report["warnings"][0]["problem"]
    k4 = client.get("/contacts/K4").json()
    assert (k4["email"], k4["phone"]) == (None, "+34600111333")


def test_a_batch_of_10001_contacts_is_refused_whole(server: Server) -> None:
    client = server.client("acme", "collector")
    add_customers(client, "C1")

    response = client.post(
        "/contacts/batch", json={"rows": [contact(f"K{i}") for i in range(10_001)]}
    )

    assert response.status_code == 422
    assert count(server, "acme", t.contacts) == 0


def test_lists_of_contacts_by_debtor_and_role(server: Server) -> None:
    client = server.client("acme", "read-only")
    people(server.client("acme", "collector"))

    def ids(url: str, **params: Any) -> list[str]:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [c["external_id"] for c in response.json()["data"]]

    assert ids("/contacts") == ["K1", "K2", "K3", "K4"]
    assert ids("/contacts", customer="C2") == ["K4"]
    assert ids("/contacts", role="banking") == ["K1", "K3", "K4"]
    assert ids("/customers/C1/contacts") == ["K1", "K2", "K3"]
    assert ids("/customers/C1/contacts", role="primary") == ["K2"]
    assert [c["external_id"] for c in page_through(client, "/contacts", 3)] == [
        "K1",
        "K2",
        "K3",
        "K4",
    ]
    assert client.get("/customers/C9/contacts").status_code == 404
    assert client.get("/contacts", params={"role": "boss"}).status_code == 422


def test_contacts_with_the_banking_role_are_assigned_to_a_banking_notice(
    server: Server,
) -> None:
    people(server.client("acme", "collector"))
    admin = server.client("acme", "admin")

    before = notice(admin, "stop_payment")
    added = assign(admin, "stop_payment", ["K1", "K3"])
    again = assign(admin, "stop_payment", ["K1"])

    assert before == {"type": "stop_payment", "contacts": [], "to_primary_contacts": True}
    assert added.status_code == 200, added.text
    assert added.json()["changed"] == 2
    assert [c["contact"] for c in added.json()["contacts"]] == ["K1", "K3"]
    assert added.json()["contacts"][0] == {
        "contact": "K1",
        "name": "Marta Ruiz",
        "email": "marta@acme.example",
        "customer": "C1",
    }
    assert added.json()["to_primary_contacts"] is False
    assert again.json()["changed"] == 0
    assert admin.get("/contacts/K1").json()["banking"] == ["stop_payment"]
    every = admin.get("/banking-notices").json()
    assert [n["type"] for n in every] == [
        "stop_payment",
        "bulk_stop_payment",
        "direct_deposit_change",
        "direct_deposit_reversal",
    ]
    assert [len(n["contacts"]) for n in every] == [2, 0, 0, 0]


def test_a_contact_without_the_banking_role_is_refused_and_nobody_is_assigned(
    server: Server,
) -> None:
    people(server.client("acme", "collector"))
    admin = server.client("acme", "admin")

    refused = assign(admin, "direct_deposit_change", ["K1", "K2"])
    unknown = assign(admin, "direct_deposit_change", ["K1", "K9"])
    bad_type = assign(admin, "wire_transfer", ["K1"])

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.contacts"
    assert "contact K2 does not have the banking & funds transfer role" in refused.text
    assert unknown.status_code == 422
    assert "no contact with external_id 'K9'" in unknown.text
    assert bad_type.status_code == 422
    assert bad_type.json()["errors"][0]["field"] == "body.type"
    assert notice(admin, "direct_deposit_change")["contacts"] == []


def test_removing_the_last_contact_sends_the_notices_to_the_primary_contacts(
    server: Server,
) -> None:
    people(server.client("acme", "collector"))
    admin = server.client("acme", "admin")
    assert assign(admin, "direct_deposit_reversal", ["K1", "K4"]).is_success

    first = admin.delete("/banking-notices/direct_deposit_reversal/contacts/K1")
    last = admin.delete("/banking-notices/direct_deposit_reversal/contacts/K4")
    not_assigned = admin.delete("/banking-notices/direct_deposit_reversal/contacts/K3")
    unknown = admin.delete("/banking-notices/direct_deposit_reversal/contacts/K9")

    assert (first.json()["changed"], first.json()["to_primary_contacts"]) == (1, False)
    assert (last.json()["changed"], last.json()["to_primary_contacts"]) == (1, True)
    assert last.json()["contacts"] == []
    assert not_assigned.status_code == 200 and not_assigned.json()["changed"] == 0
    assert unknown.status_code == 404


def test_banking_assignments_are_changed_by_admin_keys_only(server: Server) -> None:
    people(server.client("acme", "collector"))

    collector = assign(server.client("acme", "collector"), "stop_payment", ["K1"])
    removal = server.client("acme", "collector").delete("/banking-notices/stop_payment/contacts/K1")
    reading = server.client("acme", "read-only").get("/banking-notices")

    assert collector.status_code == removal.status_code == 403
    assert reading.status_code == 200
    assert count(server, "acme", t.banking_assignments) == 0


def test_one_company_never_sees_or_changes_anothers_contacts(server: Server) -> None:
    people(server.client("acme", "collector"))
    acme = server.client("acme", "admin")
    assert assign(acme, "stop_payment", ["K1"]).is_success
    beta = server.client("beta", "admin")

    assert beta.get("/contacts/K1").status_code == 404
    assert beta.get("/contacts").json()["data"] == []
    assert beta.get("/contacts", params={"customer": "C1"}).json()["data"] == []
    assert beta.get("/customers/C1/contacts").status_code == 404
    assert notice(beta, "stop_payment")["contacts"] == []
    assigned = assign(beta, "stop_payment", ["K3"])
    removed = beta.delete("/banking-notices/stop_payment/contacts/K1")
    written = beta.post("/contacts", json={**TREASURER, "name": "Beta's"})

    assert assigned.status_code == 422  # as for a contact that does not exist
    assert removed.status_code == 404
    assert written.status_code == 422  # beta has no debtor C1
    assert [c["contact"] for c in notice(acme, "stop_payment")["contacts"]] == ["K1"]
    assert acme.get("/contacts/K1").json()["name"] == "Marta Ruiz"
    assert count(server, "beta", t.banking_assignments) == 0


def test_reading_contacts_needs_any_key_and_writing_a_collector_key(server: Server) -> None:
    add_customers(server.client("acme", "collector"), "C1")
    reader = server.client("acme", "read-only")

    assert reader.post("/contacts", json=TREASURER).status_code == 403
    assert reader.post("/contacts/batch", json={"rows": [TREASURER]}).status_code == 403
    assert reader.get("/contacts").status_code == 200
    assert count(server, "acme", t.contacts) == 0


def test_a_contact_posted_again_with_its_idempotency_key_is_answered_the_same(
    server: Server,
) -> None:
    add_customers(server.client("acme", "collector"), "C1")
    client = server.client("acme", "collector", headers={"idempotency-key": "crm-sync-1"})

    first = client.post("/contacts", json=TREASURER)
    again = client.post("/contacts", json=TREASURER)

    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert count(server, "acme", t.contacts) == 1
