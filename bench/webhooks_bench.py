"""Webhooks benchmark: events emitted into the outbox, then posted, signed, to one endpoint.

1. A receiver runs in another process on 127.0.0.1: uvicorn with a bare ASGI app (this
   script with ``--receiver PORT``) that reads each body and answers 200.
2. A workspace in ``bench/out/webhooks`` (SQLite, or PostgreSQL with ``--pg``) gets the
   starter ``cobro.yaml``, one debtor and one endpoint subscribed to ``task.created``.
3. Measured: ``emit`` of ``--events`` events in one transaction (events per second), then
   one ``dispatch_due`` that posts them all (posts per second: claim, sign, post, record
   each attempt and outcome).

One stdout line, e.g. {"bench": "webhooks", "events": N, "emit_per_s": X,
"posts_per_s": Y, "sent": N}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

from common import OUT_DIR, PG_ADMIN_URL, STARTER


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The receiver: reads the body, answers 200."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--pg", action="store_true")
    ap.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=args.receiver, log_level="warning")
        return

    from cobro.engine.runs import dispatch_due
    from cobro.engine.webhooks import Event, add_endpoint, emit
    from cobro.intake.importer import import_records
    from cobro.workspace import open_workspace, utcnow

    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    root = OUT_DIR / "webhooks"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(STARTER, root / "cobro.yaml")
    url = None
    if args.pg:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS cobro_bench_webhooks WITH (FORCE)")
            conn.execute("CREATE DATABASE cobro_bench_webhooks")
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/cobro_bench_webhooks"
    try:
        for _ in range(100):  # the receiver answers
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        ws = open_workspace(root, url)
        now = utcnow()
        row = {"external_id": "B1", "name": "B1", "kind": "business", "email": "b1@x.example"}
        import_records(ws, "customers", [(1, row)], now, "bench")
        with ws.engine.begin() as conn:
            add_endpoint(
                conn, ws.company_id, f"http://127.0.0.1:{port}/in", now, events="task.created"
            )
            debtor = int(conn.exec_driver_sql("SELECT id FROM customers").scalar_one())
            began = time.perf_counter()
            emit(
                conn,
                ws.company_id,
                [
                    Event("task.created", str(i), debtor, now, {"task": {"id": i}})
                    for i in range(args.events)
                ],
            )
        emit_s = time.perf_counter() - began
        began = time.perf_counter()
        report = dispatch_due(ws, now)
        post_s = time.perf_counter() - began
        ws.close()
    finally:
        receiver.terminate()
        receiver.wait()
    print(
        json.dumps(
            {
                "bench": "webhooks",
                "database": "postgresql" if args.pg else "sqlite",
                "events": args.events,
                "emit_per_s": round(args.events / emit_s),
                "posts_per_s": round(report.sent / post_s),
                "sent": report.sent,
            }
        )
    )


if __name__ == "__main__":
    main()
