"""Dispatch benchmark: outbox to SMTP, against raw aiosmtplib on the same server.

1. An aiosmtpd server that accepts, counts and discards mail runs in another
   process on 127.0.0.1 (this script with ``--smtp-server``).
2. A workspace in ``bench/out/dispatch`` (SQLite) gets N debtors, each with
   one receivable reaching a step on the benchmark date: business debtors
   (policy b2b, phase 01: debtor and sales rep, two messages) and persons
   (policy consumer, phase "due": one message). ``cobro.yaml`` points email at
   the server with 4 connections. ``run_day`` at 07:00 company time (before
   the 09:00 send time) fills the outbox.
3. Pre-rendering for the baseline: ``dispatch_due`` on a copy of the database
   with the channel's transport replaced by one that keeps the bytes in
   memory. Its rate is reported as the pipeline without network.
4. Baseline: those bytes sent with raw aiosmtplib over the same number of
   persistent connections, concurrently, to the same server (median of 3).
5. Measured: ``dispatch_due(ws, as_of=10:00 company time)``; deliveries are
   checked against the server's count.

Final stdout line: {"bench": "dispatch", "messages": N, "per_s": X,
"raw_per_s": Y, "ratio": R}. ``--profile FILE`` then dispatches a fresh copy
of the outbox under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import (
    BENCH_DATE,
    OUT_DIR,
    SmtpServerProcess,
    Timer,
    checkpoint,
    copy_sqlite,
    emit,
    load_company,
    median,
    say,
    set_covered,
    sqlite_url,
    write_config,
)

SERVER_LIFETIME_S = 1800  # the server exits by itself after this, whatever happens


# -- the SMTP sink (runs in its own process) ------------------------------------------


def serve() -> None:
    """Accept and discard mail on 127.0.0.1; print the port, then the count on "count"."""
    from aiosmtpd.smtp import SMTP

    class Sink:
        count = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Sink.count += 1
            return "250 2.0.0 accepted"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Sink(), hostname="bench.localhost", ident="cobro-bench sink"),
            "127.0.0.1",
            0,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:  # stdin closed (the benchmark ended or died): stop
            line = await asyncio.wait_for(reader.readline(), SERVER_LIFETIME_S)
            if not line:
                break
            if line.strip() == b"count":
                print(Sink.count, flush=True)
        server.close()

    asyncio.run(main())


class SinkProcess(SmtpServerProcess):
    """The SMTP sink in a child process."""

    def __init__(self) -> None:
        super().__init__(__file__)


# -- helpers ---------------------------------------------------------------------------


class MemoryTransport:
    """Keeps every finished message in memory instead of sending it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []

    async def start(self) -> None:
        return None

    async def deliver(self, sender: str, recipient: str, data: bytes, name: str) -> str:
        self.messages.append((sender, recipient, data))
        return "250 kept"

    async def stop(self) -> None:
        return None


async def send_raw(
    port: int, messages: list[tuple[str, str, bytes]], connections: int
) -> tuple[int, float]:
    """Send pre-built messages over ``connections`` persistent aiosmtplib connections."""
    import aiosmtplib

    queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        try:
            while True:
                try:
                    sender, rcpt, data = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.sendmail(sender, [rcpt], data)
                sent += 1
        finally:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return sent, time.perf_counter() - t0


def build_workspace(root: Path, port: int, debtors: int, connections: int) -> Any:
    from cobro.workspace import open_workspace

    if root.exists():
        for p in root.glob("cobro.db*"):
            p.unlink()
    write_config(
        root,
        {
            "channels.email.smtp.host": "127.0.0.1",
            "channels.email.smtp.port": port,
            "channels.email.smtp.starttls": False,
            "channels.email.smtp.connections": connections,
        },
    )
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    with ws.engine.begin() as conn:
        raw = conn.connection.driver_connection
        load_company(raw, "sqlite", ws.company_id, debtors, debtors, BENCH_DATE, one_each=True)
        set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
    return ws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=5_000, help="debtors (1 or 2 messages each)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--profile", type=Path, help="profile a second dispatch into this file")
    ap.add_argument("--smtp-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.smtp_server:
        serve()
        return

    from sqlalchemy import func, select

    from cobro.engine.runs import dispatch_due, email_channel, run_day
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    sink = SinkProcess()
    say(f"SMTP sink (aiosmtpd) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    root = OUT_DIR / "dispatch"
    try:
        ws = build_workspace(root, sink.port, args.debtors, args.connections)
        tz = ZoneInfo(ws.config.company.timezone)
        plan_at = datetime.combine(BENCH_DATE, clock(7, 0), tzinfo=tz)
        send_at = datetime.combine(BENCH_DATE, clock(10, 0), tzinfo=tz)
        report = run_day(ws, BENCH_DATE, as_of=plan_at)
        with ws.engine.connect() as conn:
            planned = conn.execute(
                select(func.count()).select_from(t.outbox).where(t.outbox.c.status == "planned")
            ).scalar_one()
        say(f"planned {report.planned:,} outbox rows ({report.items:,} items) at {plan_at}")
        ws.close()
        db = root / "cobro.db"
        checkpoint(db)
        pristine = OUT_DIR / "dispatch-planned.db"
        copy_sqlite(db, pristine)

        # Pre-render every message with the real pipeline, keeping the bytes.
        copy_db = OUT_DIR / "dispatch-copy.db"
        copy_sqlite(pristine, copy_db)
        ws_copy = open_workspace(root, sqlite_url(copy_db))
        channel = email_channel(ws_copy, send_at)
        memory = MemoryTransport()
        channel.transport = memory
        with Timer() as tm_mem:
            mem_report = dispatch_due(ws_copy, send_at, channels={"email": channel})
        ws_copy.close()
        messages = memory.messages
        nonet_per_s = len(messages) / tm_mem.s
        size = sum(len(m[2]) for m in messages) / max(len(messages), 1)
        say(
            f"pipeline without network: {len(messages):,} messages from {planned:,} rows "
            f"in {tm_mem.s:.2f} s = {nonet_per_s:,.0f}/s (avg {size / 1024:.1f} KiB each, "
            f"{mem_report.failed} failed)"
        )

        # Baseline: the same bytes over raw aiosmtplib.
        raw_rates = []
        for i in range(3):
            before = sink.count()
            sent, secs = asyncio.run(send_raw(sink.port, messages, args.connections))
            got = sink.count() - before
            raw_rates.append(sent / secs)
            say(
                f"[raw {i + 1}/3] {sent:,} sent, {got:,} received in {secs:.2f} s "
                f"= {sent / secs:,.0f}/s"
            )
        raw_per_s = median(raw_rates)

        # Measured: the dispatcher over SMTP.
        ws = open_workspace(root, sqlite_url(db))
        before = sink.count()
        with Timer() as tm:
            result = dispatch_due(ws, send_at)
        received = sink.count() - before
        ws.close()
        per_s = result.deliveries / tm.s
        say(
            f"dispatch_due: {result.sent:,} rows sent, {result.deliveries:,} deliveries "
            f"({received:,} received by the server), {result.failed} failed, "
            f"{result.retrying} retrying, in {tm.s:.2f} s = {per_s:,.0f}/s"
        )
        if received != result.deliveries or result.deliveries != len(messages):
            say("warning: deliveries, messages received and pre-rendered messages differ")

        if args.profile:
            prof_db = OUT_DIR / "dispatch-profile.db"
            copy_sqlite(pristine, prof_db)
            ws_p = open_workspace(root, sqlite_url(prof_db))
            profiler = cProfile.Profile()
            profiler.enable()
            dispatch_due(ws_p, send_at)
            profiler.disable()
            ws_p.close()
            profiler.dump_stats(args.profile)
            stats = pstats.Stats(str(args.profile), stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)
    finally:
        sink.close()
        for name in ("dispatch-planned.db", "dispatch-copy.db", "dispatch-profile.db"):
            for suffix in ("", "-wal", "-shm"):
                (OUT_DIR / (name + suffix)).unlink(missing_ok=True)

    say(
        f"dispatch {per_s:,.0f} msg/s vs raw aiosmtplib {raw_per_s:,.0f} msg/s "
        f"= {per_s / raw_per_s:.0%} (target >= 80%)"
    )
    emit(
        {
            "bench": "dispatch",
            "messages": result.deliveries,
            "per_s": round(per_s, 1),
            "raw_per_s": round(raw_per_s, 1),
            "ratio": round(per_s / raw_per_s, 2),
        }
    )


if __name__ == "__main__":
    main()
