"""The API's conventions, on every database: keys and roles, the failed-auth limit,
problem details, cursor pages, Idempotency-Key, and one company never seeing another's."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from cobro.engine.apikeys import revoke_key
from cobro.store import tables as t
from cobro.web.api.auth import FAILURES

from .conftest import NOW, Server

CUSTOMER = {"external_id": "C1", "name": "Acme Industrial", "email": "ap@acme.example"}


def count_customers(server: Server, company: str) -> int:
    ws = server.companies[company]
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(t.customers.c.company_id == ws.company_id)
            ).scalar_one()
        )


def test_a_request_without_a_key_or_with_a_wrong_one_is_refused_401(server: Server) -> None:
    no_key = server.anonymous().get("/customers")
    wrong = server.anonymous(headers={"authorization": "Bearer cobro_abc_def"}).get("/customers")
    forged = server.client()
    forged.key = forged.key[:-2] + ("AA" if not forged.key.endswith("AA") else "BB")

    for response in (no_key, wrong, forged.get("/customers")):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "/api/v1/problems/unauthorized"


def test_a_revoked_key_is_refused_from_the_next_request_on(server: Server) -> None:
    """The server keeps a key it has found (on SQLite it then reads only whether the key
    is still live): revoked on another connection, the key is refused at once."""
    client = server.client("acme", "collector")
    for _ in range(2):  # found, then known
        assert client.get("/customers/C1/claims").status_code == 404
    ws = server.companies["acme"]
    prefix = client.key.split("_")[1]
    with ws.engine.begin() as conn:
        revoke_key(conn, ws.company_id, prefix, NOW)

    assert client.get("/customers/C1/claims").status_code == 401
    assert client.get("/customers").status_code == 401
    assert server.client("acme", "read-only").get("/customers").status_code == 200


def test_a_role_too_weak_is_refused_403_and_changes_nothing(server: Server) -> None:
    refused = server.client("acme", "read-only").post("/customers", json=CUSTOMER)
    accepted = server.client("acme", "collector").post("/customers", json=CUSTOMER)

    assert refused.status_code == 403
    assert refused.json()["type"] == "/api/v1/problems/forbidden"
    assert accepted.status_code == 201
    assert count_customers(server, "acme") == 1


def test_failed_attempts_from_one_address_are_limited_until_the_window_passes(
    server: Server,
) -> None:
    attacker = server.anonymous(ip="192.0.2.66", headers={"authorization": "Bearer nope"})
    for _ in range(FAILURES):
        assert attacker.get("/customers").status_code == 401
    blocked = attacker.get("/customers")
    # Even a right key from that address waits; another address does not.
    right_key_same_address = server.client(ip="192.0.2.66").get("/customers")
    other_address = server.client(ip="192.0.2.67").get("/customers")
    server.clock.now = NOW + timedelta(seconds=61)
    later = server.client(ip="192.0.2.66").get("/customers")

    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 61
    assert right_key_same_address.status_code == 429
    assert other_address.status_code == 200
    assert later.status_code == 200


def test_invalid_input_is_a_problem_naming_each_field_and_nothing_is_kept(
    server: Server,
) -> None:
    response = server.client().post(
        "/customers", json={"external_id": "C1", "name": "", "colour": "red"}
    )

    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/api/v1/problems/invalid-request"
    assert body["title"] == "Unprocessable Entity" and body["status"] == 422
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"body.name", "body.colour"}
    assert count_customers(server, "acme") == 0


def test_a_record_the_importer_refuses_is_a_problem_naming_its_field(server: Server) -> None:
    response = server.client().post("/customers", json={**CUSTOMER, "language": "klingon"})

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.language"]
    assert count_customers(server, "acme") == 0


def test_a_json_number_for_a_text_field_is_refused(server: Server) -> None:
    response = server.client().post("/customers", json={**CUSTOMER, "name": 12.5})
    assert response.status_code == 422


def test_lists_are_paged_by_cursor_without_gaps_or_repeats(server: Server) -> None:
    client = server.client()
    for i in range(7):
        assert client.post("/customers", json={"external_id": f"C{i}", "name": "x"}).is_success
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/customers", params=params).json()
        seen += [c["external_id"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [f"C{i}" for i in range(7)]
    assert pages == 3


def test_a_cursor_not_given_by_the_list_is_refused_400(server: Server) -> None:
    for cursor in ("garbage!", "WyJ4Il0", "W3RydWVd"):
        response = server.client().get("/customers", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert response.json()["errors"][0]["field"] == "query.cursor"


def test_the_same_creating_post_twice_with_one_idempotency_key_makes_one_resource(
    server: Server,
) -> None:
    client = server.client(headers={"idempotency-key": "order-77"})
    first = client.post("/customers", json=CUSTOMER)
    again = client.post("/customers", json=CUSTOMER)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count_customers(server, "acme") == 1


def test_the_same_idempotency_key_with_another_body_is_refused_409(server: Server) -> None:
    client = server.client(headers={"idempotency-key": "k1"})
    assert client.post("/customers", json=CUSTOMER).status_code == 201
    other = client.post("/customers", json={**CUSTOMER, "name": "Changed"})

    assert other.status_code == 409
    assert other.json()["type"] == "/api/v1/problems/idempotency-key-reused"
    assert server.client().get("/customers/C1").json()["name"] == CUSTOMER["name"]


def test_an_idempotency_key_is_kept_24_hours_then_may_be_used_again(server: Server) -> None:
    client = server.client(headers={"idempotency-key": "k2"})
    assert client.post("/customers", json=CUSTOMER).status_code == 201
    server.clock.now = NOW + timedelta(hours=23, minutes=59)
    within = client.post("/customers", json={**CUSTOMER, "name": "Changed"})
    server.clock.now = NOW + timedelta(hours=24, minutes=1)
    after = client.post("/customers", json={**CUSTOMER, "name": "Changed"})

    assert within.status_code == 409
    assert after.status_code == 200  # a new request: the debtor existed, now updated
    assert server.client().get("/customers/C1").json()["name"] == "Changed"


def test_a_refused_request_gives_its_idempotency_key_back(server: Server) -> None:
    client = server.client(headers={"idempotency-key": "k3"})
    refused = client.post("/customers", json={**CUSTOMER, "language": "klingon"})
    fixed = client.post("/customers", json={**CUSTOMER, "language": "klingon"})

    assert refused.status_code == fixed.status_code == 422  # run again, not replayed
    assert "idempotent-replayed" not in fixed.headers


def test_idempotency_keys_are_per_company(server: Server) -> None:
    acme = server.client("acme", headers={"idempotency-key": "same"})
    beta = server.client("beta", headers={"idempotency-key": "same"})

    assert acme.post("/customers", json=CUSTOMER).status_code == 201
    assert beta.post("/customers", json={**CUSTOMER, "name": "Beta's"}).status_code == 201
    assert count_customers(server, "acme") == count_customers(server, "beta") == 1


def test_concurrent_duplicates_make_one_resource(server: Server) -> None:
    """Eight requests with one key at once: one creates, the others are told it is in
    progress or get its answer again; never a second debtor."""
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        client = server.client(headers={"idempotency-key": "race"})
        response = client.post("/customers", json=CUSTOMER)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert sorted(set(statuses)) <= [201, 409]
    assert 201 in statuses
    assert count_customers(server, "acme") == 1


def test_one_company_never_sees_or_changes_anothers_debtor(server: Server) -> None:
    acme, beta = server.client("acme"), server.client("beta")
    assert acme.post("/customers", json=CUSTOMER).status_code == 201

    assert beta.get("/customers/C1").status_code == 404
    assert beta.get("/customers").json()["data"] == []
    made = beta.post("/customers", json={**CUSTOMER, "name": "Beta's own C1"})
    assert made.status_code == 201  # beta's own C1, not acme's updated
    assert acme.get("/customers/C1").json()["name"] == CUSTOMER["name"]
    assert beta.get("/customers/C1").json()["name"] == "Beta's own C1"


def test_the_openapi_document_and_its_docs_page(server: Server) -> None:
    document = server.anonymous().request("GET", "/api/v1/openapi.json")
    docs = server.anonymous().request("GET", "/api/v1/docs")

    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")
    assert "/customers" in document.json()["paths"]
    assert docs.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    bundle = server.anonymous().request("GET", "/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


def test_a_nul_character_in_an_address_is_refused_not_stored(server: Server) -> None:
    """PostgreSQL keeps no NUL in text: an address with one is refused with the record,
    never kept as the unusable address staff see."""
    response = server.client().post("/customers", json={**CUSTOMER, "phone": "6\x0000"})

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.phone"]
    assert count_customers(server, "acme") == 0


def test_a_debtor_batch_refuses_bad_rows_alone_and_keeps_the_others(server: Server) -> None:
    rows = [
        {"external_id": "C1", "name": "Uno"},
        {"external_id": "C2", "name": 12.5},  # not text
        {"external_id": "C3", "name": "Tres", "colour": "red"},  # unknown field
        {"external_id": "C4", "name": "Cuatro", "language": "klingon"},  # the import refuses
        {"external_id": "C5", "name": "Cinco"},
    ]
    report = server.client().post("/customers/batch", json={"rows": rows})

    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["inserted"], body["updated"]) == (2, 0)
    assert sorted((e["row"], e["field"]) for e in body["rejected"]) == [
        (1, "name"),
        (2, "colour"),
        (3, "language"),
    ]
    assert count_customers(server, "acme") == 2


def test_every_route_asks_for_a_key_through_caller() -> None:
    """``caller`` (through Reader, Collector or Admin) authenticates and refuses NUL
    characters: no API route may go without it (the routers add no dependency)."""
    from fastapi.dependencies.utils import get_dependant

    from cobro.web.api import ROUTERS
    from cobro.web.api.auth import ROLE_CHECKS

    def calls(dependant: Any) -> set[Any]:
        found = {d.call for d in dependant.dependencies}
        for d in dependant.dependencies:
            found |= calls(d)
        return found

    routes = [route for router in ROUTERS for route in router.routes]
    assert len(routes) >= 50
    for route in routes:
        dependant = get_dependant(path=route.path, call=route.endpoint)  # type: ignore[attr-defined]
        reached = calls(dependant)
        assert reached & ROLE_CHECKS, f"{route.path} has no Reader, Collector or Admin"


def test_every_post_route_honours_an_idempotency_key() -> None:
    """Every ``POST`` of the API is an ``IdempotentRoute`` (a router made without it would
    run a retried request twice)."""
    from cobro.web.api import ROUTERS
    from cobro.web.api.idempotency import IdempotentRoute

    posts = [
        route
        for router in ROUTERS
        for route in router.routes
        if "POST" in getattr(route, "methods", set())
    ]
    assert len(posts) >= 20
    for route in posts:
        assert isinstance(route, IdempotentRoute), route.path  # type: ignore[attr-defined]


def test_a_key_is_kept_only_as_its_digest(server: Server) -> None:
    """The database holds the key's SHA-256 and its public prefix, never the key or its
    secret part: a copy of the database authenticates nobody."""
    import hashlib

    key = server.keys["acme"]["collector"]
    prefix, secret = key.split("_", 2)[1:]
    ws = server.companies["acme"]
    with ws.engine.connect() as conn:
        row = conn.execute(select(t.api_keys).where(t.api_keys.c.prefix == prefix)).one()

    assert row.digest == hashlib.sha256(key.encode()).hexdigest()
    assert not any(secret in str(value) for value in row._mapping.values())
    assert server.client("acme", "collector").get("/customers").status_code == 200
    digest_as_key = server.anonymous(headers={"authorization": f"Bearer {row.digest}"})
    assert digest_as_key.get("/customers").status_code == 401
