"""``/promises``, on every database: one taken by phone recorded (items or all), the same
refusals as ``cobro promises add``, kept and broken by the runs, lists filtered and
paged, roles, Idempotency-Key, and one company never reaching another's promises."""

from __future__ import annotations

from cobro.engine.runs import run_day
from cobro.store import tables as t

from ..support import d, pay
from .claimed import claimed, rows
from .conftest import Server

PHONED = {"customer": "C1", "items": ["F-1"], "promised_on": "2025-03-14", "note": "Friday"}


def test_a_promise_taken_by_phone_pauses_its_items_until_the_date_and_the_grace(
    server: Server,
) -> None:
    claimed(server)
    client = server.client("acme", "collector")

    made = client.post("/promises", json=PHONED)
    every = client.post(
        "/promises", json={"customer": "C2", "all": True, "promised_on": "2025-03-04"}
    )

    assert made.status_code == 201, made.text
    promise = made.json()
    assert made.headers["location"] == f"/api/v1/promises/{promise['id']}"
    assert promise == {
        "id": promise["id"],
        "customer": "C1",
        "customer_name": "Acme Industrial",
        "promised_on": "2025-03-14",
        "grace_days": 3,
        "paused_until": "2025-03-17",
        "source": "staff",
        "status": "open",
        "created_at": "2025-03-04T10:00:00Z",
        "claim": None,
        "note": "Friday",
        "settled_at": None,
        "items": [
            {
                "number": "F-1",
                "external_id": "F-1",
                "promised": {"amount": "100.00", "currency": "EUR"},
                "balance": {"amount": "100.00", "currency": "EUR"},
            }
        ],
    }
    assert client.get(f"/promises/{promise['id']}").json() == promise
    assert every.status_code == 201
    assert [i["number"] for i in every.json()["items"]] == ["G-1"]


def test_a_promise_is_refused_as_cobro_promises_add_refuses_it(server: Server) -> None:
    claimed(server)
    client = server.client("acme", "collector")
    assert client.post("/promises", json=PHONED).status_code == 201

    cases = {
        "items and all": ({**PHONED, "all": True}, "body"),
        "neither": ({"customer": "C1", "promised_on": "2025-03-14"}, "body"),
        "no items": ({**PHONED, "items": []}, "body.items"),
        "passed": ({**PHONED, "items": ["F-2"], "promised_on": "2025-03-03"}, "body.promised_on"),
        "too far": ({**PHONED, "items": ["F-2"], "promised_on": "2025-04-04"}, "body.promised_on"),
        "unknown debtor": ({**PHONED, "customer": "NOPE"}, "body.customer"),
        "unknown item": ({**PHONED, "items": ["F-2", "F-9"]}, "body.items.1"),
        "not a date": ({**PHONED, "promised_on": "next week"}, "body.promised_on"),
    }
    for name, (body, field) in cases.items():
        response = client.post("/promises", json=body)
        assert response.status_code == 422, name
        assert field in [e["field"] for e in response.json()["errors"]], (name, response.json())
    again = client.post("/promises", json={**PHONED, "items": ["F-2", "F-1"]})
    assert client.post("/promises", json={**PHONED, "items": ["F-2"]}).status_code == 201
    nothing_left = client.post(
        "/promises", json={"customer": "C1", "all": True, "promised_on": "2025-03-20"}
    )

    assert again.status_code == 409 and "F-1 is already promised" in again.json()["detail"]
    assert nothing_left.status_code == 409
    assert "no open item that is not disputed or promised" in nothing_left.json()["detail"]
    assert len(rows(server.companies["acme"], t.promises)) == 2


def test_promises_kept_and_broken_by_the_runs_are_listed_by_status_and_paged(
    server: Server,
) -> None:
    claimed(server)
    acme = server.companies["acme"]
    client = server.client("acme", "collector")
    broken = client.post("/promises", json={**PHONED, "promised_on": "2025-03-05"}).json()
    kept = client.post(
        "/promises", json={"customer": "C2", "items": ["G-1"], "promised_on": "2025-03-06"}
    ).json()
    still = client.post("/promises", json={**PHONED, "items": ["F-2"]}).json()
    pay(acme, "P1", "C2", "999.00", d("2025-03-05"), receivable="G-1")
    run_day(acme, d("2025-03-10"))  # F-1: unpaid after 2025-03-05 + 3 days of grace

    def found(**params: str) -> list[int]:
        response = client.get("/promises", params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert found() == [broken["id"], kept["id"], still["id"]]
    assert found(status="broken") == [broken["id"]]
    assert found(status="kept") == [kept["id"]]
    assert found(status="open") == [still["id"]]
    assert found(customer="C1") == [broken["id"], still["id"]]
    assert found(customer="C1", status="open") == [still["id"]]
    shown = client.get(f"/promises/{kept['id']}").json()
    assert shown["status"] == "kept" and shown["settled_at"] is not None
    assert shown["items"][0]["balance"] == {"amount": "0.00", "currency": "EUR"}
    first = client.get("/promises", params={"limit": 1}).json()
    second = client.get("/promises", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [p["id"] for p in first["data"] + second["data"]] == [broken["id"], kept["id"]]
    assert client.get("/promises", params={"status": "late"}).status_code == 422


def test_a_read_only_key_cannot_record_a_promise(server: Server) -> None:
    claimed(server)

    refused = server.client("acme", "read-only").post("/promises", json=PHONED)

    assert refused.status_code == 403
    assert rows(server.companies["acme"], t.promises) == []


def test_a_promise_repeated_with_its_idempotency_key_is_recorded_once(server: Server) -> None:
    claimed(server)
    client = server.client("acme", "collector", headers={"idempotency-key": "call-12"})

    first = client.post("/promises", json=PHONED)
    again = client.post("/promises", json=PHONED)  # without the key: 409, already promised

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(rows(server.companies["acme"], t.promises)) == 1


def test_another_companys_promises_are_never_found_or_listed(server: Server) -> None:
    claimed(server)
    made = server.client("acme", "collector").post("/promises", json=PHONED).json()
    beta = server.client("beta", "admin")

    assert beta.get(f"/promises/{made['id']}").status_code == 404
    assert beta.get("/promises").json()["data"] == []
    assert beta.get("/promises", params={"customer": "C1"}).json()["data"] == []
    # Acme's C2 does not exist for beta; beta's own C1 has no item F-1.
    assert beta.post("/promises", json={**PHONED, "customer": "C2"}).status_code == 422
    wrong_item = beta.post("/promises", json=PHONED)
    assert wrong_item.status_code == 422
    assert [e["field"] for e in wrong_item.json()["errors"]] == ["body.items.0"]
    assert rows(server.companies["beta"], t.promises) == []
