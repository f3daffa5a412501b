"""What the intake tests share: debtors made through the API, and rows counted in the
database (a company's, to see what a request kept or changed)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, func, select

from .conftest import Client, Server


def count(server: Server, company: str, table: Table) -> int:
    ws = server.companies[company]
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.company_id == ws.company_id)
            ).scalar_one()
        )


def add_customers(client: Client, *external_ids: str) -> None:
    for ext in external_ids:
        made = client.post("/customers", json={"external_id": ext, "name": f"Debtor {ext}"})
        assert made.status_code in (200, 201), made.text


def page_through(client: Client, url: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every row of a list, one page of ``limit`` after another."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit} | ({"cursor": cursor} if cursor else {})
        page = client.get(url, params=query)
        assert page.status_code == 200, page.text
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return seen
