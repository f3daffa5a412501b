"""The live OpenAPI document, checked by schemathesis: every operation, called with
generated input (a bounded number of examples each), never answers 5xx, and every answer
matches the document (status, content type, body schema, headers); input the document
refuses is refused, and no operation answers without a valid key. Input the document
allows may still be refused by the rules the document cannot say (an unknown language, a
cursor this list did not give): that check is left out."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from starlette.routing import Mount

from cobro.web.api import PREFIX
from cobro.web.api.auth import FailedAuth

from .conftest import Server

EXAMPLES = 20


def api_schema(server: Server) -> Any:
    for route in server.app.routes:
        if isinstance(route, Mount) and route.path == PREFIX:
            # Generated calls without a key are expected: they must not lock the test
            # client out of the calls with one.
            route.app.state.failed_auth = FailedAuth(limit=1_000_000)  # type: ignore[attr-defined]
    return schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", server.app)


def test_every_operation_answers_as_documented(server: Server) -> None:
    schema = api_schema(server)
    headers = {"Authorization": f"Bearer {server.keys['acme']['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            case.headers = {**(case.headers or {}), **headers}
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        conforms()


def test_the_document_has_no_json_number_anywhere(server: Server) -> None:
    """Money is a decimal string and counts are integers: no request or answer of the
    document is a JSON number (a binary float), so no generated client reads one."""
    document = server.anonymous().request("GET", f"{PREFIX}/openapi.json").json()
    numbers: list[str] = []
    strings: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "number":
                numbers.append(where)
            if where.endswith(("/amount", "/balance", "/price")) and node.get("type") == "string":
                strings.append(where)
            for name, value in node.items():
                walk(value, f"{where}/{name}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(document, "")
    assert numbers == []
    assert any("/Money" in where for where in strings), strings
