"""Events benchmark: ``charge.succeeded`` to an SMTP-accepted receipt with its PDF, embedded mode.

1. An aiosmtpd server runs in another process on 127.0.0.1 (the recording sink of
   ``common.py``). For every message it records the acceptance time
   (``time.time()`` when the whole DATA has arrived, just before the 250
   reply), the Message-ID and the X-Cobro-Claim header, and discards the rest.
2. A workspace in ``bench/out/events`` (SQLite) gets the starter ``cobro.yaml``
   with email to that server and the admin's new-subscriber notice switched
   off; ``--members`` customers with an email address (bulk-loaded) each get
   one subscription through ``post_event("subscription.created", ...)``. The
   database is kept as a pristine copy.
3. Measured, once per dispatcher count (``--dispatchers 1,2``), on a fresh copy
   of that database:
   * ``D`` dispatcher processes (this script with ``--worker``), each with its
     own ``open_workspace`` on the same SQLite file, call
     ``cobro.engine.runs.watch`` (what ``cobro dispatch --watch`` runs: one dispatch pass
     after another as of the current time, SMTP connections kept open between
     passes), waiting ``--poll-ms`` after a pass that found nothing to do. Before polling, each
     renders one receipt PDF so that imports and font loading are done.
   * One producer (this process) posts ``--events`` ``charge.succeeded`` events
     open loop at ``--rate`` per second: event *i* is due at ``t0 + i / rate``;
     its intake time is when ``post_event`` is called. Events go round-robin to
     the members' subscriptions; each makes one receipt notice in the outbox.
   * After the last event the dispatchers get at most ``--drain-s`` seconds to
     finish the backlog, then are told to stop (and killed 60 s later if a
     call is still running).
   * Latency per event = acceptance time at the server - intake time, matched
     through the outbox id in X-Cobro-Claim and the outbox row's step
     ``receipt/<charge>``. An event not delivered counts as infinitely late:
     a percentile that falls among those is reported as null.
4. Baseline, in the same run: ``receipt_pdf`` alone, in this process, on the
   receipts the last measured configuration queued (their outbox payloads
   through ``notice_context``, the same customer, language and locale as the
   dispatcher uses): ms per PDF and PDFs per second. ``--pdfs`` (default: as
   many as ``--events``). Then the first 1,000 of them again through plain
   ``weasyprint.HTML`` (WeasyPrint's whole user-agent stylesheet): CPU ms per PDF.

One stdout line per dispatcher count, e.g. {"bench": "events", "events": N,
"rate": R, "dispatchers": D, "p50_ms": X, "p99_ms": Y, "pdf_ms": Z,
"pdf_per_s": W, ...}. ``--profile FILE`` runs the first dispatcher of each
configuration under cProfile (FILE.d<D>) and prints its top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import math
import os
import pstats
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    OUT_DIR,
    Record,
    SmtpServerProcess,
    checkpoint,
    copy_sqlite,
    emit,
    load_company,
    say,
    sqlite_url,
    write_config,
)

# -- a dispatcher (its own process) ------------------------------------------------------


def sample_notice(charge: str = "warmup") -> dict[str, Any]:
    """An outbox payload shaped like the one ``on_charge_succeeded`` writes."""
    return {
        "event": "receipt",
        "charge": charge,
        "amount": "39.90",
        "currency": "EUR",
        "charged_at": datetime.now(UTC).isoformat(),
        "subscription": {
            "subscription": "S1",
            "plan": "Plan Oro",
            "kind": "plan",
            "price": "39.90",
            "currency": "EUR",
            "cycle": "monthly",
            "next_charge_on": None,
            "ends_on": None,
        },
    }


def worker(
    root: Path, poll_ms: float, profile: Path | None, db: str | None = None, clocked: bool = False
) -> None:
    """Run ``cobro.engine.runs.watch`` (one pass = one ``Dispatcher`` over kept-open SMTP
    connections) until stdin closes; print a JSON line of counters. On the database ``db``
    (by default the workspace's SQLite file); with ``clocked``, once ready it reads a line
    from stdin, the seconds its clock is ahead of the real one (``shifted_clock``)."""
    from cobro.engine.notices import notice_context
    from cobro.engine.runs import watch
    from cobro.render.receipt import receipt_pdf
    from cobro.workspace import open_workspace, utcnow

    ws = open_workspace(root, db or sqlite_url(root / "cobro.db"))
    company = ws.config.company
    receipt_pdf(company, "Warm Up", "C0", notice_context(sample_notice()), "es", company.locale)
    stop = threading.Event()
    print("ready", flush=True)
    clock = utcnow
    if clocked:
        line = sys.stdin.readline()
        if not line:  # stopped before it was started
            ws.close()
            return
        clock = shifted_clock(float(line))

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stats = {"calls": 0, "busy_calls": 0, "rows": 0, "deliveries": 0, "failed": 0}
    stats.update({"retrying": 0, "max_rows_per_call": 0, "busy_s": 0.0, "cpu_s": 0.0})
    profiler = cProfile.Profile() if profile else None
    cpu0 = time.process_time()
    if profiler:
        profiler.enable()

    def count(report: Any, seconds: float) -> None:
        stats["calls"] += 1
        rows = report.sent + report.failed + report.cancelled + report.retrying
        if rows:
            stats["busy_calls"] += 1
            stats["busy_s"] += seconds
            stats["rows"] += rows
            stats["deliveries"] += report.deliveries
            stats["failed"] += report.failed
            stats["retrying"] += report.retrying
            stats["max_rows_per_call"] = max(stats["max_rows_per_call"], rows)

    watch(ws, stop, poll_ms / 1000, count, clock=clock)  # what `cobro dispatch --watch` runs
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    stats["cpu_s"] = round(time.process_time() - cpu0, 2)
    stats["busy_s"] = round(stats["busy_s"], 2)
    ws.close()
    print(json.dumps(stats), flush=True)


def shifted_clock(ahead_s: float) -> Any:
    """A clock (as ``cobro.workspace.utcnow``) ``ahead_s`` seconds ahead of the real one:
    the benchmark's processes share it, so that the real instant they are released at is
    a given moment of the benchmark's day (its send time)."""

    def now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=ahead_s)

    return now


class Workers:
    """``n`` dispatcher processes on the workspace ``root`` (its SQLite file, or the
    database ``db``). With ``clocked`` they wait, once ready, for ``go(ahead_s)``: their
    clock, ``ahead_s`` seconds ahead of the real one."""

    def __init__(
        self,
        n: int,
        root: Path,
        poll_ms: float,
        profile: Path | None,
        db: str | None = None,
        clocked: bool = False,
    ) -> None:
        # One after the other: opening a workspace writes to the database.
        self.procs: list[subprocess.Popen[str]] = []
        for k in range(n):
            cmd = [sys.executable, __file__, "--worker", str(root), "--poll-ms", str(poll_ms)]
            if profile and k == 0:
                cmd += ["--profile", str(profile)]
            if db:
                cmd += ["--db", db]
            if clocked:
                cmd += ["--clocked"]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                self.stop(grace_s=10)
                raise RuntimeError(f"dispatcher process {p.pid} did not start")

    def go(self, ahead_s: float) -> None:
        """Start clocked dispatchers, their clock ``ahead_s`` seconds ahead of the real one."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(f"{ahead_s!r}\n")
            p.stdin.flush()

    def stop(self, grace_s: float = 60) -> list[dict[str, Any] | None]:
        """Ask every dispatcher to stop after its current call; kill it after ``grace_s``."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.close()
        deadline = time.monotonic() + grace_s
        stats: list[dict[str, Any] | None] = []
        for p in self.procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
                assert p.stdout is not None
                lines = p.stdout.read().splitlines()
                try:
                    stats.append(json.loads(lines[-1]) if lines else None)
                except ValueError:
                    stats.append(None)
            except subprocess.TimeoutExpired:
                say(f"dispatcher process {p.pid} still busy after {grace_s:.0f} s: killed")
                p.kill()
                p.wait()
                stats.append(None)
        return stats


# -- setup -------------------------------------------------------------------------------


def subscribe(ws: Any, members: int, now: datetime) -> None:
    """One subscription ``S<m>`` for each of the customers ``C0000001``... ``C<members>``,
    made with ``post_event("subscription.created", ...)`` at ``now``."""
    from cobro.intake.events import post_event

    t0 = time.perf_counter()
    for m in range(1, members + 1):
        post_event(
            ws,
            "subscription.created",
            {
                "id": f"evt_sub_{m:06d}",
                "subscription": f"S{m}",
                "customer": f"C{m:07d}",
                "plan": "Plan Oro",
                "price": "39.90",
            },
            now,
        )
    say(f"{members:,} subscriptions created in {time.perf_counter() - t0:.1f} s")


def build_workspace(root: Path, port: int, members: int) -> Path:
    """The workspace with ``members`` subscribed customers; returns a pristine copy of its DB."""
    from cobro.workspace import open_workspace

    root.mkdir(parents=True, exist_ok=True)
    for p in root.glob("cobro.db*"):
        p.unlink()
    write_config(
        root,
        {
            "channels.email.smtp.host": "127.0.0.1",
            "channels.email.smtp.port": port,
            "channels.email.smtp.starttls": False,
            # Only receipts during the measurement: no admin notice per new subscription.
            "subscriptions.admin.new_subscriber": False,
        },
    )
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    try:
        with ws.engine.begin() as conn:
            raw = conn.connection.driver_connection
            load_company(raw, "sqlite", ws.company_id, members, 0, contacts=False)
        subscribe(ws, members, datetime.now(UTC))
    finally:
        ws.close()
    db = root / "cobro.db"
    checkpoint(db)
    pristine = OUT_DIR / "events-pristine.db"
    copy_sqlite(db, pristine)
    return pristine


# -- measurement -----------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (Linux)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; ``None`` when it falls on an infinite (undelivered) value."""
    if not sorted_values:
        return None
    v = sorted_values[max(math.ceil(q * len(sorted_values)) - 1, 0)]
    return None if math.isinf(v) else v


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def produce(
    ws: Any,
    events: int,
    rate: float,
    members: int,
    tag: str,
    sink: SmtpServerProcess,
    clock: Any = None,
    start: float | None = None,
) -> tuple[dict[str, float], list[float]]:
    """Post the events open loop from ``start`` (a ``time.perf_counter()``; by default half a
    second from now), each at ``clock()`` (by default the real time); returns charge ->
    intake time and post_event durations."""
    from cobro.intake.events import post_event
    from cobro.workspace import utcnow

    clock = clock or utcnow
    intake: dict[str, float] = {}
    took: list[float] = []
    t0 = time.perf_counter() + 0.5 if start is None else start
    next_report = 10.0
    for i in range(events):
        due = t0 + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        m = i % members + 1
        charge = f"ch_{tag}_{i:06d}"
        started = time.perf_counter()
        intake[charge] = time.time()
        post_event(
            ws,
            "charge.succeeded",
            {
                "id": f"evt_{tag}_{i:06d}",
                "subscription": f"S{m}",
                "charge": charge,
                "amount": "39.90",
            },
            clock(),
        )
        took.append(time.perf_counter() - started)
        elapsed = time.perf_counter() - t0
        if elapsed >= next_report:
            next_report += 10.0
            say(
                f"  t={elapsed:5.0f} s: {i + 1:,} posted (behind schedule by "
                f"{max(time.perf_counter() - due, 0) * 1000:,.0f} ms), "
                f"{sink.count():,} accepted by the server"
            )
    return intake, took


def measure(
    root: Path,
    pristine: Path,
    sink: SmtpServerProcess,
    dispatchers: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from cobro.workspace import open_workspace

    db = root / "cobro.db"
    copy_sqlite(pristine, db)
    profile = Path(f"{args.profile}.d{dispatchers}") if args.profile else None
    # Opened first: the copy is in rollback-journal mode and the first opener switches
    # it to WAL, which fails if another process opens the file at the same moment.
    ws = open_workspace(root, sqlite_url(db))
    workers = Workers(dispatchers, root, args.poll_ms, profile)
    say(
        f"[{dispatchers} dispatcher(s)] posting {args.events:,} charge.succeeded at "
        f"{args.rate:g}/s (about {args.events / args.rate:.0f} s)"
    )
    busy0, total0 = cpu_ticks()
    cpu0 = time.process_time()
    try:
        intake, took = produce(ws, args.events, args.rate, args.members, f"d{dispatchers}", sink)
        first, last = min(intake.values()), max(intake.values())
        intake_per_s = (len(intake) - 1) / (last - first) if len(intake) > 1 else 0.0
        deadline = time.monotonic() + args.drain_s
        received = sink.count()
        while received < args.events and time.monotonic() < deadline:
            time.sleep(1)
            received = sink.count()
        drain_s = args.drain_s - max(deadline - time.monotonic(), 0)
        busy1, total1 = cpu_ticks()
        machine = (busy1 - busy0) / max(total1 - total0, 1)
        say(
            f"  all posted ({intake_per_s:.1f}/s achieved); {received:,} accepted "
            f"{drain_s:.0f} s after the last event; producer CPU "
            f"{(time.process_time() - cpu0) / len(intake) * 1000:.1f} ms per event; all "
            f"{os.cpu_count()} CPUs of the machine {machine:.0%} busy meanwhile (any process)"
        )
    finally:
        stats = workers.stop()
    records = sink.dump(OUT_DIR / "events-records.json")
    latencies, waits, inside = receipt_latencies(ws.engine, records, intake)
    ws.close()
    delivered = sum(not math.isinf(v) for v in latencies)
    done = [v for v in latencies if not math.isinf(v)]
    took.sort()
    say(
        f"  delivered {delivered:,} of {len(intake):,}; latency p50 "
        f"{ms(percentile(latencies, 0.5))} ms, p95 {ms(percentile(latencies, 0.95))} ms, "
        f"p99 {ms(percentile(latencies, 0.99))} ms, max (delivered) "
        f"{ms(done[-1] if done else None)} ms"
    )
    say(
        f"  of which: waiting for a dispatch_due call p50 {ms(percentile(waits, 0.5))} ms / "
        f"p99 {ms(percentile(waits, 0.99))} ms; inside the call p50 "
        f"{ms(percentile(inside, 0.5))} ms / p99 {ms(percentile(inside, 0.99))} ms"
    )
    say(
        f"  post_event p50 {ms(percentile(took, 0.5))} ms, p99 {ms(percentile(took, 0.99))} ms, "
        f"max {ms(took[-1])} ms"
    )
    for k, s in enumerate(stats):
        say(f"  dispatcher {k + 1}: {s}")
    if profile and profile.exists():
        say(f"  cProfile of dispatcher 1 in {profile}:")
        ps = pstats.Stats(str(profile), stream=sys.stderr)
        ps.sort_stats("tottime").print_stats(25)
        ps.sort_stats("cumulative").print_stats(35)
    return {
        "bench": "events",
        "events": len(intake),
        "rate": args.rate,
        "dispatchers": dispatchers,
        "delivered": delivered,
        "intake_per_s": round(intake_per_s, 1),
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p95_ms": ms(percentile(latencies, 0.95)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(done[-1] if done else None),
    }


def receipt_latencies(
    engine: Any, records: list[Record], intake: dict[str, float], ahead_s: float = 0.0
) -> tuple[list[float], list[float], list[float]]:
    """Each event's latency (SMTP acceptance of its receipt - intake time; infinite when
    not received), sorted; and the parts of the delivered ones (``accepted_receipts``)."""
    accepted, waits, inside = accepted_receipts(engine, records, intake, ahead_s)
    latencies = sorted(accepted[c] - intake[c] if c in accepted else math.inf for c in intake)
    return latencies, waits, inside


def accepted_receipts(
    engine: Any, records: list[Record], intake: dict[str, float], ahead_s: float = 0.0
) -> tuple[dict[str, float], list[float], list[float]]:
    """When the SMTP sink accepted each event's receipt (by charge), matched through the
    outbox id in X-Cobro-Claim and the outbox row's step ``receipt/<charge>``; and, sorted,
    the parts of their latencies: intake to the start of the dispatch pass that sent it
    (``deliveries.at``, on a clock ``ahead_s`` seconds ahead of the real one), and that
    start to the acceptance."""
    from sqlalchemy import select

    from cobro.store import tables as t

    o, d = t.outbox.c, t.deliveries.c
    with engine.connect() as conn:
        step_of = dict(conn.execute(select(o.id, o.step).where(o.step.like("receipt/%"))).all())
        called_at = {
            row.message_id: row.at.timestamp() - ahead_s
            for row in conn.execute(select(d.message_id, d.at).where(d.status == "sent"))
        }
    accepted: dict[str, float] = {}
    waits: list[float] = []  # intake -> start of the dispatch_due call that sent it
    inside: list[float] = []  # start of that call -> SMTP acceptance
    for at, message_id, claim, _ in records:
        parts = claim.split("/")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        charge = step_of.get(int(parts[1]), "").removeprefix("receipt/")
        if charge in intake and charge not in accepted:
            accepted[charge] = at
            if message_id in called_at:
                waits.append(called_at[message_id] - intake[charge])
                inside.append(at - called_at[message_id])
    return accepted, sorted(waits), sorted(inside)


def pdf_baseline(
    root: Path, count: int, db: str | None = None, stock: bool = True
) -> tuple[float, float, float, float | None]:
    """Render ``count`` receipts queued in the workspace ``root`` (its SQLite file, or the
    database ``db``) alone: (ms per PDF, PDFs/s, CPU ms per PDF, and with ``stock`` the CPU
    ms per PDF of the same HTML with WeasyPrint's whole user-agent stylesheet)."""
    from sqlalchemy import select
    from weasyprint import HTML

    from cobro.engine.notices import notice_context
    from cobro.render.receipt import _fonts, receipt_html, receipt_pdf
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    ws = open_workspace(root, db or sqlite_url(root / "cobro.db"))
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(o.payload, c.name, c.external_id)
            .join(t.customers, c.id == o.customer_id)
            .where(o.step.like("receipt/%"))
            .order_by(o.id)
            .limit(count)
        ).all()
    company = ws.config.company
    ws.close()
    # The dispatcher's (language, locale) for the members' stored language "es".
    language, locale = "es", company.locale
    receipt_pdf(company, "Warm Up", "C0", notice_context(sample_notice()), language, locale)
    size = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i, row in enumerate(rows):
        size += len(
            receipt_pdf(
                company, row.name, row.external_id, notice_context(row.payload), language, locale
            )
        )
        if (i + 1) % 2000 == 0:
            say(f"  {i + 1:,} PDFs in {time.perf_counter() - t0:.1f} s")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = max(len(rows), 1)
    say(
        f"baseline: {len(rows):,} receipt PDFs alone in {wall:.1f} s = {wall / n * 1000:.1f} ms "
        f"each ({cpu / n * 1000:.1f} ms CPU), {n / wall:.1f}/s, {size / n / 1024:.1f} KiB each"
    )
    if not stock:
        return wall / n * 1000, n / wall, cpu / n * 1000, None
    # The same receipts' HTML through plain ``weasyprint.HTML`` (its whole UA stylesheet).
    plain = rows[: min(len(rows), 1000)]
    cpu0 = time.process_time()
    for row in plain:
        html = receipt_html(
            company, row.name, row.external_id, notice_context(row.payload), language, locale
        )
        HTML(string=html).write_pdf(font_config=_fonts())
    stock_cpu = (time.process_time() - cpu0) / max(len(plain), 1) * 1000
    say(
        f"the first {len(plain):,} of them with WeasyPrint's whole user-agent stylesheet: "
        f"{stock_cpu:.1f} ms CPU each"
    )
    return wall / n * 1000, n / wall, cpu / n * 1000, stock_cpu


def harfbuzz_subset() -> bool:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "harfbuzz-subset" in out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=50.0, help="events per second (open loop)")
    ap.add_argument("--dispatchers", default="1,2", help="dispatcher counts to try, e.g. 1,2")
    ap.add_argument("--members", type=int, default=1_000, help="subscribed customers")
    ap.add_argument("--drain-s", type=float, default=120.0, help="wait for the backlog, at most")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="idle dispatcher's pause")
    ap.add_argument("--pdfs", type=int, help="PDFs in the baseline (default: --events)")
    ap.add_argument("--profile", type=Path, help="cProfile the first dispatcher into FILE.dN")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)  # a worker's database URL
    ap.add_argument("--clocked", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.poll_ms, args.profile, args.db, args.clocked)
        return

    counts = [int(x) for x in str(args.dispatchers).split(",") if x.strip()]
    hb = harfbuzz_subset()
    say(
        "libharfbuzz-subset is installed: PDF fonts are subset by HarfBuzz (~15-30 ms CPU "
        "per receipt expected)"
        if hb
        else "libharfbuzz-subset is NOT installed: WeasyPrint falls back to fontTools for "
        "font subsetting (~200 ms per receipt expected; scripts/system-deps installs it)"
    )
    sink = SmtpServerProcess()
    say(f"SMTP recorder (aiosmtpd) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    root = OUT_DIR / "events"
    results = []
    try:
        pristine = build_workspace(root, sink.port, args.members)
        for n in counts:
            results.append(measure(root, pristine, sink, n, args))
        pdf_ms, pdf_per_s, pdf_cpu_ms, stock_cpu_ms = pdf_baseline(root, args.pdfs or args.events)
    finally:
        sink.close()
        for name in ("events-pristine.db", "events-records.json"):
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (OUT_DIR / (name + suffix)).unlink()
    for r in results:
        say(
            f"events, {r['dispatchers']} dispatcher(s): p99 {r['p99_ms']} ms (target <= 500 ms "
            f"at a sustained {args.rate:g}/s), {r['delivered']:,}/{r['events']:,} delivered; "
            f"PDF alone {pdf_ms:.1f} ms ({pdf_per_s:.1f}/s)"
        )
    for r in results:
        r.update(
            pdf_ms=round(pdf_ms, 1),
            pdf_per_s=round(pdf_per_s, 1),
            pdf_cpu_ms=round(pdf_cpu_ms, 1),
            pdf_stock_ua_cpu_ms=round(stock_cpu_ms or 0.0, 1),
            harfbuzz_subset=hb,
        )
        emit(r)


if __name__ == "__main__":
    main()
