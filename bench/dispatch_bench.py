"""Dispatch benchmark: outbox to SMTP, against raw aiosmtplib on the same server.

1. The recording aiosmtpd sink of ``common.py`` runs in another process on 127.0.0.1.
2. A workspace in ``bench/out/dispatch`` (SQLite) gets N debtors with ``--items``
   open receivables each: the first reaches a step on the benchmark date (business
   debtors: policy b2b, phase 01, to the debtor and the sales rep, two messages;
   persons: policy consumer, phase "due", one message), the others fall due later, so
   each claim lists ``--items`` items, as a daily run's claims list a debtor's open
   items. ``cobro.yaml`` points email at the sink with 4 connections. ``run_day`` at
   07:00 company time (before the 09:00 send time) fills the outbox.
3. Pre-rendering for the baseline: ``dispatch_due`` on a copy of the database with the
   channel's transport replaced by one that keeps the bytes in memory. Its rate is
   reported as the pipeline without network.
4. ``--rounds`` rounds, alternating which goes first, each of:
   * dispatch: ``dispatch_due(ws, as_of=10:00 company time)`` on a fresh copy of the
     planned database, timed; the messages the sink received, counted by claim
     (``X-Cobro-Claim``) and recipient, must be the deliveries the database records,
     one each, and as many as were pre-rendered, or the benchmark fails;
   * raw: the pre-rendered bytes sent with raw aiosmtplib over the same number of
     persistent connections, concurrently, to the same sink; the sink must receive
     them all.
   The medians of each are reported.

``--workers N`` (default 1: the dispatch in this process) makes each dispatch round what
``cobro dispatch --workers N`` does: N processes, each a new interpreter opening its own
workspace on the round's copy, each running ``dispatch_due(ws, as_of)`` at once, the rows
shared by claiming (``common.dispatch_in_processes``). They are released together once all
have imported and opened their workspace, and the round is timed from the release to the
last one's end; each compiles the templates it uses on its first messages, inside that
time. The deliveries they report, summed, must be the messages pre-rendered and the sink's
count by claim and recipient, each received once, or the benchmark fails. The raw rounds,
the pre-rendering and ``--profile`` stay in this one process.

Final stdout line: {"bench": "dispatch", "debtors", "items", "messages", "workers", "per_s",
"raw_per_s", "ratio", "rounds", "per_s_rounds", "raw_per_s_rounds", "load_before",
"load_after"}. ``--profile FILE`` then dispatches a fresh copy of the outbox under
cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import (
    BENCH_DATE,
    OUT_DIR,
    MemoryTransport,
    SmtpServerProcess,
    Timer,
    check_received,
    checkpoint,
    copy_sqlite,
    dispatch_in_processes,
    emit,
    load_company,
    loadavg,
    median,
    say,
    send_raw,
    set_covered,
    sqlite_url,
    write_config,
)

ROOT = OUT_DIR / "dispatch"
PLANNED = OUT_DIR / "dispatch-planned.db"
TRIAL = OUT_DIR / "dispatch-trial.db"
RECORDS = OUT_DIR / "dispatch-records.json"


def build_workspace(root: Path, port: int, debtors: int, items: int, connections: int) -> Any:
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
        load_company(
            raw, "sqlite", ws.company_id, debtors, debtors * items, BENCH_DATE, one_each=True
        )
        set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
    return ws


def dispatch_round(
    sink: SmtpServerProcess,
    send_at: datetime,
    expected: int,
    workers: int = 1,
    *,
    root: Path = ROOT,
    fresh: Callable[[], str] | None = None,
    processes: bool = False,
) -> float:
    """``dispatch_due`` on a fresh copy of the planned outbox, in this process or (``workers``
    > 1, or ``processes``) in that many processes at once; its rate, once the sink's count
    by claim and recipient matches the deliveries recorded, one each. ``fresh`` makes the
    copy and returns its database URL (default: the planned SQLite file copied); ``root`` is
    the workspace whose ``cobro.yaml`` the dispatchers read."""
    from cobro.engine.dispatch import DispatchReport
    from cobro.engine.runs import dispatch_due
    from cobro.workspace import open_workspace

    if fresh is None:
        copy_sqlite(PLANNED, TRIAL)
        url = sqlite_url(TRIAL)
    else:
        url = fresh()
    parts: list[tuple[DispatchReport, float]] = []
    if workers == 1 and not processes:
        ws = open_workspace(root, url)
        try:
            with Timer() as tm:
                result = dispatch_due(ws, send_at)
            received = check_received(sink.dump(RECORDS), ws.engine)
        finally:
            ws.close()
        seconds = tm.s
    else:
        seconds, parts = dispatch_in_processes(root, url, send_at, workers)
        result = DispatchReport()
        for part, _ in parts:
            result.add(part)
        ws = open_workspace(root, url)
        try:
            received = check_received(sink.dump(RECORDS), ws.engine)
        finally:
            ws.close()
    say(
        f"[dispatch{f', {workers} process(es)' if parts else ''}] {result.sent:,} rows "
        f"sent, {result.deliveries:,} deliveries ({received:,} received by the sink, one per "
        f"delivery), {result.failed} failed, {result.retrying} retrying, in {seconds:.2f} s "
        f"= {result.deliveries / seconds:,.0f}/s"
        + (
            "; per process: "
            + ", ".join(f"{p.deliveries:,} in {s:.2f} s ({p.lost} lost)" for p, s in parts)
            if parts
            else ""
        )
    )
    if result.deliveries != expected or received != result.deliveries:
        raise SystemExit(
            f"FAILED: dispatch_due made {result.deliveries:,} deliveries"
            f"{f' in {workers} process(es)' if parts else ''} where {expected:,} messages "
            f"were pre-rendered and the sink received {received:,}"
        )
    return result.deliveries / seconds


def prerender(root: Path, url: str, send_at: datetime, rows: int) -> list[tuple[str, str, bytes]]:
    """Every message ``dispatch_due(ws, send_at)`` sends from the planned copy at ``url``, made
    by the real pipeline with the email channel's transport keeping the bytes in memory:
    (sender, recipient, bytes), what the raw rounds send. Prints the rate of that pipeline
    without network (``rows``: the outbox rows planned)."""
    from cobro.engine.runs import dispatch_due, email_channel
    from cobro.workspace import open_workspace

    ws = open_workspace(root, url)
    try:
        channel = email_channel(ws, send_at)
        memory = MemoryTransport()
        channel.transport = memory
        with Timer() as tm:
            report = dispatch_due(ws, send_at, channels={"email": channel})
    finally:
        ws.close()
    messages = memory.messages
    size = sum(len(m[2]) for m in messages) / max(len(messages), 1)
    say(
        f"pipeline without network: {len(messages):,} messages from {rows:,} rows in "
        f"{tm.s:.2f} s = {len(messages) / tm.s:,.0f}/s (avg {size / 1024:.1f} KiB each, "
        f"{report.failed} failed)"
    )
    return messages


def raw_round(sink: SmtpServerProcess, messages: list[tuple[str, str, bytes]], n: int) -> float:
    sent, secs = asyncio.run(send_raw(sink.port, messages, n))
    got = len(sink.dump(RECORDS))
    say(f"[raw] {sent:,} sent, {got:,} received in {secs:.2f} s = {sent / secs:,.0f}/s")
    if sent != len(messages) or got != sent:
        raise SystemExit(f"FAILED: raw aiosmtplib sent {sent:,} and the sink received {got:,}")
    return sent / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=5_000, help="debtors (1 or 2 messages each)")
    ap.add_argument("--items", type=int, default=5, help="open receivables per debtor")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="dispatch and raw rounds, alternating")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes dispatching at once in the measured rounds (cobro dispatch --workers)",
    )
    ap.add_argument("--profile", type=Path, help="profile a further dispatch into this file")
    args = ap.parse_args()
    if not 1 <= args.workers <= 32:
        ap.error("--workers must be from 1 to 32")

    from cobro.engine.runs import dispatch_due, run_day
    from cobro.workspace import open_workspace

    load_before = loadavg()
    say(f"load average before: {load_before}; dispatching in {args.workers} process(es)")
    sink = SmtpServerProcess()
    say(f"SMTP sink (aiosmtpd, recording) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    try:
        ws = build_workspace(ROOT, sink.port, args.debtors, args.items, args.connections)
        tz = ZoneInfo(ws.config.company.timezone)
        plan_at = datetime.combine(BENCH_DATE, clock(7, 0), tzinfo=tz)
        send_at = datetime.combine(BENCH_DATE, clock(10, 0), tzinfo=tz)
        report = run_day(ws, BENCH_DATE, as_of=plan_at)
        say(f"planned {report.planned:,} outbox rows ({report.items:,} items) at {plan_at}")
        ws.close()
        checkpoint(ROOT / "cobro.db")
        copy_sqlite(ROOT / "cobro.db", PLANNED)

        # Pre-render every message with the real pipeline, keeping the bytes.
        copy_sqlite(PLANNED, TRIAL)
        messages = prerender(ROOT, sqlite_url(TRIAL), send_at, report.planned)

        rates: list[float] = []
        raw_rates: list[float] = []
        for i in range(args.rounds):
            say(f"round {i + 1}/{args.rounds} (load {loadavg()})")
            if i % 2 == 0:
                rates.append(dispatch_round(sink, send_at, len(messages), args.workers))
                raw_rates.append(raw_round(sink, messages, args.connections))
            else:
                raw_rates.append(raw_round(sink, messages, args.connections))
                rates.append(dispatch_round(sink, send_at, len(messages), args.workers))

        if args.profile:
            copy_sqlite(PLANNED, TRIAL)
            ws_p = open_workspace(ROOT, sqlite_url(TRIAL))
            profiler = cProfile.Profile()
            profiler.enable()
            dispatch_due(ws_p, send_at)
            profiler.disable()
            ws_p.close()
            sink.dump(RECORDS)
            profiler.dump_stats(args.profile)
            stats = pstats.Stats(str(args.profile), stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)
    finally:
        sink.close()
        for path in (PLANNED, TRIAL):
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

    load_after = loadavg()
    per_s, raw_per_s = median(rates), median(raw_rates)
    say(
        f"dispatch ({args.workers} process(es)) {per_s:,.0f} msg/s vs raw aiosmtplib "
        f"{raw_per_s:,.0f} msg/s (medians of "
        f"{args.rounds} alternating rounds) = {per_s / raw_per_s:.0%} (target >= 80%)"
    )
    say(f"load average after: {load_after}")
    emit(
        {
            "bench": "dispatch",
            "debtors": args.debtors,
            "items": args.items,
            "messages": len(messages),
            "workers": args.workers,
            "per_s": round(per_s, 1),
            "raw_per_s": round(raw_per_s, 1),
            "ratio": round(per_s / raw_per_s, 2),
            "rounds": args.rounds,
            "per_s_rounds": [round(r, 1) for r in rates],
            "raw_per_s_rounds": [round(r, 1) for r in raw_rates],
            "load_before": load_before,
            "load_after": load_after,
        }
    )


if __name__ == "__main__":
    main()
