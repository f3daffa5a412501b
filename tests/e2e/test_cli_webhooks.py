"""``cobro webhooks`` as a user runs it: endpoints added, listed and removed, events that
reach a real receiver signed, ``cobro dispatch`` killed with SIGKILL while a post is on the
wire, and bad input refused in one line with exit 2."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakes.webhooks import WebhookReceiver

from .cli import COBRO, ENV, run_cobro

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


def as_json(ws: Path, *args: str) -> Any:
    return json.loads(run_cobro(ws, *args, "--json").stdout)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """B1 owes F-001, overdue."""
    root = tmp_path / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    (root / "customers.csv").write_text(
        "external_id,name,kind,email\nB1,Ferretería Norte S.L.,business,pagos@norte.example\n",
        encoding="utf-8",
    )
    (root / "receivables.csv").write_text(
        "external_id,customer,number,due_on,currency,amount\nR1,B1,F-001,2025-01-10,EUR,1200.00\n",
        encoding="utf-8",
    )
    run_cobro(root, "import", "customers", "customers.csv")
    run_cobro(root, "import", "receivables", "receivables.csv")
    return root


@pytest.fixture
def receiver() -> Any:
    with WebhookReceiver() as found:
        yield found


def add(ws: Path, url: str, *args: str) -> str:
    """``cobro webhooks add``; the secret it prints once."""
    out = run_cobro(ws, "webhooks", "add", url, *args).stdout
    found = SECRET.findall(out)
    assert len(found) == 1, out
    return found[0]


def test_endpoints_are_added_listed_and_removed_and_the_secret_is_shown_once(
    ws: Path, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), "--name", "helpdesk", "--events", "dispute.opened")
    add(ws, "https://warehouse.example/in")  # every event type, named after its host

    listed = as_json(ws, "webhooks", "list")
    assert [(x["name"], x["url"], x["events"], x["enabled"]) for x in listed] == [
        ("helpdesk", receiver.url(), ["dispute.opened"], True),
        ("warehouse-example", "https://warehouse.example/in", ["*"], True),
    ]
    table = run_cobro(ws, "webhooks", "list").stdout
    assert "helpdesk" in table and "every type" in table
    assert "whsec_" not in json.dumps(listed) + table
    run_cobro(ws, "webhooks", "disable", "helpdesk")
    assert [x["enabled"] for x in as_json(ws, "webhooks", "list")] == [False, True]

    run_cobro(ws, "webhooks", "remove", "warehouse-example")
    assert [x["name"] for x in as_json(ws, "webhooks", "list")] == ["helpdesk"]
    assert secret.startswith("whsec_")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["add", "ftp://files.example/in"],
            "'ftp://files.example/in': a webhook URL starts with https:// (or http://)",
        ),
        (["add", "https://"], "'https://': the URL has no host"),
        (
            ["add", "https://user:pw@h.example/in"],
            "https://h.example...: the URL carries a user name or password; leave it out "
            "(each post is signed with the endpoint's secret)",
        ),
        (
            ["add", "https://h.example/in", "--events", "claim.sent,claim.snet"],
            "unknown event type 'claim.snet' (did you mean 'claim.sent'?); the event types are "
            "account.blocked, account.unblocked, claim.sent, claim.failed, message.bounced, "
            "read.confirmed, dispute.opened, dispute.resolved, promise.broken, task.created",
        ),
        (
            ["add", "https://h.example/in", "--name", "help desk"],
            "endpoint name 'help desk': 1 to 40 letters, digits, '-' and '_' (e.g. helpdesk)",
        ),
        (
            ["add", "https://h.example/in", "--name", "taken"],
            "an endpoint named 'taken' exists already; choose another --name",
        ),
        (["remove", "nope"], "no webhook endpoint named 'nope'; the endpoints are taken"),
        (
            ["deliveries", "--status", "lost"],
            "unknown status 'lost'; the statuses are planned, sending, sent, failed, cancelled",
        ),
        (["deliveries", "--endpoint", "nope"], "no webhook endpoint named 'nope'; the "),
        (["redeliver", "999"], "no webhook delivery 999"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(ws: Path, args: list[str], message: str) -> None:
    add(ws, "https://taken.example/in", "--name", "taken")
    proc = run_cobro(ws, "webhooks", *args, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr


@pytest.mark.parametrize(
    "args", [["redeliver", "2147483648"], ["deliveries", "--before", "99999999999"]]
)
def test_a_delivery_id_no_database_can_hold_is_refused_with_exit_2(
    ws: Path, args: list[str]
) -> None:
    """Delivery ids are 32-bit (PostgreSQL's integer column refuses a larger one)."""
    proc = run_cobro(ws, "webhooks", *args, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is not in the range 1<=x<=2147483647" in proc.stderr


def test_a_dispute_taken_by_phone_reaches_the_endpoint_signed_with_its_attempts_listed(
    ws: Path, receiver: WebhookReceiver
) -> None:
    secret = add(
        ws, receiver.url(), "--name", "helpdesk", "--events", "dispute.opened,task.created"
    )
    run_cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "never delivered")

    dispatched = run_cobro(ws, "dispatch", "--json")

    totals = json.loads(dispatched.stdout)
    assert (totals["sent"], totals["by_channel"]) == (2, {"webhook": 2})
    bodies = {r.verify(secret)["type"]: r.verify(secret)["data"] for r in receiver.received}
    assert set(bodies) == {"dispute.opened", "task.created"}
    assert bodies["dispute.opened"]["customer"] == {"id": "B1", "name": "Ferretería Norte S.L."}
    assert bodies["dispute.opened"]["dispute"]["item"] == {
        "number": "F-001",
        "balance": {"amount": "1200.00", "currency": "EUR"},
    }
    listed = as_json(ws, "webhooks", "deliveries", "--endpoint", "helpdesk")
    assert sorted(x["event"] for x in listed) == ["dispute.opened", "task.created"]
    assert all(x["status"] == "sent" for x in listed)
    assert all([a["status_code"] for a in x["attempts"]] == [200] for x in listed)
    table = run_cobro(ws, "webhooks", "deliveries").stdout
    assert "dispute.opened" in table and "HTTP 200" in table
    everything = dispatched.stdout + dispatched.stderr + json.dumps(listed) + table
    assert secret not in everything


def test_kill_9_of_cobro_dispatch_mid_delivery_then_a_restart_delivers_it_once(
    ws: Path, receiver: WebhookReceiver
) -> None:
    secret = add(ws, receiver.url(), "--name", "helpdesk", "--events", "dispute.opened")
    run_cobro(ws, "disputes", "open", "B1", "F-001", "--reason", "never delivered")
    receiver.hold(1)
    sender = subprocess.Popen(
        [*COBRO, "--workspace", str(ws), "dispatch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**ENV, "HOME": str(ws)},
    )
    try:
        assert receiver.wait_for(1, timeout=60), "the post never arrived"
        sender.send_signal(signal.SIGKILL)
        sender.communicate(timeout=60)
    finally:
        receiver.release()
    assert sender.returncode == -signal.SIGKILL
    assert as_json(ws, "webhooks", "deliveries")[0]["status"] == "sending"

    again = json.loads(run_cobro(ws, "dispatch", "--json").stdout)

    assert again["sent"] == 1
    first, second = receiver.received
    assert first.status is None and second.accepted
    assert first.webhook_id == second.webhook_id
    assert second.verify(secret)["type"] == "dispute.opened"
    (delivery,) = as_json(ws, "webhooks", "deliveries")
    assert delivery["status"] == "sent"
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [(2, 200)]
    assert json.loads(run_cobro(ws, "dispatch", "--json").stdout)["sent"] == 0
    assert len(receiver.received) == 2


def test_cobro_check_names_a_webhook_no_endpoint_has_until_it_is_added(ws: Path) -> None:
    """A typo in a phase's ``webhook:`` is found by ``cobro check``, at its line, not when
    the phase is first sent."""
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(
        text.replace(
            "        template: b2b_01\n", "        template: b2b_01\n        webhook: helpdsk\n"
        ),
        encoding="utf-8",
    )
    line = cfg.read_text(encoding="utf-8").splitlines().index("        webhook: helpdsk") + 1

    before = run_cobro(ws, "check", ok=False)
    add(ws, "https://tickets.example/in", "--name", "helpdsk")
    after = run_cobro(ws, "check")

    assert before.returncode == 2
    assert f"cobro.yaml:{line}: policies.b2b.phases.1.webhook: no webhook endpoint is named" in (
        before.stderr
    )
    assert "'helpdsk'" in before.stderr and "cobro webhooks add" in before.stderr
    assert after.stdout.strip().endswith(": OK")
