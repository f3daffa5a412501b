"""``/disputes``, on every database: one taken by phone recorded with its staff task (and
a file), the same refusals as ``cobro disputes open``, lists filtered and paged, resolving,
roles, Idempotency-Key, and one company never reaching another's disputes."""

from __future__ import annotations

import base64
import zlib
from datetime import date

from sqlalchemy import select

import documents
from cobro.store import tables as t

from ..portal.helpers import Browser, receivable_id
from ..support import pay
from .claimed import claimed, claims_of, rows, token_of
from .conftest import NOW, MakeServer, Server

PHONED = {"customer": "C1", "item": "F-2", "reason": "Goods returned on 2025-03-01"}


def test_a_dispute_taken_by_phone_is_recorded_with_a_staff_task(server: Server) -> None:
    claimed(server)
    client = server.client("acme", "collector")

    made = client.post("/disputes", json=PHONED)

    assert made.status_code == 201, made.text
    dispute = made.json()
    assert made.headers["location"] == f"/api/v1/disputes/{dispute['id']}"
    assert dispute == {
        "id": dispute["id"],
        "customer": "C1",
        "customer_name": "Acme Industrial",
        "item": "F-2",
        "item_external_id": "F-2",
        "balance": {"amount": "250.50", "currency": "EUR"},
        "reason": PHONED["reason"],
        "source": "staff",
        "status": "open",
        "opened_at": "2025-03-04T10:00:00Z",
        "claim": None,
        "attachment": None,
        "resolved_at": None,
        "resolution": None,
    }
    assert client.get(f"/disputes/{dispute['id']}").json() == dispute
    (task,) = client.get("/tasks", params={"customer": "C1"}).json()["data"]
    assert task["action"] == f"dispute/{dispute['id']}" and task["status"] == "open"
    assert task["message"] == f"Item F-2 disputed: {PHONED['reason']}"


def test_a_file_sent_with_a_dispute_is_kept_within_the_configured_limit(
    make_server: MakeServer,
) -> None:
    server = claimed(
        make_server(
            {
                "default_policy: consumer": (
                    "default_policy: consumer\nportal:\n  dispute_attachment_max_kb: 2\n"
                )
            }
        )
    )
    client = server.client("acme", "collector")
    pdf = documents.pdf()
    big = b"%PDF-1.4\n" + b"x" * 3000

    def attached(data: bytes, **extra: str) -> dict[str, object]:
        content = extra.pop("content", None) or base64.b64encode(data).decode()
        return {**PHONED, "attachment": {"filename": "note.pdf", "content_base64": content}}

    too_big = client.post("/disputes", json=attached(big))
    not_base64 = client.post("/disputes", json=attached(b"", content="not base64!"))
    kept = client.post("/disputes", json=attached(pdf))

    assert too_big.status_code == 422
    assert [e["field"] for e in too_big.json()["errors"]] == ["body.attachment.content_base64"]
    assert "over the 2 KB limit" in too_big.json()["errors"][0]["problem"]
    assert not_base64.status_code == 422
    assert kept.status_code == 201 and kept.json()["attachment"] == "note.pdf"
    (row,) = rows(server.companies["acme"], t.disputes)
    assert zlib.decompress(row.attachment_zlib) == pdf
    assert row.attachment_type == "application/pdf"


def test_a_dispute_is_refused_as_cobro_disputes_open_refuses_it(server: Server) -> None:
    claimed(server)
    acme = server.companies["acme"]
    pay(acme, "P1", "C1", "100.00", date(2025, 3, 2), receivable="F-1")
    client = server.client("acme", "collector")
    assert client.post("/disputes", json=PHONED).status_code == 201

    cases = {
        "unknown debtor": ({**PHONED, "customer": "NOPE"}, 422, "body.customer"),
        "unknown item": ({**PHONED, "item": "F-9"}, 422, "body.item"),
        "another debtor's item": ({**PHONED, "item": "G-1"}, 422, "body.item"),
        "blank reason": ({**PHONED, "item": "F-1", "reason": "   "}, 422, "body.reason"),
        "unknown field": ({**PHONED, "amount": "1"}, 422, "body.amount"),
    }
    for name, (body, status, field) in cases.items():
        response = client.post("/disputes", json=body)
        assert response.status_code == status, name
        assert field in [e["field"] for e in response.json()["errors"]], name
    again = client.post("/disputes", json=PHONED)
    paid = client.post("/disputes", json={**PHONED, "item": "F-1"})

    assert again.status_code == 409 and "already disputed" in again.json()["detail"]
    assert paid.status_code == 409 and "not open" in paid.json()["detail"]
    assert len(rows(acme, t.disputes)) == 1


def test_disputes_are_listed_by_status_and_debtor_and_paged(server: Server) -> None:
    claimed(server)
    acme = server.companies["acme"]
    # One from the debtor's link, two by phone; one of those resolved.
    token = token_of(acme, "ap@acme.example")
    browser = Browser(server.app)
    csrf = browser.csrf(token)
    form = {"csrf": csrf, "item": str(receivable_id(acme, "F-1")), "reason": "Never ordered"}
    assert browser.post(f"/portal/{token}/disputes", data=form).status_code == 303
    client = server.client("acme", "collector")
    phoned = client.post("/disputes", json=PHONED).json()
    other = client.post("/disputes", json={**PHONED, "customer": "C2", "item": "G-1"}).json()
    assert client.post(f"/disputes/{other['id']}/resolve", json={"decision": "accept"}).is_success
    (portal_row,) = [r for r in rows(acme, t.disputes) if r.source == "portal"]

    def found(**params: str) -> list[int]:
        response = client.get("/disputes", params=params)
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["data"]]

    assert found() == [portal_row.id, phoned["id"], other["id"]]
    assert found(status="open") == [portal_row.id, phoned["id"]]
    assert found(status="accepted") == [other["id"]]
    assert found(status="rejected") == []
    assert found(customer="C2") == [other["id"]]
    assert found(customer="C1", status="open") == [portal_row.id, phoned["id"]]
    shown = client.get(f"/disputes/{portal_row.id}").json()
    assert (shown["source"], shown["claim"], shown["item"]) == (
        "portal",
        claims_of(acme)["C1"],
        "F-1",
    )
    first = client.get("/disputes", params={"limit": 2}).json()
    rest = client.get("/disputes", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in first["data"] + rest["data"]] == found()
    assert rest["next_cursor"] is None
    assert client.get("/disputes", params={"status": "closed"}).status_code == 422


def test_a_dispute_is_resolved_once(server: Server) -> None:
    claimed(server)
    client = server.client("acme", "collector")
    made = client.post("/disputes", json=PHONED).json()
    server.clock.now = NOW.replace(hour=15)

    rejected = client.post(
        f"/disputes/{made['id']}/resolve", json={"decision": "reject", "note": "Delivered"}
    )
    again = client.post(f"/disputes/{made['id']}/resolve", json={"decision": "accept"})
    wrong = client.post(f"/disputes/{made['id']}/resolve", json={"decision": "maybe"})
    unknown = client.post("/disputes/999999/resolve", json={"decision": "accept"})

    assert rejected.status_code == 200
    assert {k: rejected.json()[k] for k in ("status", "resolution", "resolved_at")} == {
        "status": "rejected",
        "resolution": "Delivered",
        "resolved_at": "2025-03-04T15:00:00Z",
    }
    assert again.status_code == 409 and "already rejected" in again.json()["detail"]
    assert wrong.status_code == 422
    assert unknown.status_code == 404
    assert client.get(f"/disputes/{made['id']}").json()["status"] == "rejected"


def test_a_read_only_key_cannot_open_or_resolve_a_dispute(server: Server) -> None:
    claimed(server)
    made = server.client("acme", "collector").post("/disputes", json=PHONED).json()
    reader = server.client("acme", "read-only")

    opened = reader.post("/disputes", json={**PHONED, "item": "F-1"})
    resolved = reader.post(f"/disputes/{made['id']}/resolve", json={"decision": "accept"})

    assert opened.status_code == resolved.status_code == 403
    assert len(rows(server.companies["acme"], t.disputes)) == 1
    assert reader.get(f"/disputes/{made['id']}").json()["status"] == "open"


def test_a_dispute_repeated_with_its_idempotency_key_is_recorded_once(server: Server) -> None:
    claimed(server)
    client = server.client("acme", "collector", headers={"idempotency-key": "call-4711"})

    first = client.post("/disputes", json=PHONED)
    again = client.post("/disputes", json=PHONED)  # without the key: 409, already disputed

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(rows(server.companies["acme"], t.disputes)) == 1
    assert len(rows(server.companies["acme"], t.tasks)) == 1


def test_another_companys_disputes_are_never_found_listed_or_resolved(server: Server) -> None:
    claimed(server)
    made = server.client("acme", "collector").post("/disputes", json=PHONED).json()
    beta = server.client("beta", "admin")

    assert beta.get(f"/disputes/{made['id']}").status_code == 404
    resolve = beta.post(f"/disputes/{made['id']}/resolve", json={"decision": "accept"})
    assert resolve.status_code == 404
    assert beta.get("/disputes").json()["data"] == []
    assert beta.get("/disputes", params={"customer": "C1"}).json()["data"] == []
    # Acme's debtor C2 and acme's item F-2 do not exist for beta (beta has its own C1).
    assert beta.post("/disputes", json={**PHONED, "customer": "C2"}).status_code == 422
    wrong_item = beta.post("/disputes", json=PHONED)
    assert wrong_item.status_code == 422
    assert [e["field"] for e in wrong_item.json()["errors"]] == ["body.item"]
    acme_ws = server.companies["acme"]
    d = t.disputes.c
    with acme_ws.engine.connect() as conn:
        status = conn.execute(select(d.status).where(d.id == made["id"])).scalar_one()
    assert status == "open"
    assert rows(server.companies["beta"], t.disputes) == []
