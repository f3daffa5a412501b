"""A claim that fails for good: named with its debtor, a staff task, ``cobro requeue``; and
``cobro check`` on the SMTP settings."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cli import run_cobro
from .conftest import smtp_server


class Refusing:
    """Accepts mail, except for the addresses in ``refused`` (550 at RCPT)."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.accepted: list[tuple[str, ...]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, _o: Any):  # type: ignore[no-untyped-def]
        if address in self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted.append(tuple(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def refusing() -> Iterator[tuple[Refusing, int]]:
    with smtp_server(Refusing()) as served:
        yield served


def workspace(tmp_path: Path, port: int) -> Path:
    root = tmp_path / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    cfg = root / "cobro.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8")
        .replace("host: capture", "host: 127.0.0.1")
        .replace("port: 587", f"port: {port}"),
        encoding="utf-8",
    )
    (root / "customers.csv").write_text(
        "external_id,name,kind,email\n"
        "B1,Ferretería Norte S.L.,business,pagos@norte.example\n"
        "B2,Atlantic Tools Ltd,business,ap@atlantic.example\n",
        encoding="utf-8",
    )
    (root / "receivables.csv").write_text(
        "external_id,customer,number,due_on,currency,amount\n"
        "R1,B1,F-001,2026-03-01,EUR,1200.00\n"
        "R2,B2,F-002,2026-03-01,EUR,300.00\n",
        encoding="utf-8",
    )
    run_cobro(root, "import", "customers", "customers.csv")
    run_cobro(root, "import", "receivables", "receivables.csv")
    return root


def test_a_claim_refused_for_good_is_named_gets_a_task_and_requeue_sends_it(
    tmp_path: Path, refusing: tuple[Refusing, int]
) -> None:
    handler, port = refusing
    ws = workspace(tmp_path, port)
    handler.refused.add("ap@atlantic.example")

    run = run_cobro(ws, "run", "--date", "2026-02-22", "--json", ok=False)
    report = json.loads(run.stdout)
    assert (report["sent"], report["failed"]) == (1, 1)
    (failure,) = report["failures"]
    assert (failure["customer"], failure["customer_name"]) == ("B2", "Atlantic Tools Ltd")
    assert "550" in failure["reason"]

    tasks = run_cobro(ws, "tasks", "list", "--json").stdout
    assert "delivery_failed" in tasks and "B2" in tasks

    assert run_cobro(ws, "requeue", ok=False).returncode == 2  # which ones?
    listed = json.loads(
        run_cobro(ws, "requeue", "--reason", "no such", "--dry-run", "--json").stdout
    )
    assert listed["requeued"] == 0
    assert [c["customer"] for c in listed["claims"]] == ["B2"]

    handler.refused.clear()  # the address was fixed
    done = json.loads(run_cobro(ws, "requeue", "--debtor", "B2", "--json").stdout)
    assert done["requeued"] == 1
    sent = json.loads(run_cobro(ws, "dispatch", "--json", ok=False).stdout)
    assert (sent["sent"], sent["failed"]) == (1, 0)
    assert sorted(handler.accepted) == [("ap@atlantic.example",), ("pagos@norte.example",)]
    nothing = json.loads(run_cobro(ws, "requeue", "--all", "--json").stdout)
    assert nothing == {"requeued": 0, "claims": []}


def test_check_refuses_an_smtp_port_out_of_range_with_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    cfg = root / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace("port: 587", "port: 99999")
    cfg.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "port: 99999" in s)

    proc = run_cobro(root, "check", ok=False)

    assert proc.returncode == 2
    assert f"{cfg.resolve()}:{line}: channels.email.smtp.port:" in proc.stderr
    assert "Traceback" not in proc.stderr
