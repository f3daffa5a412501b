"""A client generated from the live OpenAPI document (openapi-python-client) does an
integrator's day: it imports a CSV file's debtors and their invoices in batches, reads
them back page by page, starts the day's run, waits for its report and reads the claims
it sent. If the document left out an operation, a parameter or a schema, the generated
client could not be built or used: this proves the document is complete for that work."""

from __future__ import annotations

import csv
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from .conftest import Server

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def client_package(server: Server, tmp_path: Path) -> Iterator[ModuleType]:
    document = server.anonymous().request("GET", "/api/v1/openapi.json").json()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    name = f"cobro_client_{abs(hash(str(tmp_path)))}"
    made = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(tmp_path / name),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": f"{GENERATOR.parent}:/usr/bin:/bin"},
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def write_customers_csv(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["external_id", "name", "kind", "email"])
        for i in range(count):
            out.writerow([f"C{i:04d}", f"Debtor {i}", "business", f"ap{i}@example.com"])
        out.writerow(["BAD", "Bad address", "business", "not an address@"])


def test_a_generated_client_imports_a_csv_batch_runs_the_day_and_reads_the_claims(
    server: Server, client_package: ModuleType, tmp_path: Path
) -> None:
    pkg = client_package
    api = {
        name: importlib.import_module(f"{pkg.__name__}.api.customers.{name}")
        for name in ("put_customers", "list_customers")
    } | {
        name: importlib.import_module(f"{pkg.__name__}.api.{tag}.{name}")
        for tag, name in (
            ("receivables", "put_receivables"),
            ("runs", "start_run"),
            ("runs", "get_run"),
            ("claims", "list_claims"),
        )
    }
    models = importlib.import_module(f"{pkg.__name__}.models")
    source = tmp_path / "customers.csv"
    write_customers_csv(source, 250)
    with source.open(encoding="utf-8") as fh:
        rows = [models.CustomerIn.from_dict(row) for row in csv.DictReader(fh)]

    invoices = [
        models.ReceivableIn.from_dict(
            {
                "external_id": f"R{i:04d}",
                "customer": f"C{i:04d}",
                "due_on": "2025-03-10",
                "amount": "100.00",
            }
        )
        for i in range(250)
    ]

    async def integrate() -> tuple[Any, list[str], Any, Any, list[Any]]:
        transport = httpx.ASGITransport(app=server.app)
        client = pkg.AuthenticatedClient(
            base_url="http://api.test/api/v1", token=server.keys["acme"]["collector"]
        )
        client.set_async_httpx_client(
            httpx.AsyncClient(
                transport=transport,
                base_url="http://api.test/api/v1",
                headers={"Authorization": f"Bearer {server.keys['acme']['collector']}"},
            )
        )
        report = await api["put_customers"].asyncio(
            client=client, body=models.CustomerBatch(rows=rows)
        )
        seen: list[str] = []
        cursor = None
        while True:
            page = await api["list_customers"].asyncio(client=client, limit=100, cursor=cursor)
            seen += [c.external_id for c in page.data]
            cursor = page.next_cursor if isinstance(page.next_cursor, str) else None
            if cursor is None:
                break
        booked = await api["put_receivables"].asyncio(
            client=client, body=models.ReceivableBatch(rows=invoices)
        )
        started = await api["start_run"].asyncio(
            client=client, body=models.RunIn.from_dict({"date": "2025-03-03"})
        )
        run = await api["get_run"].asyncio(client=client, run_id=started.id)
        claims: list[Any] = []
        cursor = None
        while True:
            page = await api["list_claims"].asyncio(client=client, limit=100, cursor=cursor)
            claims += page.data
            cursor = page.next_cursor if isinstance(page.next_cursor, str) else None
            if cursor is None:
                return report, seen, booked, run, claims

    report, seen, booked, run, claims = anyio.run(integrate)

    assert report.inserted == 251  # the bad address is a warning: stored without it
    assert report.rejected == []
    assert len(seen) == 251 and seen[0] == "C0000" and "BAD" in seen
    assert (booked.inserted, booked.rejected) == (250, [])
    assert str(run.status) == "finished"
    # Phase 00 of the B2B policy, 7 days before the invoices fall due: one claim each.
    assert len(claims) == 250
    assert {c.customer for c in claims} == {f"C{i:04d}" for i in range(250)}
