"""Data for the collections resources' tests: debtors of acme and of beta, each sent a claim
by a real run (mail caught in the company's ``mail/``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cobro.engine.runs import run_day
from cobro.store import tables as t
from cobro.workspace import Workspace

from ..portal.helpers import LINK
from ..support import business, captured, d, invoice, plain
from .conftest import Server

RUN_DAY = d("2025-03-03")  # phase 00 of b2b, 7 days before 2025-03-10
LATER = d("2025-03-17")  # phase 01 of b2b, two weeks after phase 00


def claimed(server: Server) -> Server:
    """Acme: C1 (F-1 overdue, F-2 due 2025-03-10) and C2 (G-1); beta: its own C1 (H-1).
    Each debtor was sent phase 00 by the run of RUN_DAY."""
    acme, beta = server.companies["acme"], server.companies["beta"]
    business(acme, "C1", "ap@acme.example", "Acme Industrial")
    business(acme, "C2", "ap@other.example", "Other Co")
    invoice(acme, "F-1", "C1", d("2025-02-20"), "100.00")
    invoice(acme, "F-2", "C1", d("2025-03-10"), "250.50")
    invoice(acme, "G-1", "C2", d("2025-03-10"), "999.00")
    business(beta, "C1", "ap@beta-debtor.example", "Beta's C1")
    invoice(beta, "H-1", "C1", d("2025-03-10"), "75.00")
    for ws in (acme, beta):
        run_day(ws, RUN_DAY)
    return server


def claims_of(ws: Workspace) -> dict[str, int]:
    """Debtor external id -> the id of the company's first claim of that debtor."""
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(c.external_id, o.id)
            .join(t.customers, c.id == o.customer_id)
            .where(o.company_id == ws.company_id)
            .order_by(o.id)
        )
        found: dict[str, int] = {}
        for external_id, outbox_id in rows:
            found.setdefault(external_id, int(outbox_id))
        return found


def token_of(ws: Workspace, address: str) -> str:
    """The portal token in the message caught for ``address``."""
    for mail in captured(ws):
        if address in str(mail["To"]):
            found = LINK.search(plain(mail))
            assert found, plain(mail)
            return found.group(1)
    raise AssertionError(f"no message to {address}")


def rows(ws: Workspace, table: Any) -> list[Any]:
    """The company's rows of ``table``, by id."""
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(table).where(table.c.company_id == ws.company_id).order_by(table.c.id)
            )
        )
