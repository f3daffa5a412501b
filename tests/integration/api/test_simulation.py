"""``/simulation``, on every database: what each day of a period would send and its cost,
with each message on demand, nothing changed; the period's limits; collector keys; one
company's simulation never counting another's debtors."""

from __future__ import annotations

from cobro.store import tables as t

from .claimed import rows
from .conftest import Server
from .test_runs import debtors

PERIOD = {"from": "2025-03-03", "to": "2025-03-05"}


def test_a_simulation_tells_what_each_day_would_send_and_its_cost(server: Server) -> None:
    debtors(server)
    client = server.client("acme", "collector")

    summary = client.get("/simulation", params=PERIOD)
    detailed = client.get("/simulation", params={**PERIOD, "messages": "true"})

    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert (body["from"], body["to"], body["messages"], body["unreachable"], body["tasks"]) == (
        "2025-03-03",
        "2025-03-05",
        2,
        0,
        0,
    )
    assert body["cost"] == {"amount": "0.0010", "currency": "EUR"}
    assert body["detail_truncated"] is False
    first, *rest = body["days"]
    assert first == {
        "date": "2025-03-03",
        "messages": 2,
        "unreachable": 0,
        "held_back": 0,
        "tasks": 0,
        "cost": {"amount": "0.0010", "currency": "EUR"},
        "by_step": {"b2b/00": 2},
        "by_channel": {"email": 2},
        "detail": None,
    }
    assert [(d["date"], d["messages"]) for d in rest] == [("2025-03-04", 0), ("2025-03-05", 0)]
    detail = detailed.json()["days"][0]["detail"]
    assert detail[0] == {
        "customer": "C1",
        "step": "b2b/00",
        "name": "Debt due in the next 7 days",
        "channel": "email",
        "recipients": 1,
        "items": 1,
        "totals": [{"amount": "250.50", "currency": "EUR"}],
        "cost": {"amount": "0.0005", "currency": "EUR"},
        "held_back": None,
        "planned_on": None,
        "call_limit": None,
    }
    assert [m["customer"] for m in detail] == ["C1", "C2"]
    acme = server.companies["acme"]
    assert rows(acme, t.outbox) == [] and rows(acme, t.runs) == []  # nothing changed


def test_a_simulation_period_is_checked(server: Server) -> None:
    client = server.client("acme", "collector")

    backwards = client.get("/simulation", params={"from": "2025-03-05", "to": "2025-03-03"})
    too_long = client.get("/simulation", params={"from": "2025-01-01", "to": "2025-04-04"})
    longest = client.get("/simulation", params={"from": "2025-01-01", "to": "2025-04-03"})
    week = client.get("/simulation", params={"from": "2025-03-05"})
    coming = client.get("/simulation")

    assert backwards.status_code == too_long.status_code == 422
    assert [e["field"] for e in backwards.json()["errors"]] == ["query.to"]
    assert "at most 93 days" in too_long.json()["detail"]
    assert longest.status_code == 200 and len(longest.json()["days"]) == 93
    assert (week.json()["from"], week.json()["to"]) == ("2025-03-05", "2025-03-11")
    assert (coming.json()["from"], coming.json()["to"]) == ("2025-03-04", "2025-03-10")


def test_a_read_only_key_cannot_simulate(server: Server) -> None:
    refused = server.client("acme", "read-only").get("/simulation", params=PERIOD)

    assert refused.status_code == 403


def test_one_companys_simulation_never_counts_anothers_debtors(server: Server) -> None:
    debtors(server)

    beta = server.client("beta", "collector").get(
        "/simulation", params={**PERIOD, "messages": "true"}
    )

    assert beta.json()["messages"] == 1
    assert [m["customer"] for m in beta.json()["days"][0]["detail"]] == ["B1"]
