"""``cobro resend``: a claim's message sent again, as it was, to a real SMTP server; shown by
``cobro history`` as a resend; the evidence still verifies; bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli import run_cobro
from .conftest import Inbox, smtp_server
from .test_cli_requeue import Refusing


def workspace(tmp_path: Path, port: int, name: str = "acme", company: str = "demo") -> Path:
    root = tmp_path / name
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    cfg = root / "cobro.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8")
        .replace("host: capture", "host: 127.0.0.1")
        .replace("port: 587", f"port: {port}")
        .replace("id: demo ", f"id: {company} "),
        encoding="utf-8",
    )
    (root / "customers.csv").write_text(
        "external_id,name,kind,email\nB1,Ferretería Norte S.L.,business,pagos@norte.example\n",
        encoding="utf-8",
    )
    (root / "receivables.csv").write_text(
        "external_id,customer,number,due_on,currency,amount\nR1,B1,F-001,2026-03-01,EUR,1200.00\n",
        encoding="utf-8",
    )
    run_cobro(root, "import", "customers", "customers.csv")
    run_cobro(root, "import", "receivables", "receivables.csv")
    return root


def body(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[2]


def test_resend_sends_the_same_message_again_and_history_shows_it_as_a_resend(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    ws = workspace(tmp_path, port)
    run_cobro(ws, "run", "--date", "2026-02-22")  # phase 00 of F-001
    assert box.wait_for(1, 10)
    (claim,) = json.loads(run_cobro(ws, "history", "--json").stdout)
    (original,) = claim["deliveries"]

    proc = run_cobro(ws, "resend", str(claim["outbox_id"]))
    assert box.wait_for(2, 10)
    first, again = box.messages
    assert again["To"] == first["To"] and again["Subject"] == first["Subject"]
    assert again["Message-ID"] != first["Message-ID"]
    assert again["X-Cobro-Resend-Of"] == first["Message-ID"]
    for part in ("plain", "html"):
        a, b = first.get_body((part,)), again.get_body((part,))
        assert a is not None and b is not None and a.get_content() == b.get_content()
    assert f"(resend of delivery #{original['id']})" in proc.stdout
    assert f"claim {claim['outbox_id']}: resend" in proc.stdout and "sent" in proc.stdout

    history = json.loads(run_cobro(ws, "history", "--json").stdout)
    (resend,) = [c for c in history if c["resend_of"] == claim["outbox_id"]]
    assert resend["status"] == "sent" and resend["phase_name"].startswith("Resend of claim")
    (delivery,) = resend["deliveries"]
    assert delivery["resend_of"] == original["id"] and delivery["id"] != original["id"]
    table = run_cobro(ws, "history").stdout
    assert f"resend of #{original['id']}" in table

    # The kept message of the resend is the one that arrived.
    kept = run_cobro(ws, "history", "--show-message", str(delivery["id"])).stdout
    assert "X-Cobro-Resend-Of" in kept
    verify = run_cobro(ws, "evidence", "verify")
    assert verify.returncode == 0

    # Run twice, sent twice: each resend is a delivery of its own.
    again_json = json.loads(run_cobro(ws, "resend", str(claim["outbox_id"]), "--json").stdout)
    assert again_json["status"] == "sent" and again_json["resend"] != resend["outbox_id"]
    assert box.wait_for(3, 10)


def test_resend_to_another_address_and_bad_input_refused_with_exit_2(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    ws = workspace(tmp_path, port)
    run_cobro(ws, "run", "--date", "2026-02-22")
    assert box.wait_for(1, 10)
    (claim,) = json.loads(run_cobro(ws, "history", "--json").stdout)
    cid = str(claim["outbox_id"])

    out = json.loads(
        run_cobro(ws, "resend", cid, "--to", "tesoreria@norte.example", "--json").stdout
    )
    assert box.wait_for(2, 10)
    assert box.messages[1]["To"] == "tesoreria@norte.example"
    assert [d["recipient"] for d in out["deliveries"]] == ["tesoreria@norte.example"]

    for args, problem in (
        (["resend", cid, "--to", "x@norte.example\r\nBcc: y@evil.example"], "line break"),
        (["resend", cid, "--to", "no address"], "neither an email address nor a phone number"),
        (["resend", cid, "--to", "+34600111222"], "was not sent to the debtor by sms"),
        (["resend", "4242"], "no claim 4242"),
        (["resend", "x"], "Invalid value"),
    ):
        proc = run_cobro(ws, *args, ok=False)
        assert proc.returncode == 2, proc.stderr
        assert problem in proc.stderr and "Traceback" not in proc.stderr
    assert len(box.messages) == 2  # nothing more was sent

    # A claim of another company (a second workspace on the same database) is unknown.
    other = workspace(tmp_path, port, name="other", company="other")
    db = f"sqlite:///{ws / 'cobro.db'}"
    proc = run_cobro(other, "--db", db, "resend", cid, ok=False)
    assert proc.returncode == 2 and f"no claim {cid}" in proc.stderr


@pytest.fixture
def refusing_server() -> Iterator[tuple[Refusing, int]]:
    with smtp_server(Refusing()) as served:
        yield served


def test_a_resend_refused_by_the_server_exits_1_with_the_reason(
    tmp_path: Path, refusing_server: tuple[Refusing, int]
) -> None:
    handler, port = refusing_server
    ws = workspace(tmp_path, port)
    run_cobro(ws, "run", "--date", "2026-02-22")
    (claim,) = json.loads(run_cobro(ws, "history", "--json").stdout)
    handler.refused.add("pagos@norte.example")

    proc = run_cobro(ws, "resend", str(claim["outbox_id"]), ok=False)
    assert proc.returncode == 1, proc.stderr
    assert "failed" in proc.stdout and "550" in proc.stderr and "no such user" in proc.stderr
    history = json.loads(run_cobro(ws, "history", "--json").stdout)
    (resend,) = [c for c in history if c["resend_of"] == claim["outbox_id"]]
    assert resend["status"] == "failed"
