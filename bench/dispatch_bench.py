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

``--pg`` keeps the workspace's database on the PostgreSQL server of ``common.PG_ADMIN_URL``
instead of SQLite: the company is loaded into database ``cobro_dispatch`` and planned there,
the planned database kept as ``cobro_dispatch_planned``, and the pre-rendering and each
dispatch round run on a fresh copy of it (``cobro_dispatch_trial``, ``CREATE DATABASE ...
TEMPLATE``); the three are dropped at the end.

The pipeline without network (step 3) is reported with its CPU time in this process per
message and its round trips to the database per message, counted from SQLAlchemy's events:
each statement (an executemany, one pipeline, counts once), and on PostgreSQL each
transaction's ``BEGIN``, ``COMMIT`` (or ``ROLLBACK``), the ``data_version`` update of a
transaction that wrote (``cobro.store.db.count_changes``, unless sent with the COMMIT) and
the ping of each connection taken from the pool. ``--pipeline-rounds N`` (default 1) runs
that pass N times, each on a fresh copy, and reports the medians; ``--rounds 0`` skips the
network rounds (then only the pipeline is measured).

``--workers N`` (default 1: the dispatch in this process) makes each dispatch round what
``cobro dispatch --workers N`` does: N processes, each a new interpreter opening its own
workspace on the round's copy, each running ``dispatch_due(ws, as_of)`` at once, the rows
shared by claiming (``common.dispatch_in_processes``). They are released together once all
have imported and opened their workspace, and the round is timed from the release to the
last one's end; each compiles the templates it uses on its first messages, inside that
time. The deliveries they report, summed, must be the messages pre-rendered and the sink's
count by claim and recipient, each received once, or the benchmark fails. The raw rounds,
the pre-rendering and ``--profile`` stay in this one process.

Final stdout line: {"bench": "dispatch", "database", "debtors", "items", "messages", "workers",
"per_s", "raw_per_s", "ratio", "rounds", "per_s_rounds", "raw_per_s_rounds",
"pipeline_per_s", "pipeline_cpu_ms", "pipeline_round_trips", "pipeline_rounds",
"load_before", "load_after"} (``per_s``, ``raw_per_s`` and ``ratio`` null without network
rounds; the ``pipeline_`` figures are per message, medians). ``--profile FILE`` then
dispatches a fresh copy of the outbox under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import (
    BENCH_DATE,
    OUT_DIR,
    PG_ADMIN_URL,
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
# --pg: the databases on the PostgreSQL server (loaded and planned; its copy; a round's copy)
PG_DB, PG_PLANNED, PG_TRIAL = "cobro_dispatch", "cobro_dispatch_planned", "cobro_dispatch_trial"
PG_SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


def pg_admin(statement: str) -> None:
    """One statement on the server's ``postgres`` database, autocommitted."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(statement.encode())


def pg_copy(template: str, name: str) -> str:
    """A new database ``name``, copy of ``template`` (dropped first if it exists); its URL."""
    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    # FILE_COPY (PostgreSQL 15+; the server's default before) copies the files after a
    # checkpoint instead of writing the whole database to the WAL during the timed part.
    pg_admin(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY = FILE_COPY")
    return f"{PG_SERVER}/{name}"


_COUNTING: list[RoundTrips] = []  # the counter psycopg's pipelines are counted by
_IN_STATEMENT = threading.local()  # a statement of SQLAlchemy's runs on this thread


def _count_pipelines() -> None:
    """Count each psycopg pipeline a thread enters outside a statement of SQLAlchemy's (a
    pipeline of the driver's own statements, ``cobro.evidence.chain.lock_after``: one
    round trip) on the counter ``_COUNTING`` names. Installed once per process."""
    import psycopg

    original = psycopg.Connection.pipeline
    if getattr(original, "counted", False):
        return

    def pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _COUNTING and not getattr(_IN_STATEMENT, "on", False):
            _COUNTING[-1].other += 1
        return original(self, *args, **kwargs)

    pipeline.counted = True  # type: ignore[attr-defined]
    psycopg.Connection.pipeline = pipeline  # type: ignore[method-assign]


class RoundTrips:
    """Round trips to the database of ``engine``, counted from SQLAlchemy's events: each
    statement (an executemany counts once: psycopg sends it as one pipeline), and on
    PostgreSQL each transaction's ``BEGIN`` and its ``COMMIT`` or ``ROLLBACK``, the
    ``data_version`` update of a transaction that wrote (``count_changes``; none of its own
    once it is sent with the COMMIT), the ping of each connection taken from the pool, and
    each pipeline of the driver's own statements (``_count_pipelines``). On SQLite, calls
    into the library: each statement (``BEGIN IMMEDIATE`` among them), the ``data_version``
    update and each ``COMMIT``."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements = 0
        self.transactions = 0
        self.other = 0
        pg = engine.dialect.name == "postgresql"

        def ran(*_: Any) -> None:
            self.statements += 1
            _IN_STATEMENT.on = True

        def done(*_: Any) -> None:
            _IN_STATEMENT.on = False

        def began(_conn: Any) -> None:
            self.transactions += 1
            self.other += pg  # BEGIN

        from cobro.store import db

        # The data_version update a round trip of its own, or sent with the COMMIT on
        # PostgreSQL (``_COUNT_AND_COMMIT``; before that, one round trip each).
        apart = not (pg and hasattr(db, "_COUNT_AND_COMMIT"))

        def committing(conn: Any) -> None:
            self.other += 1 + (apart and bool(conn.info.get("cobro_wrote", True)))

        def rolled_back(_conn: Any) -> None:
            self.other += pg

        def checked_out(*_: Any) -> None:
            self.other += pg  # pool_pre_ping

        event.listen(engine, "before_cursor_execute", ran)
        event.listen(engine, "after_cursor_execute", done)
        event.listen(engine, "handle_error", done)
        if pg:
            _count_pipelines()
            _COUNTING[:] = [self]
        event.listen(engine, "begin", began)
        event.listen(engine, "commit", committing, insert=True)  # before count_changes's
        event.listen(engine, "rollback", rolled_back)
        event.listen(engine.pool, "checkout", checked_out)

    @property
    def total(self) -> int:
        return self.statements + self.other


def build_workspace(
    root: Path, port: int, debtors: int, items: int, connections: int, pg: bool = False
) -> Any:
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
    if pg:
        pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {PG_DB}")
    ws = open_workspace(root, f"{PG_SERVER}/{PG_DB}" if pg else sqlite_url(root / "cobro.db"))
    with ws.engine.begin() as conn:
        raw = conn.connection.driver_connection
        load_company(
            raw,
            ws.engine.dialect.name,
            ws.company_id,
            debtors,
            debtors * items,
            BENCH_DATE,
            one_each=True,
        )
        set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
    if pg:
        analyze(ws)
    return ws


def analyze(ws: Any) -> None:
    """PostgreSQL: VACUUM ANALYZE the workspace's database (its statistics as a server's
    autovacuum would have them)."""
    with ws.engine.connect() as conn:
        conn.connection.driver_connection.autocommit = True
        conn.exec_driver_sql("VACUUM ANALYZE")


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


def prerender(
    root: Path,
    url: str,
    send_at: datetime,
    rows: int,
    figures: dict[str, list[float]] | None = None,
) -> list[tuple[str, str, bytes]]:
    """Every message ``dispatch_due(ws, send_at)`` sends from the planned copy at ``url``, made
    by the real pipeline with the email channel's transport keeping the bytes in memory:
    (sender, recipient, bytes), what the raw rounds send. Prints the rate of that pipeline
    without network (``rows``: the outbox rows planned), the CPU time of this process and
    the round trips to the database (``RoundTrips``) per message; appends them to the lists
    ``per_s``, ``cpu_ms`` and ``round_trips`` of ``figures`` when given."""
    from cobro.engine.runs import dispatch_due, email_channel
    from cobro.workspace import open_workspace

    ws = open_workspace(root, url)
    try:
        channel = email_channel(ws, send_at)
        memory = MemoryTransport()
        channel.transport = memory
        trips = RoundTrips(ws.engine)
        cpu = time.process_time()
        with Timer() as tm:
            report = dispatch_due(ws, send_at, channels={"email": channel})
        cpu = time.process_time() - cpu
    finally:
        ws.close()
    messages = memory.messages
    n = max(len(messages), 1)
    size = sum(len(m[2]) for m in messages) / n
    say(
        f"pipeline without network: {len(messages):,} messages from {rows:,} rows in "
        f"{tm.s:.2f} s = {len(messages) / tm.s:,.0f}/s (avg {size / 1024:.1f} KiB each, "
        f"{report.failed} failed); CPU {cpu * 1000 / n:.2f} ms a message; "
        f"{trips.total / n:.2f} round trips a message ({trips.statements:,} statements, "
        f"{trips.transactions:,} transactions)"
    )
    if figures is not None:
        figures.setdefault("per_s", []).append(len(messages) / tm.s)
        figures.setdefault("cpu_ms", []).append(cpu * 1000 / n)
        figures.setdefault("round_trips", []).append(trips.total / n)
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
    ap.add_argument(
        "--rounds", type=int, default=3, help="dispatch and raw rounds, alternating (0: none)"
    )
    ap.add_argument(
        "--pipeline-rounds",
        type=int,
        default=1,
        help="passes of the pipeline without network, each on a fresh copy (medians)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes dispatching at once in the measured rounds (cobro dispatch --workers)",
    )
    ap.add_argument(
        "--pg", action="store_true", help=f"the database on PostgreSQL ({PG_SERVER}), not SQLite"
    )
    ap.add_argument("--profile", type=Path, help="profile a further dispatch into this file")
    args = ap.parse_args()
    if not 1 <= args.workers <= 32:
        ap.error("--workers must be from 1 to 32")
    if args.rounds < 0 or args.pipeline_rounds < 1:
        ap.error("--rounds must be 0 or more, --pipeline-rounds 1 or more")

    from cobro.engine.runs import dispatch_due, run_day
    from cobro.workspace import open_workspace

    if args.pg:
        try:
            pg_admin("SELECT 1")
        except Exception as exc:
            raise SystemExit(f"FAILED: PostgreSQL not reachable at {PG_SERVER}: {exc}") from None

    def fresh() -> str:
        """A fresh copy of the planned database; its URL."""
        if args.pg:
            return pg_copy(PG_PLANNED, PG_TRIAL)
        copy_sqlite(PLANNED, TRIAL)
        return sqlite_url(TRIAL)

    load_before = loadavg()
    say(
        f"load average before: {load_before}; dispatching in {args.workers} process(es) "
        f"from {'PostgreSQL' if args.pg else 'SQLite'}"
    )
    sink = SmtpServerProcess()
    say(f"SMTP sink (aiosmtpd, recording) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    rates: list[float] = []
    raw_rates: list[float] = []
    pipeline: dict[str, list[float]] = {}
    try:
        ws = build_workspace(
            ROOT, sink.port, args.debtors, args.items, args.connections, pg=args.pg
        )
        tz = ZoneInfo(ws.config.company.timezone)
        plan_at = datetime.combine(BENCH_DATE, clock(7, 0), tzinfo=tz)
        send_at = datetime.combine(BENCH_DATE, clock(10, 0), tzinfo=tz)
        report = run_day(ws, BENCH_DATE, as_of=plan_at)
        say(f"planned {report.planned:,} outbox rows ({report.items:,} items) at {plan_at}")
        if args.pg:
            analyze(ws)
        ws.close()
        if args.pg:
            pg_copy(PG_DB, PG_PLANNED)
        else:
            checkpoint(ROOT / "cobro.db")
            copy_sqlite(ROOT / "cobro.db", PLANNED)

        # Pre-render every message with the real pipeline, keeping the bytes.
        for _ in range(args.pipeline_rounds):
            messages = prerender(ROOT, fresh(), send_at, report.planned, pipeline)

        for i in range(args.rounds):
            say(f"round {i + 1}/{args.rounds} (load {loadavg()})")
            if i % 2 == 0:
                rates.append(
                    dispatch_round(sink, send_at, len(messages), args.workers, fresh=fresh)
                )
                raw_rates.append(raw_round(sink, messages, args.connections))
            else:
                raw_rates.append(raw_round(sink, messages, args.connections))
                rates.append(
                    dispatch_round(sink, send_at, len(messages), args.workers, fresh=fresh)
                )

        if args.profile:
            ws_p = open_workspace(ROOT, fresh())
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
        if args.pg:
            for name in (PG_TRIAL, PG_PLANNED, PG_DB):
                pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    load_after = loadavg()
    per_s = median(rates) if rates else None
    raw_per_s = median(raw_rates) if raw_rates else None
    ratio = per_s / raw_per_s if per_s is not None and raw_per_s else None
    if per_s is not None and raw_per_s is not None and ratio is not None:
        say(
            f"dispatch ({args.workers} process(es)) {per_s:,.0f} msg/s vs raw aiosmtplib "
            f"{raw_per_s:,.0f} msg/s (medians of "
            f"{args.rounds} alternating rounds) = {ratio:.0%} (target >= 80%)"
        )
    figures = {k: median(v) for k, v in pipeline.items()}
    say(
        f"pipeline without network (median of {args.pipeline_rounds}): "
        f"{figures['per_s']:,.0f}/s, CPU {figures['cpu_ms']:.2f} ms and "
        f"{figures['round_trips']:.2f} round trips a message"
    )
    say(f"load average after: {load_after}")
    emit(
        {
            "bench": "dispatch",
            "database": "postgresql" if args.pg else "sqlite",
            "debtors": args.debtors,
            "items": args.items,
            "messages": len(messages),
            "workers": args.workers,
            "per_s": None if per_s is None else round(per_s, 1),
            "raw_per_s": None if raw_per_s is None else round(raw_per_s, 1),
            "ratio": None if ratio is None else round(ratio, 2),
            "rounds": args.rounds,
            "per_s_rounds": [round(r, 1) for r in rates],
            "raw_per_s_rounds": [round(r, 1) for r in raw_rates],
            "pipeline_per_s": round(figures["per_s"], 1),
            "pipeline_cpu_ms": round(figures["cpu_ms"], 3),
            "pipeline_round_trips": round(figures["round_trips"], 2),
            "pipeline_rounds": args.pipeline_rounds,
            "load_before": load_before,
            "load_after": load_after,
        }
    )


if __name__ == "__main__":
    main()
