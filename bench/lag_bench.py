"""Queue lag benchmark: ``charge.succeeded`` events at a sustained rate on the company of
10,000,000 receivables and 2,000,000 debtors on PostgreSQL, with and without the day's
claims waiting to be sent.

1. The company of ``scale_bench.py`` (``--debtors`` / ``--receivables``, by default
   2,000,000 / 10,000,000), in database ``--db`` (by default ``cobro_scale``), generated
   the way ``scale_bench.py`` generates it unless that database already holds it (its
   comment says so; ``--regenerate`` makes it again). The workspace ``bench/out/lag`` gets
   the starter ``cobro.yaml`` with email to the recording SMTP sink of ``common.py`` (a
   process of its own) and the admin's new-subscriber notice off (only receipts come from
   the events).
2. One measurement per case (``--cases``), rate (``--rates``) and dispatcher count
   (``--dispatchers``), each on a fresh copy of the database (``CREATE DATABASE ...
   TEMPLATE``, dropped after it):
   * ``--members`` customers each get a subscription through ``post_event(ws,
     "subscription.created", ...)`` (``events_bench.subscribe``);
   * case ``day``: the day is then planned by 2 worker processes as ``cobro worker`` plans
     it (``scale_bench.plan_in_processes``): its claims are the backlog, due at the day's
     send time. Case ``quiet``: no plan, the outbox holds only what the events add;
   * that many dispatcher processes (``events_bench.Workers``: ``cobro.engine.runs.watch``,
     what ``cobro dispatch --watch`` runs, pausing ``--poll-ms`` after a pass that found
     nothing) share the database. Every process of the measurement (dispatchers, producer,
     lag reader) runs on one clock set so that the real instant of the release is the
     day's send time (09:00 in Madrid on 2026-06-15): the backlog falls due as the events
     begin, as it does on the day when events keep arriving while the day's claims go out;
   * the producer (this process) posts ``rate x --seconds`` ``charge.succeeded`` events
     open loop (event *i* due at ``t0 + i / rate``; ``events_bench.produce``) through
     ``post_event``, the intake ``POST /api/v1/events`` calls; each adds one receipt with
     its PDF to the outbox;
   * meanwhile, every second, ``cobro_queue_lag_seconds`` and ``cobro_outbox_ready`` as
     ``/metrics`` reports them: ``cobro.engine.metrics.QueueLag`` collected in a thread of
     this process, on the same clock;
   * after the last event the dispatchers get at most ``--drain-s`` seconds to send what
     is due (the backlog and the receipts), then are told to stop after their pass;
   * check: the sink's records by claim and recipient must be the deliveries the copy
     records, one each (``common.check_received``), or the benchmark fails;
   * latency per event = SMTP acceptance of its receipt - intake time
     (``events_bench.receipt_latencies``); an event never delivered counts as infinitely
     late (a percentile among those is ``null``).
3. Baseline, in the same run, on the first measurement's copy: ``receipt_pdf`` alone for
   ``--pdfs`` of its queued receipts (``events_bench.pdf_baseline``): what a receipt costs
   at the least, the bound of one process's rate.

One stdout line per measurement: {"bench": "lag", "case", "debtors", "receivables",
"rate", "seconds", "dispatchers", "events", "delivered", "intake_per_s", "backlog_claims",
"sent", "p50_ms", "p99_ms", "max_ms", "behind_max_s", "p99_from_due_ms", "lag_max_s",
"lag_max_events_s", "lag_end_events_s", "ready_max", "drained_s", "dispatcher_cpu_s",
"machine_busy", "pdf_ms", "pdf_per_s", "pdf_cpu_ms", "load_before", "load_after"}
(``bench/README.md`` says what each is).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import scale_bench
from common import (
    BENCH_DATE,
    OUT_DIR,
    SmtpServerProcess,
    check_received,
    emit,
    loadavg,
    say,
    write_config,
)
from events_bench import (
    Workers,
    accepted_receipts,
    cpu_ticks,
    ms,
    pdf_baseline,
    percentile,
    produce,
    shifted_clock,
    subscribe,
)
from plan_bench import pg_reachable

ROOT = OUT_DIR / "lag"
CASES = ("quiet", "day")


class LagSampler:
    """``cobro_queue_lag_seconds`` and ``cobro_outbox_ready`` of the workspace ``ws``, read
    every ``every_s`` seconds by the collector ``/metrics`` uses (``QueueLag``) on ``clock``,
    in a thread: (seconds since ``start``, lag, ready) each."""

    def __init__(self, ws: Any, clock: Callable[[], datetime], every_s: float = 1.0) -> None:
        from cobro.engine.metrics import QueueLag

        self.collector = QueueLag(lambda: [ws], clock)
        self.every_s = every_s
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = 0.0

    def read(self) -> tuple[float, int]:
        values = {m.name: m.samples[0].value for m in self.collector.collect()}
        return values["cobro_queue_lag_seconds"], int(values["cobro_outbox_ready"])

    def begin(self, start: float) -> None:
        """Sample from ``start`` (a ``time.perf_counter()``) on."""
        self.start = start
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(max(self.start + k * self.every_s - time.perf_counter(), 0)):
            lag, ready = self.read()
            self.samples.append((time.perf_counter() - self.start, lag, ready))
            k += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def last(self) -> tuple[float, float, int] | None:
        return self.samples[-1] if self.samples else None


def measure(
    case: str, rate: float, dispatchers: int, sink: SmtpServerProcess, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    """One measurement on a fresh copy (see the module); its result and the copy's URL (the
    caller drops it)."""
    from cobro.domain.calendar import send_instant
    from cobro.workspace import open_workspace

    events = max(int(rate * args.seconds), 1)
    say(
        f"[{case}, {rate:g}/s, {dispatchers} dispatcher(s)] fresh copy of {scale_bench.DB} "
        f"(load {loadavg()})"
    )
    url = scale_bench.fresh_copy()
    ws = open_workspace(ROOT, url)
    company = ws.config.company
    send_at = send_instant(BENCH_DATE, company.send_time, company.timezone)
    subscribe(ws, args.members, send_at - timedelta(hours=1))
    backlog = 0
    if case == "day":
        took, _ = scale_bench.plan_in_processes(url, 2, args.shard_debtors, ROOT)
        backlog = scale_bench.day_digest(url)["outbox"]
        say(f"  the day planned by 2 workers in {took:.1f} s: {backlog:,} claims due at {send_at}")
    workers = Workers(dispatchers, ROOT, args.poll_ms, None, db=url, clocked=True)
    start = time.perf_counter() + 1.0
    start_real = time.time() + 1.0  # the same instant, on the clock of the intake times
    ahead = (send_at - datetime.now(UTC)).total_seconds() - 1.0
    clock = shifted_clock(ahead)
    sampler = LagSampler(ws, clock)
    say(f"  posting {events:,} charge.succeeded at {rate:g}/s for {args.seconds:g} s")
    busy0, total0 = cpu_ticks()
    cpu0 = time.process_time()
    try:
        workers.go(ahead)
        sampler.begin(start)
        intake, took_each = produce(
            ws, events, rate, args.members, f"{case}{dispatchers}", sink, clock=clock, start=start
        )
        events_s = time.perf_counter() - start
        producer_cpu = time.process_time() - cpu0
        first, last = min(intake.values()), max(intake.values())
        intake_per_s = (len(intake) - 1) / (last - first) if len(intake) > 1 else 0.0
        deadline = time.monotonic() + args.drain_s
        next_report = time.monotonic() + 10
        drained_s: float | None = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = sampler.last()
            if now is not None and now[0] > events_s and now[2] == 0:
                drained_s = now[0]
                break
            if now is not None and time.monotonic() >= next_report:
                next_report += 10
                say(
                    f"  t={now[0]:5.0f} s: lag {now[1]:.1f} s, {now[2]:,} rows due, "
                    f"{sink.count():,} messages accepted by the server"
                )
        busy1, total1 = cpu_ticks()
        machine = (busy1 - busy0) / max(total1 - total0, 1)
    finally:
        stats = workers.stop()
        sampler.stop()
    records = sink.dump(OUT_DIR / "lag-records.json")
    sent = check_received(records, ws.engine)
    accepted, waits, inside = accepted_receipts(ws.engine, records, intake, ahead)
    latencies = sorted(accepted[c] - intake[c] if c in accepted else math.inf for c in intake)
    ws.close()

    samples = sampler.samples
    during = [s for s in samples if s[0] <= events_s] or samples[:1]
    lag_max = max((s[1] for s in samples), default=0.0)
    lag_max_events = max((s[1] for s in during), default=0.0)
    lag_end_events = during[-1][1] if during else 0.0
    ready_max = max((s[2] for s in samples), default=0)
    delivered = sum(not math.isinf(v) for v in latencies)
    done = [v for v in latencies if not math.isinf(v)]
    took_each.sort()
    # When post_event takes longer than 1 / rate the producer falls behind its schedule: the
    # events are then posted late, and their latency counts from when they were posted. How
    # late they were, at most, and the latency counted from each one's due instant instead
    # (t0 + i / rate, the open loop's schedule).
    late = {c: intake[c] - (start_real + int(c.rsplit("_", 1)[1]) / rate) for c in intake}
    behind = max(late.values(), default=0.0)
    from_due = sorted(accepted[c] - intake[c] + late[c] for c in accepted)
    from_due += [math.inf] * (len(intake) - len(from_due))
    dispatcher_cpu = sum(float(s["cpu_s"]) for s in stats if s)
    say(
        f"  posted {len(intake):,} ({intake_per_s:.1f}/s achieved, post_event p50 "
        f"{ms(percentile(took_each, 0.5))} ms, p99 {ms(percentile(took_each, 0.99))} ms, "
        f"producer CPU {producer_cpu / len(intake) * 1000:.1f} ms per event, at most "
        f"{behind:.2f} s behind its schedule); "
        + (
            f"nothing due {drained_s:.0f} s after the start"
            if drained_s is not None
            else f"rows still due after --drain-s {args.drain_s:g} s"
        )
    )
    say(
        f"  {sent:,} messages sent and received once each; receipts delivered {delivered:,} of "
        f"{len(intake):,}: latency p50 {ms(percentile(latencies, 0.5))} ms, p99 "
        f"{ms(percentile(latencies, 0.99))} ms, max (delivered) {ms(done[-1] if done else None)} ms"
        f" (waiting for the pass that sent it: p50 {ms(percentile(waits, 0.5))} ms; inside it: "
        f"p50 {ms(percentile(inside, 0.5))} ms); from each event's due instant: p99 "
        f"{ms(percentile(from_due, 0.99))} ms"
    )
    say(
        f"  queue lag: max {lag_max:.1f} s ({lag_max_events:.1f} s while events arrived, "
        f"{lag_end_events:.1f} s at the last event), at most {ready_max:,} rows due; "
        f"dispatchers' CPU {dispatcher_cpu:.1f} s; all {os.cpu_count()} CPUs of the machine "
        f"{machine:.0%} busy (any process)"
    )
    for k, s in enumerate(stats):
        say(f"  dispatcher {k + 1}: {s}")
    result = {
        "bench": "lag",
        "case": case,
        "debtors": args.debtors,
        "receivables": args.receivables,
        "rate": rate,
        "seconds": args.seconds,
        "dispatchers": dispatchers,
        "events": len(intake),
        "delivered": delivered,
        "intake_per_s": round(intake_per_s, 1),
        "backlog_claims": backlog,
        "sent": sent,
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(done[-1] if done else None),
        "behind_max_s": round(behind, 2),
        "p99_from_due_ms": ms(percentile(from_due, 0.99)),
        "lag_max_s": round(lag_max, 1),
        "lag_max_events_s": round(lag_max_events, 1),
        "lag_end_events_s": round(lag_end_events, 1),
        "ready_max": ready_max,
        "drained_s": None if drained_s is None else round(drained_s, 1),
        "dispatcher_cpu_s": round(dispatcher_cpu, 1),
        "machine_busy": round(machine, 2),
    }
    return result, url


def numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> None:
    from cobro.config.settings import WorkerSettings

    default_shard = int(WorkerSettings.model_fields["plan_shard_debtors"].default)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=2_000_000)
    ap.add_argument("--receivables", type=int, default=10_000_000)
    ap.add_argument("--db", default=scale_bench.DB, help="the company's database")
    ap.add_argument("--regenerate", action="store_true", help="generate the database again")
    ap.add_argument("--shard-debtors", type=int, default=default_shard, help="plan's shards")
    ap.add_argument("--cases", default=",".join(CASES), help="quiet (no backlog), day, or both")
    ap.add_argument("--rates", default="50,200", help="events per second (open loop)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long events arrive")
    ap.add_argument("--dispatchers", default="1,2", help="dispatcher processes, e.g. 1,2")
    ap.add_argument("--members", type=int, default=1_000, help="subscribed customers")
    ap.add_argument("--drain-s", type=float, default=1800.0, help="wait for what is due, at most")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="idle dispatcher's pause")
    ap.add_argument("--pdfs", type=int, default=500, help="receipt PDFs in the baseline")
    args = ap.parse_args()
    try:
        cases = [c.strip() for c in str(args.cases).split(",") if c.strip()]
        rates = numbers(args.rates, float)
        counts = numbers(args.dispatchers, int)
    except ValueError as exc:
        ap.error(f"a list of numbers expected: {exc}")
    if not cases or any(c not in CASES for c in cases):
        ap.error(f"--cases: some of {', '.join(CASES)}")
    if not rates or min(rates) <= 0 or not counts or min(counts) < 1:
        ap.error("--rates must be positive and --dispatchers at least 1")
    for name in ("debtors", "receivables", "shard_debtors", "members", "pdfs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.members > args.debtors:
        ap.error("--members must not exceed --debtors")
    if args.debtors > args.receivables:
        ap.error("--debtors must not exceed --receivables")
    if args.seconds <= 0 or args.drain_s < 0 or args.poll_ms < 0:
        ap.error("--seconds must be positive, --drain-s and --poll-ms not negative")
    scale_bench.use_database(args.db)
    if not pg_reachable():
        sys.exit(1)

    load_before = loadavg()
    say(f"load average before: {load_before}")
    sink = SmtpServerProcess()
    say(f"SMTP sink (aiosmtpd, recording) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    results: list[dict[str, Any]] = []
    baseline: tuple[float, float, float, float | None] | None = None
    try:
        write_config(
            ROOT,
            {
                "channels.email.smtp.host": "127.0.0.1",
                "channels.email.smtp.port": sink.port,
                "channels.email.smtp.starttls": False,
                "subscriptions.admin.new_subscriber": False,
            },
        )
        scale_bench.ensure_company(args.debtors, args.receivables, args.regenerate, ROOT)
        for case in cases:
            for rate in rates:
                for n in counts:
                    result, url = measure(case, rate, n, sink, args)
                    if baseline is None:
                        baseline = pdf_baseline(ROOT, args.pdfs, url, stock=False)
                    scale_bench.drop(scale_bench.TRIAL)
                    results.append(result)
    finally:
        sink.close()
        scale_bench.drop(scale_bench.TRIAL)
        (OUT_DIR / "lag-records.json").unlink(missing_ok=True)
    load_after = loadavg()
    say(f"load average after: {load_after}")
    assert baseline is not None
    pdf_ms, pdf_per_s, pdf_cpu_ms, _ = baseline
    for r in results:
        say(
            f"lag, {r['case']}, {r['rate']:g}/s, {r['dispatchers']} dispatcher(s): queue lag max "
            f"{r['lag_max_s']} s, receipts p50 {r['p50_ms']} ms / p99 {r['p99_ms']} ms, "
            f"{r['delivered']:,}/{r['events']:,} delivered; a receipt PDF alone {pdf_ms:.1f} ms"
        )
        r.update(
            pdf_ms=round(pdf_ms, 1),
            pdf_per_s=round(pdf_per_s, 1),
            pdf_cpu_ms=round(pdf_cpu_ms, 1),
            load_before=load_before,
            load_after=load_after,
        )
        emit(r)


if __name__ == "__main__":
    main()
