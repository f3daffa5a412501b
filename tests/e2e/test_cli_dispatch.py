"""``cobro dispatch --watch``: notices of events posted without sending go out as they arrive."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from .cli import COBRO, ENV, run_cobro
from .conftest import Inbox


def cobro(ws: Path, *args: str, stdin: str = "") -> str:
    return run_cobro(ws, *args, stdin=stdin).stdout


def test_watching_dispatchers_send_each_event_notice_once(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    ws = tmp_path / "gym"
    cobro(tmp_path, "init", str(ws))
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace("host: capture", "host: 127.0.0.1")
    cfg.write_text(text.replace("port: 587", f"port: {port}"), encoding="utf-8")
    (ws / "members.csv").write_text(
        "external_id,name,email\n"
        + "".join(f"M{n},Member {n},m{n}@example.com\n" for n in range(5)),
        encoding="utf-8",
    )
    cobro(ws, "import", "customers", "members.csv")

    watcher = subprocess.Popen(
        [
            *COBRO,
            "--workspace",
            str(ws),
            "dispatch",
            "--watch",
            "--workers",
            "2",
            "--poll-ms",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "HOME": str(ws)},
    )
    try:
        for n in range(5):
            event = {
                "id": f"s{n}",
                "customer": f"M{n}",
                "subscription": f"S{n}",
                "plan": "Mensual",
                "price": "20.00",
            }
            cobro(
                ws,
                "event",
                "post",
                "subscription.created",
                "--data",
                "-",
                "--no-send",
                stdin=json.dumps(event),
            )
        for n in range(5):
            charge = {"id": f"c{n}", "subscription": f"S{n}", "charge": f"CH{n}", "amount": "20"}
            cobro(
                ws,
                "event",
                "post",
                "charge.succeeded",
                "--data",
                "-",
                "--no-send",
                stdin=json.dumps(charge),
            )
        # 5 admin notices (new subscriber) and 5 receipts, sent by the watchers alone.
        assert handler.wait_for(10, timeout=60), len(handler.messages)
    finally:
        watcher.send_signal(signal.SIGTERM)
        stdout, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, stderr
    claims = [str(m["X-Cobro-Claim"]) for m in handler.messages]
    assert len(claims) == len(set(claims)) == 10  # none twice
    assert "watching the outbox with 2 process(es)" in stdout and "total: sent" in stdout
    assert json.loads(cobro(ws, "dispatch", "--json"))["sent"] == 0  # nothing left behind
