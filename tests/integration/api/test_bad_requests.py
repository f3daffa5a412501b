"""What a client may send wrong to the collections resources, on every database: ids and
cursors no row can have, days far outside the calendar, NUL characters (PostgreSQL's text
holds none): each refused as a problem naming the field (an id holding a NUL names
nothing: 404), never a server error."""

from __future__ import annotations

import base64
import json

from .conftest import Server


def cursor_of(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_ids_days_cursors_and_nul_characters_are_refused_naming_the_field(
    server: Server,
) -> None:
    client = server.client("acme", "admin")
    huge = 10**30
    cases = [
        ("GET", f"/claims/{huge}", {}, 422, "path.claim_id"),
        ("GET", "/claims/0", {}, 422, "path.claim_id"),
        ("GET", f"/claims/1/deliveries/{huge}/message", {}, 422, "path.delivery_id"),
        ("POST", f"/claims/{huge}/resend", {}, 422, "path.claim_id"),
        ("GET", f"/disputes/{2**31}", {}, 422, "path.dispute_id"),
        ("GET", f"/promises/{huge}", {}, 422, "path.promise_id"),
        ("POST", f"/tasks/{huge}/done", {}, 422, "path.task_id"),
        ("GET", f"/runs/{huge}", {}, 422, "path.run_id"),
        ("GET", "/claims", {"params": {"cursor": cursor_of([huge])}}, 400, "query.cursor"),
        ("GET", "/customers", {"params": {"cursor": cursor_of([huge])}}, 400, "query.cursor"),
        ("GET", "/tasks", {"params": {"cursor": cursor_of([-(2**40)])}}, 400, "query.cursor"),
        (
            "GET",
            "/segments/card_holders/members",
            {"params": {"cursor": cursor_of(["a\x00"])}},
            400,
            "query.cursor",
        ),
        ("GET", "/claims", {"params": {"customer": "C\x001"}}, 422, "query.customer"),
        ("GET", "/claims", {"params": {"step": "b2b/\x00"}}, 422, "query.step"),
        ("GET", "/disputes", {"params": {"customer": "\x00"}}, 422, "query.customer"),
        ("GET", "/promises", {"params": {"customer": "\x00"}}, 422, "query.customer"),
        ("GET", "/tasks", {"params": {"customer": "\x00"}}, 422, "query.customer"),
        ("GET", "/claims", {"params": {"from": "0001-01-01"}}, 422, "query.from"),
        ("GET", "/tasks", {"params": {"due_before": "0001-01-01"}}, 422, "query.due_before"),
        ("GET", "/segments/overdue_30", {"params": {"date": "9999-12-31"}}, 422, "query.date"),
        ("GET", "/runs", {"params": {"to": "0001-01-01"}}, 422, "query.to"),
        (
            "GET",
            "/simulation",
            {"params": {"from": "9999-12-30", "to": "9999-12-31"}},
            422,
            "query.from",
        ),
        ("POST", "/runs", {"json": {"date": "0001-01-01"}}, 422, "body.date"),
        (
            "POST",
            "/disputes",
            {"json": {"customer": "C\x00", "item": "F-1", "reason": "x"}},
            422,
            "body.customer",
        ),
        (
            "POST",
            "/disputes",
            {"json": {"customer": "C1", "item": "F-1", "reason": "no\x00"}},
            422,
            "body.reason",
        ),
        (
            "POST",
            "/promises",
            {"json": {"customer": "C1", "items": ["F\x00"], "promised_on": "2025-03-10"}},
            422,
            "body.items.0",
        ),
        (
            "POST",
            "/promises",
            {"json": {"customer": "C1", "all": True, "promised_on": "0001-01-01"}},
            422,
            "body.promised_on",
        ),
    ]
    # An id holding a NUL character names nothing.
    for path in ("/customers/C%001/claims", "/segments/over%00due_30/members"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.text)
    for method, path, kwargs, status, field in cases:
        response = client.request(method, "/api/v1" + path, **kwargs)
        assert response.status_code == status, (path, kwargs, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
        assert field in [e["field"] for e in response.json()["errors"]], (path, response.text)
