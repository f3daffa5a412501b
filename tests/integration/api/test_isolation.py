"""The isolation matrix: every route of the API, called with another company's key and
this company's ids, answers 404 and shows nothing of this company; every list, read with
the other company's key, holds none of its rows. The same calls with the company's own
key find the records, so the ids are real.

Every path of the OpenAPI document with a path parameter must be in ``IDS``: a new route
fails this test until it is part of the matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ..portal.helpers import two_debtors_claimed
from .conftest import Server

# The data only acme has: names and ids that must never show through beta's key.
ACME_ONLY = (
    "Acme Industrial",
    "ap@acme.example",
    "F-1",
    "Other Co",
    "Acme Treasury",
    "Acme Gold",
    "hooks.acme.example",
)


def acme_data(server: Server) -> dict[str, Any]:
    """acme's debtors C1 and C2, their receivables, and the claims a real run sent them;
    C1's contact K1 (assigned to stop payments), payment P1, subscription S1 (event
    evt-1) and its charge ch_1; a dispute of F-2 (and its staff task) and a promise to
    pay F-3. Returns the ids Cobro gave: claim, delivery, dispute, task, promise, run."""
    ws = server.companies["acme"]
    two_debtors_claimed(ws)
    collector, admin = server.client("acme", "collector"), server.client("acme", "admin")
    treasurer = {"external_id": "K1", "customer": "C1", "name": "Acme Treasury",
                 "email": "treasury@acme.example", "roles": ["banking"]}  # fmt: skip
    subscription = {"id": "evt-1", "customer": "C1", "subscription": "S1",
                    "plan": "Acme Gold", "price": "39.90"}  # fmt: skip
    charge = {"external_id": "ch_1", "subscription": "S1", "status": "succeeded",
              "amount": "39.90"}  # fmt: skip
    for client, url, body in (
        (admin, "/webhooks", {"url": "https://hooks.acme.example/in", "name": "acme-erp"}),
        (collector, "/contacts", treasurer),
        (admin, "/banking-notices", {"type": "stop_payment", "contacts": ["K1"]}),
        (collector, "/payments", {"external_id": "P1", "customer": "C1", "receivable": "F-1",
                                  "paid_on": "2025-03-01", "amount": "10.00"}),
        (collector, "/events", {"type": "subscription.created", "data": subscription}),
        (collector, "/charges", charge),
    ):  # fmt: skip
        made = client.post(url, json=body)
        assert made.is_success, (url, made.text)
    dispute = collector.post("/disputes", json={"customer": "C1", "item": "F-2", "reason": "x"})
    promise = collector.post(
        "/promises", json={"customer": "C1", "items": ["F-3"], "promised_on": "2025-03-10"}
    )
    assert dispute.is_success and promise.is_success, (dispute.text, promise.text)
    claims = collector.get("/customers/C1/claims").json()["data"]
    claim = next(c for c in claims if c["kind"] == "phase")  # the one the run sent
    (delivery,) = collector.get(f"/claims/{claim['id']}").json()["deliveries"]
    (task,) = collector.get("/tasks").json()["data"]
    (run,) = collector.get("/runs").json()["data"]
    posted = admin.get("/webhooks/deliveries").json()["data"]
    assert posted, "the dispute opened above is posted to acme's endpoint"
    return {
        "webhook_delivery": posted[0]["id"],
        "claim": claim["id"],
        "delivery": delivery["id"],
        "dispute": dispute.json()["id"],
        "promise": promise.json()["id"],
        "task": task["id"],
        "run": run["id"],
    }


# Path template -> how to fill its parameters with acme's ids (from ``acme_data``'s ids).
IDS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "/customers/{external_id}": lambda ids: {"external_id": "C1"},
    "/customers/{external_id}/contacts": lambda ids: {"external_id": "C1"},
    "/contacts/{external_id}": lambda ids: {"external_id": "K1"},
    "/banking-notices/{notice_type}/contacts/{external_id}": lambda ids: {
        "notice_type": "stop_payment",
        "external_id": "K1",
    },
    "/receivables/{external_id}": lambda ids: {"external_id": "F-1"},
    "/payments/{external_id}": lambda ids: {"external_id": "P1"},
    "/subscriptions/{external_id}": lambda ids: {"external_id": "S1"},
    "/subscriptions/{external_id}/charges": lambda ids: {"external_id": "S1"},
    "/charges/{external_id}": lambda ids: {"external_id": "ch_1"},
    "/events/{event_id}": lambda ids: {"event_id": "evt-1"},
    "/customers/{external_id}/claims": lambda ids: {"external_id": "C1"},
    "/claims/{claim_id}": lambda ids: {"claim_id": ids["claim"]},
    "/claims/{claim_id}/deliveries/{delivery_id}/message": lambda ids: {
        "claim_id": ids["claim"],
        "delivery_id": ids["delivery"],
    },
    "/claims/{claim_id}/resend": lambda ids: {"claim_id": ids["claim"]},
    "/disputes/{dispute_id}": lambda ids: {"dispute_id": ids["dispute"]},
    "/disputes/{dispute_id}/resolve": lambda ids: {"dispute_id": ids["dispute"]},
    "/promises/{promise_id}": lambda ids: {"promise_id": ids["promise"]},
    "/tasks/{task_id}": lambda ids: {"task_id": ids["task"]},
    "/tasks/{task_id}/done": lambda ids: {"task_id": ids["task"]},
    "/runs/{run_id}": lambda ids: {"run_id": ids["run"]},
    "/segments/{name}": lambda ids: {"name": "overdue_30"},
    "/segments/{name}/members": lambda ids: {"name": "overdue_30"},
    "/webhooks/{name}": lambda ids: {"name": "acme-erp"},
    "/webhooks/deliveries/{delivery_id}/redeliver": lambda ids: {
        "delivery_id": ids["webhook_delivery"]
    },
}
# The body a POST of the matrix sends (``{}`` when not named): a valid one, so that only
# the id can make it fail.
BODIES: dict[str, dict[str, Any]] = {
    "/disputes/{dispute_id}/resolve": {"decision": "accept"},
}
# Names each company's own configuration defines (segments): another company's key gets
# its own segment of that name, computed over its own debtors, never this company's.
OWN_NAMES = {"/segments/{name}", "/segments/{name}/members"}
# Reads a read-only key may not make (a simulation plans every day of its period).
COLLECTOR_READS = {"/simulation"}
# Reads only an admin key may make (the company's webhook settings).
ADMIN_READS = {"/webhooks", "/webhooks/deliveries"}


def operations(server: Server) -> list[tuple[str, str]]:
    document = server.anonymous().request("GET", "/api/v1/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_every_route_with_an_id_is_in_the_matrix(server: Server) -> None:
    templated = {path for _, path in operations(server) if "{" in path}
    assert templated <= set(IDS), sorted(templated - set(IDS))


def test_another_companys_key_with_this_companys_ids_gets_404_and_nothing(
    server: Server,
) -> None:
    ids = acme_data(server)
    beta, acme = server.client("beta", "admin"), server.client("acme", "admin")
    checked = 0
    for method, path in operations(server):
        if "{" not in path:
            continue
        url = path.format(**IDS[path](ids))
        body: dict[str, Any] | None = BODIES.get(path, {}) if method != "GET" else None
        theirs = beta.request(method, "/api/v1" + url, json=body)
        expected = 200 if path in OWN_NAMES else 404
        assert theirs.status_code == expected, (method, url, theirs.status_code, theirs.text)
        assert not any(word in theirs.text for word in ACME_ONLY), (method, url)
        if method == "GET":
            assert acme.request(method, "/api/v1" + url).status_code == 200, (method, url)
        checked += 1
    assert checked >= len(IDS)


@pytest.mark.parametrize("role", ["admin", "read-only"])
def test_another_companys_lists_hold_none_of_this_companys_rows(server: Server, role: str) -> None:
    acme_data(server)
    beta = server.client("beta", role)
    acme = server.client("acme", role)
    lists = [path for method, path in operations(server) if method == "GET" and "{" not in path]
    assert "/customers" in lists
    for path in lists:
        theirs = beta.request("GET", "/api/v1" + path, params={"limit": 500})
        weak = (role == "read-only" and path in COLLECTOR_READS) or (
            role != "admin" and path in ADMIN_READS
        )
        expected = 403 if weak else 200
        assert theirs.status_code == expected, (path, theirs.text)
        assert not any(word in theirs.text for word in ACME_ONLY), path
    # The same lists with acme's key do show acme's rows: the words are there to find.
    assert "Acme Industrial" in acme.request("GET", "/api/v1/customers").text


# Filters that name a record by the company's own id: filled with acme's ids, read with
# beta's key, they must find nothing of acme's (beta has no record of those ids).
FILTER_IDS = {"customer": "C1", "receivable": "F-1", "subscription": "S1", "endpoint": "acme-erp"}
# Filters naming a record the company must have (an endpoint of its own), refused otherwise.
REFUSED_FILTERS = {("/webhooks/deliveries", "endpoint")}


def filters_of(server: Server) -> list[tuple[str, str]]:
    """(list path, filter) for every list route taking one of ``FILTER_IDS``."""
    document = server.anonymous().request("GET", "/api/v1/openapi.json").json()
    return [
        (path, parameter["name"])
        for path, item in document["paths"].items()
        if "{" not in path and "get" in item
        for parameter in item["get"].get("parameters", [])
        if parameter["in"] == "query" and parameter["name"] in FILTER_IDS
    ]


def test_another_companys_ids_in_a_filter_find_none_of_its_rows(server: Server) -> None:
    acme_data(server)
    beta, acme = server.client("beta", "admin"), server.client("acme", "admin")
    filtered = filters_of(server)
    assert {name for _, name in filtered} == set(FILTER_IDS)
    for path, name in filtered:
        params = {name: FILTER_IDS[name], "limit": 500}
        theirs = beta.request("GET", "/api/v1" + path, params=params)
        assert not any(word in theirs.text for word in ACME_ONLY), (path, name)
        if (path, name) in REFUSED_FILTERS:
            # Refused as a name the company never had is: existence is not revealed.
            never = beta.request("GET", "/api/v1" + path, params={**params, name: "never-was"})
            assert theirs.status_code == never.status_code == 422, (path, theirs.text)
            assert theirs.text.replace(FILTER_IDS[name], "never-was") == never.text
            continue
        assert theirs.status_code == 200, (path, name, theirs.text)
        assert theirs.json()["data"] == [], (path, name)
    # The same filters with acme's key do find acme's rows: the ids are real.
    for path, name in (("/claims", "customer"), ("/payments", "receivable")):
        mine = acme.request("GET", "/api/v1" + path, params={name: FILTER_IDS[name]})
        assert mine.json()["data"], (path, name)


def test_another_companys_ids_in_a_body_are_refused_and_change_nothing(server: Server) -> None:
    """Creating routes whose body names records by id (a debtor, an item, a contact, a
    subscription): beta naming acme's ids is told no such record exists, and acme's
    records are as they were."""
    acme_data(server)
    beta = server.client("beta", "admin")
    acme = server.client("acme", "admin")
    before = {
        url: acme.get(url).json()
        for url in ("/customers/C1", "/receivables/F-3", "/contacts/K1", "/subscriptions/S1")
    }
    for url, body in (
        ("/receivables", {"external_id": "X1", "customer": "C1", "due_on": "2025-03-10",
                          "amount": "1.00"}),
        ("/receivables", {"external_id": "X2", "customer": "C1", "kind": "credit_note",
                          "invoice": "F-3", "due_on": "2025-03-10", "amount": "-1.00"}),
        ("/payments", {"external_id": "X3", "customer": "C1", "receivable": "F-3",
                       "paid_on": "2025-03-01", "amount": "1.00"}),
        ("/contacts", {"external_id": "X4", "customer": "C1", "name": "Intruder",
                       "email": "x@beta.example", "roles": ["billing"]}),
        ("/banking-notices", {"type": "stop_payment", "contacts": ["K1"]}),
        ("/charges", {"external_id": "X5", "subscription": "S1", "status": "succeeded",
                      "amount": "39.90"}),
        ("/disputes", {"customer": "C1", "item": "F-3", "reason": "x"}),
        ("/promises", {"customer": "C1", "items": ["F-3"], "promised_on": "2025-03-10"}),
    ):  # fmt: skip
        theirs = beta.post(url, json=body)
        assert theirs.status_code in (404, 422), (url, theirs.status_code, theirs.text)
        assert not any(word in theirs.text for word in ACME_ONLY), (url, theirs.text)
    after = {url: acme.get(url).json() for url in before}
    assert after == before
    for path in ("/receivables", "/payments", "/contacts", "/charges", "/disputes", "/promises"):
        assert beta.get(path).json()["data"] == [], path
