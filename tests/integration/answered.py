"""A debtor who answered a claim: an opened link, a confirmed read, a dispute, a promise
and a payment, recorded with the functions the portal and staff use; another debtor's
answers between them, so that the first debtor's entries do not follow each other."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from cobro.engine.responses import (
    Attachment,
    Client,
    add_promise,
    open_dispute,
    record_view,
    resolve_dispute,
)
from cobro.engine.runs import run_day
from cobro.store import tables as t
from cobro.workspace import Workspace
from e2e.cli import run_cobro

from .support import business, d, invoice, local, outbox, pay

DAY = d("2025-03-03")  # phase 00 for invoices due 2025-03-10
SCANNER = Client(
    "198.51.100.23", "Mozilla/5.0 (compatible; LinkScanner/2.1; +https://scan.example)"
)
PHONE = Client(
    "203.0.113.7",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
)
OTHER = Client("192.0.2.55", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
REASON = "Goods returned on 28 February <delivery note 77>"
PROMISED_ON = DAY + timedelta(days=10)


@dataclass(frozen=True)
class Answered:
    c1: int  # customer ids
    c2: int
    claim: int  # C1's claim (outbox id)
    other_claim: int  # C2's
    opened: int  # claim_views ids
    read: int
    other_read: int
    dispute: int
    other_dispute: int
    promise: int


def answered(ws: Workspace) -> Answered:
    business(ws, "C1", "ap@one.example", name="Uno Distribuciones S.L.")
    business(ws, "C2", "ap@two.example", name="Dos Logística S.A.")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")
    invoice(ws, "F-2", "C1", d("2025-03-10"), "250.00")
    invoice(ws, "G-1", "C2", d("2025-03-10"), "70.00")
    invoice(ws, "G-2", "C2", d("2025-03-10"), "30.00")
    assert run_day(ws, DAY).sent == 2
    claims = {r.customer: r for r in outbox(ws)}
    cu, r = t.customers.c, t.receivables.c
    with ws.engine.connect() as conn:
        ids = dict(conn.execute(select(cu.external_id, cu.id)).all())
        items = dict(conn.execute(select(r.number, r.id)).all())
    c1, c2 = int(ids["C1"]), int(ids["C2"])
    claim, other = int(claims["C1"].id), int(claims["C2"].id)
    at = local(ws, DAY, "10:00")
    with ws.engine.begin() as conn:
        opened = record_view(conn, ws.company_id, c1, claim, "opened", at, SCANNER)
        other_read = record_view(
            conn, ws.company_id, c2, other, "read", at + timedelta(minutes=5), OTHER
        )
        read = record_view(
            conn, ws.company_id, c1, claim, "read", at + timedelta(minutes=20), PHONE
        )
        dispute = open_dispute(
            conn,
            ws.company_id,
            c1,
            items["F-2"],
            REASON,
            at + timedelta(minutes=25),
            source="portal",
            client=PHONE,
            outbox_id=claim,
            attachment=Attachment("albaran-77.pdf", "application/pdf", b"%PDF-1.4 note 77"),
        )
        other_dispute = open_dispute(
            conn,
            ws.company_id,
            c2,
            items["G-2"],
            "Not ordered",
            at + timedelta(minutes=28),
            source="portal",
            client=OTHER,
            outbox_id=other,
        )
        promise = add_promise(
            conn,
            ws.company_id,
            c1,
            [items["F-1"]],
            PROMISED_ON,
            3,
            at + timedelta(minutes=30),
            today=DAY,
            max_days=30,
            source="portal",
            client=PHONE,
            outbox_id=claim,
        )
        resolve_dispute(
            conn, ws.company_id, other_dispute, False, "Order form signed", at + timedelta(hours=1)
        )
    pay(ws, "P-1", "C1", "100.00", DAY + timedelta(days=5), receivable="F-1")
    return Answered(c1, c2, claim, other, opened, read, other_read, dispute, other_dispute, promise)


def cobro(ws: Workspace, *args: str, ok: bool = False) -> subprocess.CompletedProcess[str]:
    url = ws.engine.url.render_as_string(hide_password=False)
    return run_cobro(ws.root, "--db", url, *args, ok=ok)


def evidence_verify_fails(ws: Workspace) -> str:
    """What ``cobro evidence verify`` prints on stderr; it must exit 1."""
    proc = cobro(ws, "evidence", "verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "evidence does not hold" in proc.stderr
    return proc.stderr
