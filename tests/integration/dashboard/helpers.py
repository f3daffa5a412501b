"""Helpers for the dashboard tests: a server root of two companies (acme with a small fixed
data set, beta with one debtor), staff users of every role, and a browser that logs in."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from cobro.engine.users import add_user
from cobro.store import tables as t
from cobro.workspace import SERVER_FILE, Workspace

from ..conftest import STARTER_CONFIG, WITHOUT_ACTIONS
from ..support import load

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)  # 11:00 in Madrid: today is 2025-03-04
TODAY = date(2025, 3, 4)
RUN_DAY = date(2025, 3, 3)
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ROLES = ("admin", "collector", "read-only")


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def server_root(path: Path, replace: dict[str, str]) -> Path:
    """A server root at ``path`` with the companies acme and beta (starter config)."""
    path.mkdir()
    (path / SERVER_FILE).write_text("# test server root\n", encoding="utf-8")
    for slug in ("acme", "beta"):
        shutil.copytree(STARTER_CONFIG.parent, path / slug)
        cfg = path / slug / "cobro.yaml"
        text = cfg.read_text(encoding="utf-8")
        for old, new in {**WITHOUT_ACTIONS, "  id: demo ": f"  id: {slug} ", **replace}.items():
            assert old in text, old
            text = text.replace(old, new)
        cfg.write_text(text, encoding="utf-8")
    return path


def users(ws: Workspace, at: datetime = NOW) -> dict[str, str]:
    """A user of each role: role -> email (``<role>@<company>.example``)."""
    slug = ws.config.company.id
    made: dict[str, str] = {}
    with ws.engine.begin() as conn:
        for role in ROLES:
            email = f"{role}@{slug}.example"
            add_user(conn, ws.company_id, email, role, PASSWORD, at)
            made[role] = email
    return made


def acme_data(ws: Workspace) -> None:
    """The fixed data set of docs/reports.md's checks (EUR unless said; today 2025-03-04):

    ====  ====  ==========  ==========  =======  ===========================
    item  who   issued      due         amount   paid
    ====  ====  ==========  ==========  =======  ===========================
    F-1   C1    2024-11-20  2024-12-20  1000.00  100 on 01-20, 300 on 02-10
    F-2   C1    2025-01-15  2025-02-14   500.00  200 on 03-04 (after a claim)
    F-3   C2    2025-02-20  2025-03-22   800.00
    F-4   C2    2024-10-01  2024-10-31   200.00
    F-5   C3    2025-01-01  2025-01-31   400.00  400 on 02-25
    F-6   C3    2025-02-10  2025-02-28   150.00
    F-7   C1    2025-02-01  2025-02-15    50 USD
    ====  ====  ==========  ==========  =======  ===========================
    """
    load(
        ws,
        "customers",
        {
            "external_id": "C1",
            "name": "Acme Industrial",
            "kind": "business",
            "email": "ap@acme-industrial.example",
            "phone": "+34 600 111 222",
        },
        {
            "external_id": "C2",
            "name": "Beta Retail",
            "kind": "business",
            "email": "pay@beta-retail.example",
        },
        {
            "external_id": "C3",
            "name": "Carla Ruiz",
            "kind": "person",
            "email": "carla@example.net",
            "phone": "+34 611 999 888",
        },
    )
    rows = [
        ("F-1", "C1", "2024-11-20", "2024-12-20", "1000.00", None),
        ("F-2", "C1", "2025-01-15", "2025-02-14", "500.00", None),
        ("F-3", "C2", "2025-02-20", "2025-03-22", "800.00", None),
        ("F-4", "C2", "2024-10-01", "2024-10-31", "200.00", None),
        ("F-5", "C3", "2025-01-01", "2025-01-31", "400.00", None),
        ("F-6", "C3", "2025-02-10", "2025-02-28", "150.00", None),
        ("F-7", "C1", "2025-02-01", "2025-02-15", "50.00", "USD"),
    ]
    load(
        ws,
        "receivables",
        *(
            {
                "external_id": n,
                "customer": c,
                "issued_on": i,
                "due_on": d,
                "amount": a,
                **({"currency": cur} if cur else {}),
            }
            for n, c, i, d, a, cur in rows
        ),
    )
    for ext, cust, amount, on, item in (
        ("P0", "C1", "100.00", "2025-01-20", "F-1"),
        ("P1", "C1", "300.00", "2025-02-10", "F-1"),
        ("P2", "C3", "400.00", "2025-02-25", "F-5"),
    ):
        load(
            ws,
            "payments",
            {
                "external_id": ext,
                "customer": cust,
                "amount": amount,
                "paid_on": on,
                "receivable": item,
            },
            now=datetime.fromisoformat(on + "T12:00:00+00:00"),
        )


def customer_id(ws: Workspace, external_id: str) -> int:
    c = t.customers.c
    with ws.engine.connect() as conn:
        return int(
            conn.execute(
                select(c.id).where(c.company_id == ws.company_id, c.external_id == external_id)
            ).scalar_one()
        )


@dataclass
class Browser:
    """One browser on the app: cookies kept from request to request."""

    app: FastAPI
    ip: str = "203.0.113.9"
    scheme: str = "http"
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.ip, 50123))
            async with httpx.AsyncClient(
                transport=transport,
                base_url=f"{self.scheme}://dashboard.test",
                cookies=self.cookies,
                headers={"user-agent": "Mozilla/5.0 (Dashboard test)"},
            ) as client:
                response = await client.request(method, url, **kwargs)
                self.cookies = client.cookies
                return response

        return anyio.run(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def csrf(self, url: str = "/dashboard/") -> str:
        page = self.get(url)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    def login(self, email: str, password: str = PASSWORD, **more: str) -> httpx.Response:
        token = self.csrf("/dashboard/login")
        return self.post(
            "/dashboard/login",
            data={"csrf": token, "email": email, "password": password, **more},
        )

    def form(self, url: str, data: dict[str, Any], page: str = "/dashboard/") -> httpx.Response:
        """POST ``data`` with the form token of ``page``."""
        return self.post(url, data={"csrf": self.csrf(page), **data})


@dataclass(frozen=True)
class Work:
    """What the work screens list on acme (ids): tasks, a dispute, promises."""

    task_today: int  # C1's, due today at 15:00 Madrid
    task_overdue: int  # C3's, due 2025-03-01
    dispute: int  # C1's F-2, opened by staff (it opened a task of its own)
    promise_due: int  # C1's F-1, promised for today
    promise_ahead: int  # C2's F-4, promised for 2025-03-20
    promise_broken: int  # C3's F-6, promised for 2025-02-22 and not paid


def work_data(ws: Workspace) -> Work:
    """Open tasks, an open dispute and promises due, ahead and broken on acme."""
    from zoneinfo import ZoneInfo

    from cobro.engine.pauses import settle_promises
    from cobro.engine.responses import add_promise, open_dispute
    from cobro.engine.tasks import open_task

    madrid = ZoneInfo("Europe/Madrid")
    r = t.receivables.c
    c1, c2, c3 = (customer_id(ws, x) for x in ("C1", "C2", "C3"))
    with ws.engine.begin() as conn:
        item = {
            str(row.number): int(row.id)
            for row in conn.execute(select(r.id, r.number).where(r.company_id == ws.company_id))
        }
        today = open_task(
            conn,
            ws.company_id,
            c1,
            "Call Acme about F-1",
            datetime(2025, 3, 4, 15, 0, tzinfo=madrid),
            NOW,
            TODAY,
        )
        overdue = open_task(
            conn,
            ws.company_id,
            c3,
            "Send Carla the statement",
            datetime(2025, 3, 1, 9, 0, tzinfo=madrid),
            NOW,
            date(2025, 2, 27),
        )
        dispute = open_dispute(
            conn, ws.company_id, c1, item["F-2"], "Goods returned in February", NOW, source="staff"
        )
        due = add_promise(
            conn, ws.company_id, c1, [item["F-1"]], TODAY, 3, NOW,
            today=TODAY, max_days=30, source="staff", note="Transfer on Tuesday",
        )  # fmt: skip
        ahead = add_promise(
            conn, ws.company_id, c2, [item["F-4"]], date(2025, 3, 20), 3, NOW,
            today=TODAY, max_days=30, source="staff",
        )  # fmt: skip
        then = datetime(2025, 2, 20, 10, 0, tzinfo=UTC)
        broken = add_promise(
            conn, ws.company_id, c3, [item["F-6"]], date(2025, 2, 22), 3, then,
            today=date(2025, 2, 20), max_days=30, source="staff",
        )  # fmt: skip
        settled = settle_promises(conn, ws.company_id, TODAY, NOW)
        assert settled.broken == [broken]
    return Work(today, overdue, dispute, due, ahead, broken)
