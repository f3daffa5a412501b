"""Helpers for the portal tests: a clock the tests move, a browser driving the ASGI app
(cookies kept, a given address and user agent), and a workspace whose run wrote the links."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from cobro.store import tables as t
from cobro.workspace import Workspace

from ..support import business, captured, d, invoice, plain

LINK = re.compile(r"https://pagos\.demo\.example/portal/([A-Za-z0-9_.-]+)")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
IBAN = "ES91 2100 0418 4502 0005 1332"
PAY_URL = (
    "https://pay.example.com/checkout?ref={reference}&amount={amount}&cur={currency}&c={customer}"
)
# The portal: a payment page and bank details (cobro.yaml text added to the starter's).
PORTAL_YAML = {
    "default_policy: consumer": (
        "default_policy: consumer\n"
        "portal:\n"
        f"  pay_url: {PAY_URL}\n"
        "  bank: {holder: Distribuciones Demo S.L., iban: "
        f'"{IBAN}", bic: CAIXESBBXXX, bank: CaixaBank}}\n'
        "  dispute_attachment_max_kb: 64\n"
    )
}
RUN_DAY = d("2025-03-03")  # phase 00 of b2b, 7 days before 2025-03-10
OPENED_AT = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)  # the next day, 11:00 in Madrid


@dataclass
class Clock:
    now: datetime = OPENED_AT

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Browser:
    """One browser: its cookies persist from request to request."""

    app: FastAPI
    ip: str = "203.0.113.7"
    user_agent: str = "Mozilla/5.0 (Portal test)"
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.ip, 50123))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://portal.test",
                cookies=self.cookies,
                headers={"user-agent": self.user_agent},
            ) as client:
                response = await client.request(method, url, **kwargs)
                self.cookies = client.cookies
                return response

        return anyio.run(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def csrf(self, token: str) -> str:
        """Open the page of ``token`` and return its forms' token."""
        page = self.get(f"/portal/{token}")
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)


def two_debtors_claimed(ws: Workspace) -> dict[str, str]:
    """Acme (C1: two EUR items and one in USD) and Other Co (C2), each sent phase 00 by a
    real run; the token of the link in each one's email, by debtor."""
    from cobro.engine.runs import run_day

    business(ws, "C1", "ap@acme.example", "Acme Industrial")
    business(ws, "C2", "ap@other.example", "Other Co")
    invoice(ws, "F-1", "C1", d("2025-02-20"), "100.00")
    invoice(ws, "F-2", "C1", d("2025-03-10"), "250.50")
    invoice(ws, "F-3", "C1", d("2025-03-10"), "50.00", "USD")
    invoice(ws, "G-1", "C2", d("2025-03-10"), "999.00")
    run_day(ws, RUN_DAY)
    tokens: dict[str, str] = {}
    for mail in captured(ws):
        found = LINK.search(plain(mail))
        assert found, plain(mail)
        debtor = "C1" if "acme" in str(mail["To"]) else "C2"
        tokens[debtor] = found.group(1)
    assert set(tokens) == {"C1", "C2"}
    return tokens


def receivable_id(ws: Workspace, number: str) -> int:
    r = t.receivables.c
    with ws.engine.connect() as conn:
        return int(conn.execute(select(r.id).where(r.number == number)).scalar_one())


def outbox_id(ws: Workspace, customer: str) -> int:
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(o.id)
                .join(t.customers, c.id == o.customer_id)
                .where(c.external_id == customer)
            ).scalar_one()
        )


def rows(ws: Workspace, table: Any) -> list[Any]:
    with ws.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))


def evidence_kinds(ws: Workspace) -> list[str]:
    e = t.evidence.c
    with ws.engine.connect() as conn:
        return list(conn.execute(select(e.kind).order_by(e.seq)).scalars())
