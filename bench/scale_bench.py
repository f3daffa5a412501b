"""Scale benchmark: a company of 10,000,000 receivables and 2,000,000 debtors on PostgreSQL,
its day planned by 1 and by 2 worker processes, beside the raw SQL baseline in the same run.

1. The company (``--debtors`` / ``--receivables``, by default 2,000,000 / 10,000,000: the
   benchmark company of ``common.py`` at ten times its size) is generated once into
   database ``cobro_scale`` by PostgreSQL itself (``common.load_company_server``:
   ``INSERT ... SELECT`` over ``generate_series``; the levels by ``settle_levels_server``;
   the indexes that back no constraint made after the rows, the foreign-key triggers off:
   ``bulk_load``), then ``VACUUM ANALYZE``. The database's comment records its sizes; a
   later run asking for the same sizes reuses it (``--regenerate`` makes it again).
   ``--db NAME`` uses database ``NAME`` (copies ``NAME_trial``, ``NAME_planned``) instead.
2. Rounds (``--rounds``, default 1), each on a fresh copy of ``cobro_scale`` (``CREATE
   DATABASE ... TEMPLATE``) per measurement, in the order baseline, 1 worker, 2 workers
   (reversed in odd rounds); medians are reported:
   * ``baseline``: ``plan_bench.worker_baseline`` in a process of its own: the planner's
     own queries in raw SQL, the debtors' claims and items written to scratch tables;
   * ``1 worker`` / ``2 workers``: that many processes, each a new interpreter with its own
     workspace, released together once all are ready; the first starts the day as the
     ``cobro.run_day`` task does (``begin_day``: the start of the plan, the day cut into
     shards of ``--shard-debtors`` consecutive debtors) and hands out the shards through a
     queue; each process takes shards until none is left, plans each as the
     ``cobro.plan_shard`` task does (``plan_shard``, then ``finish_day`` with the run's
     report, and the evidence checkpoint by the process that ends the day). Timed from the
     release to the last process's end. The day must be finished with every shard planned,
     and 1 and 2 workers must write the same outbox rows, claim items and levels (counts
     and checksums), or the benchmark fails.
3. ``--dispatch``: the planned day's emails, from copies of the first planned copy, to the
   recording SMTP sink of ``common.py`` in another process: ``dispatch_due`` in 1 and in 2
   processes (``dispatch_bench.dispatch_round``), against the same messages' bytes sent
   with raw aiosmtplib over as many connections (``dispatch_bench.raw_round``), rounds
   alternating, medians; fails like ``dispatch_bench.py``.

Final stdout line: {"bench": "scale", "debtors", "receivables", "shard_debtors", "shards",
"outbox", "items", "baseline_rows", "plan_1w_s", "plan_2w_s", "baseline_s", "ratio_1w",
"ratio_2w", "speedup_2w", "rounds", "plan_1w_s_rounds", "plan_2w_s_rounds",
"baseline_s_rounds", "generate_s", "reused", ["messages", "dispatch_1w_per_s",
"dispatch_2w_per_s", "raw_per_s", "dispatch_ratio_1w", "dispatch_ratio_2w",]
"load_before", "load_after"}. Target: plan ≤ 10 s at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import (
    BENCH_DATE,
    OUT_DIR,
    PG_ADMIN_URL,
    SmtpServerProcess,
    Timer,
    emit,
    load_company_server,
    loadavg,
    median,
    run_released,
    say,
    set_covered,
    settle_levels_server,
    shared_context,
    write_config,
)
from dispatch_bench import dispatch_round, prerender, raw_round
from plan_bench import pg_reachable, run_worker

SCALE_VERSION = 2  # part of the dataset's marker: bump when the generator changes
DB = "cobro_scale"
TRIAL = "cobro_scale_trial"
PLANNED = "cobro_scale_planned"
ROOT = OUT_DIR / "scale"
SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


def pg_url(name: str) -> str:
    return f"{SERVER}/{name}"


def admin(query: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """One statement on the server's ``postgres`` database, autocommitted; its rows."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else []


def drop(name: str) -> None:
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def use_database(name: str) -> None:
    """Work on database ``name`` (its copies ``<name>_trial`` and ``<name>_planned``) instead
    of ``cobro_scale``: ``--db``."""
    global DB, TRIAL, PLANNED
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", name):
        raise SystemExit(f"--db {name!r}: a database name is lower-case letters, digits and _")
    DB, TRIAL, PLANNED = name, f"{name}_trial", f"{name}_planned"


def fresh_copy(template: str | None = None) -> str:
    """A new trial database (``cobro_scale_trial``), copy of ``template`` (by default the
    company's database); its URL."""
    template = template or DB
    drop(TRIAL)
    version = int(admin("SHOW server_version_num")[0][0])
    # FILE_COPY (PostgreSQL 15+) copies the files after a checkpoint instead of writing
    # the whole database to the WAL, which a later timed part would checkpoint.
    strategy = " STRATEGY = FILE_COPY" if version >= 150000 else ""
    admin(f"CREATE DATABASE {TRIAL} TEMPLATE {template}{strategy}")
    return pg_url(TRIAL)


# -- the dataset -------------------------------------------------------------------------


def wanted(debtors: int, receivables: int) -> dict[str, Any]:
    return {
        "version": SCALE_VERSION,
        "debtors": debtors,
        "receivables": receivables,
        "date": BENCH_DATE.isoformat(),
    }


def marker() -> dict[str, Any] | None:
    """What the comment of ``cobro_scale`` says it holds (None: no such database, or one
    whose generation did not finish)."""
    rows = admin(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [DB]
    )
    if not rows or not rows[0][0]:
        return None
    try:
        found: dict[str, Any] = json.loads(rows[0][0])
    except ValueError:
        return None
    return found


@contextmanager
def bulk_load(cur: Any, tables: tuple[str, ...]) -> Iterator[None]:
    """Inside the caller's transaction, what ``pg_restore`` does for a large load: the
    indexes of ``tables`` that back no constraint are dropped and made again afterwards
    (one sort each instead of a B-tree insertion per row), and the foreign-key triggers
    are off (``session_replication_role = replica``: the generated rows reference only
    the company and debtors generated with them)."""
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = ANY(%s::regclass[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [list(tables)],
    )
    indexes = cur.fetchall()
    for name, _ in indexes:
        cur.execute(f"DROP INDEX {name}")
    cur.execute("SET LOCAL session_replication_role = replica")
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    yield
    cur.execute("SET LOCAL session_replication_role = origin")
    for _, definition in indexes:
        cur.execute(definition)


def ensure_company(
    debtors: int, receivables: int, regenerate: bool, root: Path = ROOT
) -> tuple[float, bool]:
    """``cobro_scale`` holding the company of these sizes, generated unless it already
    does (through the workspace ``root``); the seconds its generation took and whether it
    was reused."""
    from psycopg import sql

    from cobro.engine.planner import refresh_policies
    from cobro.workspace import open_workspace

    want = wanted(debtors, receivables)
    found = marker()
    if not regenerate and found is not None and {k: found.get(k) for k in want} == want:
        say(
            f"using database {DB} ({debtors:,} debtors, {receivables:,} receivables, "
            f"generated in {found.get('generated_s')} s)"
        )
        open_workspace(root, pg_url(DB)).close()  # migrated once, if the schema moved on
        return float(found.get("generated_s") or 0.0), True

    if not admin("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        raise SystemExit(
            f"{PG_ADMIN_URL}: generating {DB} needs a superuser (its foreign-key triggers are "
            "turned off while it loads)"
        )
    say(f"generating {debtors:,} debtors and {receivables:,} receivables into {DB}...")
    drop(DB)
    admin(f"CREATE DATABASE {DB}")
    ws = open_workspace(root, pg_url(DB))
    t0 = time.perf_counter()
    try:
        with Timer() as total:
            with Timer() as tm_rows, ws.engine.begin() as conn:
                cur = conn.connection.driver_connection.cursor()

                def progress(table: str, rows: int) -> None:
                    say(f"  {table}: {rows:,} rows ({time.perf_counter() - t0:.0f} s)")

                with bulk_load(cur, ("customers", "contacts", "receivables", "dunning_levels")):
                    load_company_server(
                        cur, ws.company_id, debtors, receivables, BENCH_DATE, progress=progress
                    )
                    with Timer() as tm_policies:
                        refresh_policies(conn, ws.config, ws.company_id)
                    set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
                    with Timer() as tm_levels:
                        levels = settle_levels_server(cur, ws.config, ws.company_id, BENCH_DATE)
                    say(f"  rows written ({time.perf_counter() - t0:.0f} s), indexes...")
                cur.close()
            with Timer() as tm_vacuum, ws.engine.connect() as conn:
                conn.connection.driver_connection.autocommit = True
                conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        ws.close()
    say(
        f"generated in {total.s:.1f} s: rows and commit {tm_rows.s:.1f} s (of which policies "
        f"{tm_policies.s:.1f} s, {levels:,} dunning levels {tm_levels.s:.1f} s), "
        f"VACUUM ANALYZE {tm_vacuum.s:.1f} s"
    )
    note = json.dumps({**want, "generated_s": round(total.s, 1)})
    admin(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(DB), sql.Literal(note)))
    return total.s, False


# -- the day planned by worker processes ---------------------------------------------------


def _plan_process(
    conn: Any, go: Any, shards: Any, root: str, url: str, lead: bool, workers: int, size: int
) -> None:
    """One worker process of ``plan_in_processes`` (see the module)."""
    import traceback

    try:
        from cobro.domain.calendar import send_instant
        from cobro.engine.dispatch import DispatchReport
        from cobro.engine.plan_shards import begin_day, finish_day, plan_shard
        from cobro.engine.runs import checkpoint, record_report, run_report
        from cobro.store.db import retrying
        from cobro.workspace import open_workspace, utcnow

        ws = open_workspace(Path(root), url)
    except Exception:
        conn.send(("error", traceback.format_exc()))  # the benchmark prints it and fails
        raise SystemExit(1) from None
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "begin_s": None,
        "shards": [],
        "finish_tries_s": 0.0,
        "finish_s": None,
        "plan": None,
    }

    def finish() -> None:
        """What ``cobro.workers.finish_company_day`` does after a shard, less queueing the
        rows that are ready (the start of the dispatch)."""

        def finished() -> Any:
            with ws.engine.begin() as c:
                day = finish_day(c, ws.config, ws.company_id, BENCH_DATE, utcnow())
                if day is not None:
                    done = run_report(BENCH_DATE, day.as_of, day.plan, DispatchReport())
                    record_report(c, day.run_id, done)
                return day

        t0 = time.perf_counter()
        day = retrying(finished)
        if day is None:
            report["finish_tries_s"] += time.perf_counter() - t0
            return
        checkpoint(ws, day.as_of)  # the plan's own evidence (accounts released)
        report["finish_s"] = time.perf_counter() - t0
        p = day.plan
        report["plan"] = {"planned": p.planned, "items": p.items, "candidates": p.candidates}

    try:
        conn.send(("ready", os.getpid()))
        go.wait()
        if lead:  # the cobro.run_day task
            company = ws.config.company
            as_of = send_instant(BENCH_DATE, company.send_time, company.timezone)

            def begun() -> Any:
                with ws.engine.begin() as c:
                    return begin_day(c, ws.config, ws.company_id, BENCH_DATE, as_of, utcnow(), size)

            t0 = time.perf_counter()
            day = retrying(begun)
            report["begin_s"] = time.perf_counter() - t0
            pending = day.pending if day is not None else ()
            for shard_id in pending:
                shards.put(shard_id)
            for _ in range(workers):
                shards.put(None)
            if day is not None and not pending:
                finish()
        while (shard_id := shards.get()) is not None:  # cobro.plan_shard tasks

            def planned(shard_id: int = shard_id) -> Any:
                with ws.engine.begin() as c:
                    return plan_shard(c, ws.config, ws.company_id, BENCH_DATE, shard_id, utcnow())

            t0 = time.perf_counter()
            claims = retrying(planned)
            took = time.perf_counter() - t0
            report["shards"].append((shard_id, took, claims.claims if claims else 0))
            finish()
        conn.send(("done", report))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        ws.close()
        conn.close()


def plan_in_processes(
    url: str, workers: int, size: int, root: Path = ROOT
) -> tuple[float, list[dict[str, Any]]]:
    """The day planned by ``workers`` processes on the database at ``url`` (workspace
    ``root``): the time from their release to the last one's end, and each one's report."""
    shards = shared_context().Queue()
    argses = [(str(root), url, k == 0, workers, size) for k in range(workers)]
    return run_released(_plan_process, argses, "a planning process", shared=(shards,))


def day_digest(url: str) -> dict[str, Any]:
    """What the day left in the database: whether it finished, its shards, and the counts
    and checksums of its outbox rows, claim items and dunning levels."""
    import psycopg

    with psycopg.connect(url) as c:

        def one(query: str, *params: Any) -> tuple[Any, ...]:
            row = c.execute(query, params).fetchone()
            assert row is not None
            return tuple(row)

        finished = one(
            "SELECT count(*) FROM daily_runs WHERE run_on = %s AND finished_at IS NOT NULL",
            BENCH_DATE,
        )[0]
        shards, planned = one(
            "SELECT count(*), count(planned_at) FROM plan_shards WHERE run_on = %s", BENCH_DATE
        )
        outbox, outbox_sum = one(
            "SELECT count(*), coalesce(sum(customer_id::bigint), 0) FROM outbox"
        )
        items, items_sum = one(
            "SELECT count(*), coalesce(sum(receivable_id::bigint), 0) FROM claim_items"
        )
        (levels_sum,) = one(
            "SELECT coalesce(sum(hashtext(concat_ws('|', customer_id, policy, phase_key, "
            "reached_on, repeats, review_on))::bigint), 0) FROM dunning_levels"
        )
    return {
        "finished": finished == 1,
        "shards": shards,
        "planned_shards": planned,
        "outbox": outbox,
        "items": items,
        "sums": (int(outbox_sum), int(items_sum), int(levels_sum)),
    }


def plan_round(workers: int, size: int, keep: bool) -> tuple[float, dict[str, Any]]:
    """The day planned by ``workers`` processes on a fresh copy, checked; with ``keep`` the
    planned copy stays as ``cobro_scale_planned`` (the dispatch's template)."""
    url = fresh_copy()
    took, reports = plan_in_processes(url, workers, size)
    digest = day_digest(url)
    if keep:
        drop(PLANNED)
        admin(f"ALTER DATABASE {TRIAL} RENAME TO {PLANNED}")
    else:
        drop(TRIAL)
    lead = reports[0]
    ended = [r for r in reports if r["finish_s"] is not None]
    parts = ", ".join(
        f"{len(r['shards'])} shards in {sum(s[1] for s in r['shards']):.2f} s" for r in reports
    )
    tries = sum(r["finish_tries_s"] for r in reports)
    ending = (
        f"finish_day {ended[0]['finish_s']:.2f} s (+ {tries:.2f} s of tries before the last shard)"
        if ended
        else "the day was not ended"
    )
    say(
        f"[plan, {workers} worker(s)] {took:.2f} s: begin_day {lead['begin_s']:.2f} s; {parts}; "
        f"{ending}; {digest['outbox']:,} outbox rows, {digest['items']:,} claim items"
    )
    if len(ended) != 1 or not digest["finished"] or digest["shards"] != digest["planned_shards"]:
        raise SystemExit(
            f"FAILED: with {workers} worker(s) the day was ended {len(ended)} time(s), "
            f"finished: {digest['finished']}, {digest['planned_shards']} of {digest['shards']} "
            "shards planned"
        )
    return took, digest


# -- driver -------------------------------------------------------------------------------


def main() -> None:
    from cobro.config.settings import WorkerSettings

    default_shard = int(WorkerSettings.model_fields["plan_shard_debtors"].default)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=2_000_000)
    ap.add_argument("--receivables", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=1, help="rounds of baseline, 1 and 2 workers")
    ap.add_argument(
        "--shard-debtors",
        type=int,
        default=default_shard,
        help=f"debtors per shard of the plan (COBRO_PLAN_SHARD_DEBTORS; default {default_shard:,})",
    )
    ap.add_argument("--dispatch", action="store_true", help="also dispatch the planned day")
    ap.add_argument("--connections", type=int, default=4, help="SMTP connections (dispatch)")
    ap.add_argument("--regenerate", action="store_true", help="generate the database again")
    ap.add_argument("--db", default=DB, help=f"the company's database (default {DB})")
    args = ap.parse_args()
    for name in ("debtors", "receivables", "rounds", "shard_debtors", "connections"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.debtors > args.receivables:
        ap.error("--debtors must not exceed --receivables")
    use_database(args.db)
    if not pg_reachable():
        sys.exit(1)

    load_before = loadavg()
    say(f"load average before: {load_before}")
    write_config(ROOT)
    generate_s, reused = ensure_company(args.debtors, args.receivables, args.regenerate)

    times: dict[str, list[float]] = {"baseline": [], "1w": [], "2w": []}
    digests: dict[str, dict[str, Any]] = {}
    baseline_rows = 0
    kept = False
    try:
        for i in range(args.rounds):
            say(f"round {i + 1}/{args.rounds} (load {loadavg()})")
            order = ["baseline", "1w", "2w"]
            for kind in order if i % 2 == 0 else order[::-1]:
                if kind == "baseline":
                    b = run_worker("baseline", ROOT, fresh_copy())
                    drop(TRIAL)
                    times["baseline"].append(b["baseline_s"])
                    baseline_rows = b["rows"]
                    say(
                        f"[baseline] {b['baseline_s']:.2f} s ({b['candidates']:,} debtors with "
                        f"debt, {b['rows']:,} items)"
                    )
                    continue
                workers = int(kind[0])
                keep = args.dispatch and not kept
                took, digest = plan_round(workers, args.shard_debtors, keep)
                kept = kept or keep
                times[kind].append(took)
                first = digests.setdefault("first", digest)
                if digest["outbox"] != first["outbox"] or digest["items"] != first["items"]:
                    raise SystemExit(
                        f"FAILED: {workers} worker(s) wrote {digest['outbox']:,} outbox rows and "
                        f"{digest['items']:,} claim items, another plan {first['outbox']:,} and "
                        f"{first['items']:,}"
                    )
                if digest["sums"] != first["sums"]:
                    raise SystemExit(
                        f"FAILED: {workers} worker(s) wrote other outbox rows, claim items or "
                        f"levels than another plan (checksums {digest['sums']} and "
                        f"{first['sums']})"
                    )

        dispatched: dict[str, Any] = {}
        if args.dispatch:
            dispatched = dispatch(args.rounds, args.connections)
    finally:
        drop(TRIAL)
        drop(PLANNED)

    load_after = loadavg()
    plan_1w, plan_2w, base = (median(times[k]) for k in ("1w", "2w", "baseline"))
    first = digests["first"]
    say(
        f"plan of {first['outbox']:,} claims ({first['items']:,} items) in {first['shards']} "
        f"shards: 1 worker {plan_1w:.2f} s, 2 workers {plan_2w:.2f} s, baseline {base:.2f} s "
        f"(x{plan_1w / base:.2f}, x{plan_2w / base:.2f}; 2 workers {plan_1w / plan_2w:.2f} times "
        f"as fast as 1); target: <= 10 s at 10,000,000 receivables"
    )
    say(f"load average after: {load_after}")
    result: dict[str, Any] = {
        "bench": "scale",
        "debtors": args.debtors,
        "receivables": args.receivables,
        "shard_debtors": args.shard_debtors,
        "shards": first["shards"],
        "outbox": first["outbox"],
        "items": first["items"],
        "baseline_rows": baseline_rows,
        "plan_1w_s": round(plan_1w, 3),
        "plan_2w_s": round(plan_2w, 3),
        "baseline_s": round(base, 3),
        "ratio_1w": round(plan_1w / base, 2),
        "ratio_2w": round(plan_2w / base, 2),
        "speedup_2w": round(plan_1w / plan_2w, 2),
        "rounds": args.rounds,
        "plan_1w_s_rounds": [round(s, 3) for s in times["1w"]],
        "plan_2w_s_rounds": [round(s, 3) for s in times["2w"]],
        "baseline_s_rounds": [round(s, 3) for s in times["baseline"]],
        "generate_s": round(generate_s, 1),
        "reused": reused,
        **dispatched,
        "load_before": load_before,
        "load_after": load_after,
    }
    emit(result)


def dispatch(rounds: int, connections: int) -> dict[str, Any]:
    """The planned day's emails dispatched by 1 and by 2 processes and sent raw, in
    alternating rounds (see the module); the medians."""
    from cobro.workspace import open_workspace

    sink = SmtpServerProcess()
    say(f"SMTP sink (aiosmtpd, recording) in process {sink.proc.pid} on 127.0.0.1:{sink.port}")
    try:
        write_config(
            ROOT,
            {
                "channels.email.smtp.host": "127.0.0.1",
                "channels.email.smtp.port": sink.port,
                "channels.email.smtp.starttls": False,
                "channels.email.smtp.connections": connections,
            },
        )
        ws = open_workspace(ROOT, pg_url(PLANNED))
        tz = ZoneInfo(ws.config.company.timezone)
        ws.close()
        send_at = datetime.combine(BENCH_DATE, clock(10, 0), tzinfo=tz)
        url = fresh_copy(PLANNED)
        messages = prerender(ROOT, url, send_at, day_digest(url)["outbox"])
        drop(TRIAL)
        rates: dict[str, list[float]] = {"1w": [], "2w": [], "raw": []}
        for i in range(rounds):
            say(f"dispatch round {i + 1}/{rounds} (load {loadavg()})")
            order = ["1w", "2w", "raw"]
            for kind in order if i % 2 == 0 else order[::-1]:
                if kind == "raw":
                    rates["raw"].append(raw_round(sink, messages, connections))
                    continue
                rate = dispatch_round(
                    sink,
                    send_at,
                    len(messages),
                    int(kind[0]),
                    root=ROOT,
                    fresh=lambda: fresh_copy(PLANNED),
                    processes=True,
                )
                drop(TRIAL)
                rates[kind].append(rate)
    finally:
        sink.close()
        write_config(ROOT)
    one, two, raw = (median(rates[k]) for k in ("1w", "2w", "raw"))
    say(
        f"dispatch of {len(messages):,} messages: 1 process {one:,.0f}/s, 2 processes "
        f"{two:,.0f}/s, raw aiosmtplib {raw:,.0f}/s ({one / raw:.0%}, {two / raw:.0%})"
    )
    return {
        "messages": len(messages),
        "dispatch_1w_per_s": round(one, 1),
        "dispatch_2w_per_s": round(two, 1),
        "raw_per_s": round(raw, 1),
        "dispatch_ratio_1w": round(one / raw, 2),
        "dispatch_ratio_2w": round(two / raw, 2),
    }


if __name__ == "__main__":
    main()
