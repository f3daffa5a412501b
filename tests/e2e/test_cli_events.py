"""The event and contacts commands end to end, against a real SMTP server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .cli import run_cobro
from .conftest import Inbox


def cobro(
    ws: Path, *args: str, ok: bool = True, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return run_cobro(ws, *args, ok=ok, stdin=stdin)


@pytest.fixture
def ws(tmp_path: Path, inbox: tuple[Inbox, int]) -> Path:
    root = tmp_path / "gym"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    cfg = root / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace("host: capture", "host: 127.0.0.1")
    text = text.replace("port: 587", f"port: {inbox[1]}")
    text = text.replace("email: administracion@demo.example", "email: admin@gym.example")
    cfg.write_text(text, encoding="utf-8")
    (root / "members.csv").write_text(
        "external_id,name,kind,email,language\n"
        "M1,Lucía Gómez,person,lucia@example.com,es\n"
        "E1,Talleres Norte S.L.,business,rrhh@norte.example,es\n",
        encoding="utf-8",
    )
    (root / "contacts.csv").write_text(
        "external_id,customer,name,email,roles\n"
        "K1,E1,Ana Banca,ana@norte.example,banking\n"
        "K2,E1,Luis Banca,luis@norte.example,banking\n"
        "K3,E1,Marta Dirección,marta@norte.example,primary\n"
        "K4,E1,Pedro Ventas,pedro@norte.example,sales_rep\n",
        encoding="utf-8",
    )
    cobro(root, "import", "customers", "members.csv")
    cobro(root, "import", "contacts", "contacts.csv")
    return root


def post(ws: Path, event_type: str, data: dict[str, Any], at: str, ok: bool = True) -> Any:
    proc = cobro(
        ws,
        "event",
        "post",
        event_type,
        "--data",
        "-",
        "--at",
        at,
        "--json",
        stdin=json.dumps(data),
        ok=ok,
    )
    return json.loads(proc.stdout) if ok else proc


def test_subscription_events_send_admin_notice_and_receipt_once(
    ws: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, _ = inbox
    created = {
        "id": "e1",
        "customer": "M1",
        "subscription": "S1",
        "plan": "Mensual Oro",
        "price": "39.90",
        "next_charge_on": "2026-04-01",
    }
    assert post(ws, "subscription.created", created, "2026-03-01T10:00:00+01:00")["sent"] == 0
    charge = {"id": "e2", "subscription": "S1", "charge": "CH1", "amount": "39.90"}
    assert post(ws, "charge.succeeded", charge, "2026-03-01T10:05:00+01:00")["sent"] == 2
    again = post(ws, "charge.succeeded", charge, "2026-03-01T10:06:00+01:00")
    assert again["duplicate"] and again["sent"] == 0
    # Both go out at once, over two connections: in either order.
    assert sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in handler.messages) == [
        ("admin@gym.example", "Nuevo suscriptor: Lucía Gómez · Mensual Oro"),
        ("lucia@example.com", "Distribuciones Demo S.L.: recibo de su pago de 39,90 €"),
    ]
    [receipt] = [m for m in handler.messages if m["To"].addresses[0].addr_spec.startswith("lucia")]
    [pdf] = list(receipt.iter_attachments())
    assert pdf.get_content().startswith(b"%PDF-")


def test_invalid_event_is_refused_with_the_field_and_changes_nothing(ws: Path) -> None:
    proc = post(
        ws, "charge.succeeded", {"id": "x", "subscription": "S1"}, "2026-03-01T10:00:00Z", ok=False
    )
    assert proc.returncode == 2
    assert "charge: Field required" in proc.stderr and "amount: Field required" in proc.stderr
    proc = post(ws, "payment.teleported", {"id": "x"}, "2026-03-01T10:00:00Z", ok=False)
    assert "unknown event type 'payment.teleported'" in proc.stderr
    assert json.loads(cobro(ws, "history", "--json").stdout) == []


def test_banking_contacts_assignment_and_stop_payment_routing(
    ws: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, _ = inbox
    refused = cobro(ws, "contacts", "assign", "stop_payment", "K1", "K4", ok=False)
    assert "K4 does not have the banking & funds transfer role" in refused.stderr
    cobro(ws, "contacts", "assign", "stop_payment", "K1", "K2")
    cobro(ws, "contacts", "assign", "direct_deposit_change", "K1", "K2")
    listed = json.loads(cobro(ws, "contacts", "list", "--json").stdout)
    assert [c["contact"] for c in listed["stop_payment"]] == ["K1", "K2"]

    post(
        ws,
        "stop_payment.created",
        {"id": "sp1", "customer": "E1", "contact": "K2", "details": {"check": "1001"}},
        "2026-03-02T09:00:00Z",
    )
    post(ws, "direct_deposit.change_notice", {"id": "n1", "customer": "E1"}, "2026-03-02T09:00:00Z")
    to = [m["To"].addresses[0].addr_spec for m in handler.messages]
    assert to[0] == "luis@norte.example"  # the stop payment: only the selected contact
    assert sorted(to[1:]) == ["ana@norte.example", "luis@norte.example"]  # sent concurrently

    # Removing asks for confirmation; answering no removes nothing.
    no = cobro(
        ws, "contacts", "unassign", "direct_deposit_change", "K1", "K2", stdin="n\n", ok=False
    )
    assert "Remove K1, K2 from direct_deposit_change" in no.stdout and no.returncode == 1
    cobro(ws, "contacts", "unassign", "direct_deposit_change", "K1", "K2", "--yes")
    post(ws, "direct_deposit.change_notice", {"id": "n2", "customer": "E1"}, "2026-03-02T09:00:00Z")
    assert handler.messages[-1]["To"].addresses[0].addr_spec == "marta@norte.example"
