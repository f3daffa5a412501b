"""SMS and push reminders end to end through the CLI, against local Twilio and push services."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.push import BrowserSubscription, FakePushService
from fakes.twilio import FakeTwilio

from .cli import run_cobro


@pytest.fixture
def services() -> Iterator[tuple[FakeTwilio, FakePushService]]:
    with FakeTwilio() as tw, FakePushService() as push:
        yield tw, push


def cobro(
    ws: Path, *args: str, token: str = "", stdin: str = "", ok: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_cobro(ws, *args, ok=ok, stdin=stdin, env={"TWILIO_AUTH_TOKEN": token})


def test_reminders_go_by_push_then_sms_then_email_from_the_cli(
    tmp_path: Path, services: tuple[FakeTwilio, FakePushService]
) -> None:
    tw, push = services
    ws = tmp_path / "gym"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(ws)], check=True)
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    text = text.replace(
        "    cost: 0.0005                 # per message, in the company currency\n",
        "    cost: 0.0005\n"
        "  sms:\n"
        f"    account_sid: {tw.account_sid}\n"
        '    sender: "Gimnasio"\n'
        f"    api_url: {tw.url}\n"
        "  push:\n"
        "    subject: mailto:cobros@gym.example\n",
    ).replace(
        "    channels: [email]            # in order of preference, of email, sms and push\n",
        "    channels: [push, sms, email]\n",
    )
    cfg.write_text(text, encoding="utf-8")

    keys = cobro(ws, "push", "keys").stdout.split()
    public = keys[-1]
    assert (ws / "vapid_private.pem").stat().st_mode & 0o777 == 0o600
    assert cobro(ws, "push", "keys").stdout.split()[-1] == public  # kept, not replaced

    (ws / "members.csv").write_text(
        "external_id,name,email,phone,language\n"
        "M1,Lucía Gómez,lucia@example.com,612345678,es\n"
        "M2,John Smith,john@example.com,+44 7911 123456,en\n"
        "M3,Marta Ruiz,marta@example.com,,es\n",
        encoding="utf-8",
    )
    cobro(ws, "import", "customers", "members.csv")
    browser = BrowserSubscription.create(push, "lucia-phone", application_server_key=public)
    events = [
        ("push.subscribed", {"id": "p1", "customer": "M1", **browser.info}),
        *(
            (
                "subscription.created",
                {
                    "id": f"s{n}",
                    "customer": f"M{n}",
                    "subscription": f"S{n}",
                    "plan": "Mensual Oro",
                    "price": "39.90",
                    "next_charge_on": "2026-03-20",
                },
            )
            for n in (1, 2, 3)
        ),
    ]
    for kind, data in events:
        cobro(
            ws,
            "event",
            "post",
            kind,
            "--data",
            "-",
            "--at",
            "2026-03-01T10:00:00+01:00",
            stdin=json.dumps(data),
        )

    out = cobro(ws, "run", "--date", "2026-03-18", token=tw.auth_token).stdout
    assert "delivered 1 by email, 1 by push, 1 by sms" in out
    [received] = push.received
    assert json.loads(browser.decrypt(received))["title"].endswith("próximo cobro de 39,90 €")
    [sms] = tw.messages
    assert (sms["to"], sms["from_"]) == ("+447911123456", "Gimnasio")
    assert "39,90 €" in sms["body"] or "€39.90" in sms["body"]
    mail = sorted((ws / "mail").rglob("*.eml"))
    assert any(b"marta@example.com" in m.read_bytes() for m in mail)
    assert not any(b"lucia@example.com" in m.read_bytes() for m in mail)

    history = json.loads(cobro(ws, "history", "--customer", "M2", "--json").stdout)
    assert any(
        d["channel"] == "sms" and d["status"] == "sent"
        for c in history
        for d in c.get("deliveries", [])
    ), history
