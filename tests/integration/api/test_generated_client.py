"""A client generated from the live OpenAPI document (openapi-python-client) does an
integrator's day: it imports a CSV file's debtors in one batch and reads them back page
by page. If the document left out an operation, a parameter or a schema, the generated
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


def test_a_generated_client_imports_a_csv_batch_and_reads_it_back(
    server: Server, client_package: ModuleType, tmp_path: Path
) -> None:
    pkg = client_package
    api = {
        name: importlib.import_module(f"{pkg.__name__}.api.customers.{name}")
        for name in ("put_customers", "list_customers")
    }
    models = importlib.import_module(f"{pkg.__name__}.models")
    source = tmp_path / "customers.csv"
    write_customers_csv(source, 250)
    with source.open(encoding="utf-8") as fh:
        rows = [models.CustomerIn.from_dict(row) for row in csv.DictReader(fh)]

    async def integrate() -> tuple[Any, list[str]]:
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
                return report, seen

    report, seen = anyio.run(integrate)

    assert report.inserted == 251  # the bad address is a warning: stored without it
    assert report.rejected == []
    assert len(seen) == 251 and seen[0] == "C0000" and "BAD" in seen
