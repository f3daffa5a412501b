"""The whole daily run: ``cobro run`` of the benchmark company, plan and send, against raw
aiosmtplib sends of the same messages.

1. The cached company of ``common.py`` (``--receivables`` / ``--debtors``, by default
   1,000,000 / 200,000, planned through the day before the benchmark date, every
   debtor at the dunning level daily runs would have left it) is copied into
   ``bench/out/daily/``, whose ``cobro.yaml`` is the starter's with email to the
   recording SMTP sink of ``common.py`` (another process on 127.0.0.1) over
   ``--connections`` (4) connections.
2. Rendering, in this process, on another copy: ``run_day`` of the benchmark date (what
   ``cobro run`` calls) with the email transport keeping each message's bytes in memory.
   The CPU time (``time.process_time``) spent inside ``Dispatcher._compose`` (the
   messages' contexts and templates) and ``EmailChannel.build`` (the MIME bytes) is
   summed: ``cpu_ms_per_message`` is that sum over the messages rendered.
3. Raw baseline: those bytes sent with raw aiosmtplib over as many persistent
   connections to the same sink, once before and once after the measured run
   (``raw_send_s`` is the median).
4. Measured: ``python -m cobro --workspace bench/out/daily run --date 2026-06-15 --json``
   in a process of its own, as a user runs it, on a fresh copy of the company: the wall
   time from starting the process to its exit (``total_s``: interpreter start-up,
   plan, send, checkpoint), and the plan and send phases as the command itself reports
   them on standard error (``plan: ... (0.4 s)``, ``send: ... (12.3 s, ...)``).
5. Check: the messages the sink received, counted by claim (their ``X-Cobro-Claim``
   header) and recipient, must be the email deliveries the database records, one each;
   the raw rounds must have delivered every message. Otherwise the benchmark fails
   (exit status 1).

Final stdout line: {"bench": "daily", "receivables", "debtors", "connections", "planned",
"messages", "plan_s", "send_s", "total_s", "raw_send_s", "ratio" (raw send time over
Cobro's send time: Cobro's rate as a fraction of raw), "cpu_ms_per_message",
"pipeline_cpu_ms_per_message", "run_cpu_s", "run_peak_rss_mb", "load_before",
"load_after"}. Targets: total_s <= 30 at full size, cpu_ms_per_message <= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH_DATE,
    OUT_DIR,
    REPO,
    MemoryTransport,
    SmtpServerProcess,
    Timer,
    check_received,
    copy_sqlite,
    emit,
    ensure_dataset,
    loadavg,
    median,
    say,
    send_raw,
    sqlite_url,
    write_config,
)

ROOT = OUT_DIR / "daily"
_PHASE = re.compile(r"^(plan|send): .*\((\d+(?:\.\d+)?) s[,)]", re.M)


class CpuMeter:
    """Wraps methods so that the process CPU time spent inside them is summed."""

    def __init__(self) -> None:
        self.s = 0.0
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        meter = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                meter.s += time.process_time() - t0

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def prepare(connections: int, port: int) -> None:
    """``bench/out/daily/``: the starter configuration with email to the sink."""
    for p in ROOT.glob("cobro.db*"):
        p.unlink()
    write_config(
        ROOT,
        {
            "channels.email.smtp.host": "127.0.0.1",
            "channels.email.smtp.port": port,
            "channels.email.smtp.starttls": False,
            "channels.email.smtp.connections": connections,
        },
    )


def render(
    pristine: Path, profile: Path | None
) -> tuple[list[tuple[str, str, bytes]], dict[str, Any]]:
    """The day planned and dispatched in this process on a copy, email kept in memory;
    the messages and what rendering them cost."""
    from cobro.channels.email import EmailChannel
    from cobro.domain.calendar import send_instant
    from cobro.engine.dispatch import Dispatcher
    from cobro.engine.runs import email_channel, run_day
    from cobro.workspace import open_workspace

    db = OUT_DIR / "daily-render.db"
    copy_sqlite(pristine, db)
    ws = open_workspace(ROOT, sqlite_url(db))
    meter = CpuMeter()
    meter.wrap(Dispatcher, "_compose")
    meter.wrap(EmailChannel, "build")
    profiler = cProfile.Profile() if profile else None
    try:
        company = ws.config.company
        send_at = send_instant(BENCH_DATE, company.send_time, company.timezone)
        channel = email_channel(ws, send_at)
        memory = MemoryTransport()
        channel.transport = memory
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        with Timer() as tm:
            report = run_day(ws, BENCH_DATE, channels={"email": channel})
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
    finally:
        meter.restore()
        ws.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    messages = memory.messages
    n = max(len(messages), 1)
    size = sum(len(m[2]) for m in messages) / n
    say(
        f"rendered in this process (email kept in memory): planned {report.planned:,} rows "
        f"({report.items:,} items), {len(messages):,} messages (avg {size / 1024:.1f} KiB) in "
        f"{tm.s:.2f} s; CPU {cpu:.2f} s in all, {meter.s:.2f} s composing and building the "
        f"messages = {meter.s / n * 1000:.3f} ms per message"
    )
    if profiler and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(str(profile), stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
    return messages, {
        "planned": report.planned,
        "items": report.items,
        "cpu_ms_per_message": round(meter.s / n * 1000, 3),
        "pipeline_cpu_ms_per_message": round(cpu / n * 1000, 3),
    }


def raw_round(sink: SmtpServerProcess, messages: list[tuple[str, str, bytes]], n: int) -> float:
    sent, secs = asyncio.run(send_raw(sink.port, messages, n))
    got = len(sink.dump(OUT_DIR / "daily-records.json"))
    say(f"[raw] {sent:,} sent, {got:,} received in {secs:.2f} s = {sent / secs:,.0f}/s")
    if sent != len(messages) or got != sent:
        raise SystemExit(f"FAILED: raw aiosmtplib sent {sent:,} and the sink received {got:,}")
    return secs


def cobro_run(db: Path) -> dict[str, Any]:
    """``cobro run`` in its own process: wall time, its phases, its CPU and peak RSS."""
    out, err = OUT_DIR / "daily-run.out", OUT_DIR / "daily-run.err"
    cmd = [
        sys.executable,
        "-m",
        "cobro",
        "--workspace",
        str(ROOT),
        "--db",
        sqlite_url(db),
        "run",
        "--date",
        BENCH_DATE.isoformat(),
        "--json",
    ]
    with out.open("wb") as fo, err.open("wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        total = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
    out.unlink()
    err.unlink()
    sys.stderr.write(stderr)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: cobro run exited with status {proc.returncode}")
    phases = {name: float(secs) for name, secs in _PHASE.findall(stderr)}
    if set(phases) != {"plan", "send"}:
        raise SystemExit(f"FAILED: cobro run did not report its plan and send phases: {stderr!r}")
    report = json.loads(stdout)
    return {
        "report": report,
        "total_s": total,
        "plan_s": phases["plan"],
        "send_s": phases["send"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivables", type=int, default=1_000_000)
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--connections", type=int, default=4, help="SMTP connections (both sides)")
    ap.add_argument("--profile", type=Path, help="cProfile the rendering pass into this file")
    args = ap.parse_args()

    from cobro.workspace import open_workspace

    load_before = loadavg()
    say(f"load average before: {load_before}")
    pristine = ensure_dataset(args.debtors, args.receivables) / "cobro.db"
    sink = SmtpServerProcess()
    say(f"SMTP sink (aiosmtpd, recording) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    db = ROOT / "cobro.db"
    try:
        prepare(args.connections, sink.port)
        messages, rendered = render(pristine, args.profile)
        raw = [raw_round(sink, messages, args.connections)]

        copy_sqlite(pristine, db)
        run = cobro_run(db)
        records = sink.dump(OUT_DIR / "daily-records.json")
        raw.append(raw_round(sink, messages, args.connections))
        ws = open_workspace(ROOT, sqlite_url(db))
        try:
            received = check_received(records, ws.engine)
        finally:
            ws.close()
        report = run["report"]
        if received != report["deliveries"] or received != len(messages):
            raise SystemExit(
                f"FAILED: cobro run reports {report['deliveries']:,} deliveries, the sink "
                f"received {received:,}, the rendering pass made {len(messages):,} messages"
            )
    finally:
        sink.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    load_after = loadavg()
    raw_s = median(raw)
    say(
        f"cobro run: planned {report['planned']:,} rows, {received:,} messages received by the "
        f"sink (one per delivery recorded); plan {run['plan_s']:.1f} s, send "
        f"{run['send_s']:.1f} s, total {run['total_s']:.2f} s (target <= 30 s at 1M); raw "
        f"aiosmtplib {raw_s:.2f} s (rounds {', '.join(f'{s:.2f}' for s in raw)}): Cobro sends "
        f"at {raw_s / run['send_s']:.0%} of the raw rate; rendering "
        f"{rendered['cpu_ms_per_message']:.3f} ms CPU per message (target <= 0.5); the run's "
        f"process {run['cpu_s']:.1f} s CPU, peak RSS {run['peak_rss_mb']:.0f} MB"
    )
    say(f"load average after: {load_after}")
    emit(
        {
            "bench": "daily",
            "receivables": args.receivables,
            "debtors": args.debtors,
            "connections": args.connections,
            "planned": report["planned"],
            "messages": received,
            "plan_s": run["plan_s"],
            "send_s": run["send_s"],
            "total_s": round(run["total_s"], 2),
            "raw_send_s": round(raw_s, 2),
            "ratio": round(raw_s / run["send_s"], 2),
            "cpu_ms_per_message": rendered["cpu_ms_per_message"],
            "pipeline_cpu_ms_per_message": rendered["pipeline_cpu_ms_per_message"],
            "run_cpu_s": round(run["cpu_s"], 1),
            "run_peak_rss_mb": run["peak_rss_mb"],
            "load_before": load_before,
            "load_after": load_after,
        }
    )


if __name__ == "__main__":
    main()
