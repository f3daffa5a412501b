"""Planning benchmark: ``plan_day`` on a company with 1,000,000 open receivables.

Steps:

1. A cached dataset (``bench/out/company-...``) is generated once, in its own
   process: 200,000 debtors (half business on policy ``b2b``, half persons on
   ``consumer``) and 1,000,000 open receivables due over a year centred on
   the benchmark date, planned through the day before it, each debtor at the
   dunning level daily runs would have left it.
2. Each measurement runs in a fresh process on a fresh copy of that database:
   * ``baseline``: on the raw sqlite3 / psycopg connection, what the plan's
     result needs without its per-debtor decisions: the planner's own queries as
     compiled (the debtors with an item reaching a phase today or a review due,
     their debt aggregated per policy), then one claim row per such debtor and
     every open item of theirs written to scratch tables, committed;
   * ``plan``: ``plan_day`` for the benchmark date in one transaction, commit
     included.
   Baseline and plan alternate ``--repeats`` times; the medians are reported.
   ``peak_rss_mb`` is the peak RSS of the planning process (which opens the
   prepared database and plans; it never generated anything).

Final stdout line: {"bench": "plan", "receivables": N, "due": N, "outbox": N,
"plan_s": X, "baseline_s": Y, "ratio": R, "peak_rss_mb": Z}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from common import (
    BENCH_DATE,
    OUT_DIR,
    PG_ADMIN_URL,
    PG_BENCH_URL,
    Timer,
    copy_sqlite,
    emit,
    ensure_dataset,
    load_company,
    median,
    peak_rss_mb,
    say,
    set_covered,
    settle_levels,
    sqlite_url,
    write_config,
)

PLAN_NOW = datetime.combine(BENCH_DATE, time(5, 0), tzinfo=UTC)
SCRATCH = "bench_scratch"


# -- workers (each runs in a fresh process) -------------------------------------------


def _open(root: Path, url: str) -> Any:
    from cobro.workspace import open_workspace

    return open_workspace(root, url)


def worker_plan(root: Path, url: str) -> dict[str, Any]:
    from sqlalchemy import func, insert, select

    from cobro.engine.planner import plan_day, refresh_policies
    from cobro.store import tables as t

    ws = _open(root, url)
    try:
        with ws.engine.begin() as conn:
            if refresh_policies(conn, ws.config, ws.company_id):
                say("warning: policies were re-resolved before timing (fingerprint differed)")
            run_id = conn.execute(
                insert(t.runs)
                .values(
                    company_id=ws.company_id, run_on=BENCH_DATE, as_of=PLAN_NOW, started_at=PLAN_NOW
                )
                .returning(t.runs.c.id)
            ).scalar_one()
        rss_before = peak_rss_mb()
        with Timer() as tm, ws.engine.begin() as conn:
            result = plan_day(conn, ws.config, ws.company_id, BENCH_DATE, PLAN_NOW, run_id)
        rss_after = peak_rss_mb()
        with ws.engine.connect() as conn:
            outbox = conn.execute(
                select(func.count()).select_from(t.outbox).where(t.outbox.c.run_id == run_id)
            ).scalar_one()
            items = conn.execute(select(func.count()).select_from(t.claim_items)).scalar_one()
            receivables = conn.execute(select(func.count()).select_from(t.receivables)).scalar_one()
    finally:
        ws.close()
    return {
        "plan_s": tm.s,
        "due": items,
        "items_reported": result.items,
        "outbox": outbox,
        "outbox_reported": result.planned,
        "candidates": result.candidates,
        "receivables": receivables,
        "rss_before_mb": rss_before,
        "peak_rss_mb": rss_after,
    }


def _compiled(ws: Any, statement: Any) -> tuple[str, Any]:
    """A planner statement as driver SQL and parameters, exactly as compiled."""
    compiled = statement.compile(
        dialect=ws.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    if ws.engine.dialect.name == "sqlite":
        # qmark placeholders; dates as SQLAlchemy stores them in SQLite (ISO text).
        values = [compiled.params[name] for name in compiled.positiontup or []]
        return str(compiled), [v.isoformat() if isinstance(v, date) else v for v in values]
    return str(compiled), compiled.params  # psycopg: %(name)s placeholders


def _crossing_sql(ws: Any) -> tuple[str, Any]:
    """The planner's own selection of the debtors an item of which reaches a phase on
    the benchmark date (one range scan of ix_receivables_open_due per phase)."""
    from cobro.engine.claims import _crossing_select

    covered = BENCH_DATE - timedelta(days=1)
    policies = ws.config.all_policies()
    return _compiled(ws, _crossing_select(ws.company_id, policies, BENCH_DATE, covered))


def _debt_sql(ws: Any, policy: Any) -> tuple[str, Any]:
    """The planner's own aggregation of the candidates' debt on ``policy`` (over the
    temporary table ``cobro_candidates``)."""
    from cobro.engine.claims import _candidates_table, _debt_select

    return _compiled(ws, _debt_select(ws.company_id, policy, BENCH_DATE, _candidates_table()))


def worker_baseline(root: Path, url: str) -> dict[str, Any]:
    """What the plan's result needs, in raw SQL and without its per-debtor decisions: the
    candidates, their debt, then one claim row per candidate with debt and every open item
    of those debtors written to scratch tables (more rows than the plan writes, which
    claims only the debtors whose phase changes)."""
    from cobro.store.db import RANDOM_PAGE_COST

    ws = _open(root, url)
    sqlite = ws.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    ignore = "INSERT OR IGNORE INTO" if sqlite else "INSERT INTO"
    conflict = "" if sqlite else " ON CONFLICT DO NOTHING"
    try:
        crossing, cparams = _crossing_sql(ws)
        raw = ws.engine.raw_connection()
        try:
            drv = raw.driver_connection
            cur = drv.cursor()
            cur.execute(f"CREATE TABLE {SCRATCH} (customer_id INTEGER NOT NULL, step VARCHAR(90))")
            cur.execute(f"CREATE TABLE {SCRATCH}_items (receivable_id INTEGER, outbox INTEGER)")
            drv.commit()
            today: Any = BENCH_DATE.isoformat() if sqlite else BENCH_DATE
            with Timer() as tm:
                if sqlite:
                    cur.execute("BEGIN IMMEDIATE")
                else:  # the planner's own setting of its transaction (favour_indexes)
                    cur.execute(
                        "SELECT set_config('random_page_cost', %s, true)", [str(RANDOM_PAGE_COST)]
                    )
                cur.execute(
                    "CREATE TEMPORARY TABLE cobro_candidates (customer_id INTEGER PRIMARY KEY)"
                )
                cur.execute(f"{ignore} cobro_candidates {crossing}{conflict}", cparams)
                cur.execute(
                    f"{ignore} cobro_candidates SELECT customer_id FROM dunning_levels "
                    f"WHERE company_id = {mark} AND review_on <= {mark}{conflict}",
                    [ws.company_id, today],
                )
                debts = []
                for policy in ws.config.all_policies():
                    sql, params = _debt_sql(ws, policy)
                    cur.execute(sql, params)
                    debts += [(row[0], policy.name) for row in cur.fetchall()]
                cur.executemany(f"INSERT INTO {SCRATCH} VALUES ({mark}, {mark})", debts)
                cur.execute(
                    f"INSERT INTO {SCRATCH}_items SELECT r.id, s.customer_id FROM {SCRATCH} s "
                    "JOIN receivables r ON r.customer_id = s.customer_id WHERE r.balance_minor > 0"
                )
                items = cur.rowcount
                cur.execute("DROP TABLE cobro_candidates")
                drv.commit()
            cur.close()
        finally:
            raw.close()
    finally:
        ws.close()
    return {
        "baseline_s": tm.s,
        "rows": items,
        "candidates": len(debts),
        "peak_rss_mb": peak_rss_mb(),
    }


# -- PostgreSQL dataset -------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(sql)


def pg_reachable() -> bool:
    try:
        _pg_admin("SELECT 1")
    except Exception as exc:
        say(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
        return False
    return True


def pg_generate(root: Path, debtors: int, receivables: int) -> None:
    """Load the same company into database cobro_bench (the template of each trial copy)."""
    from cobro.engine.planner import refresh_policies
    from cobro.workspace import open_workspace

    _pg_admin("DROP DATABASE IF EXISTS cobro_bench WITH (FORCE)")
    _pg_admin("CREATE DATABASE cobro_bench")
    write_config(root)
    ws = open_workspace(root, PG_BENCH_URL)
    try:
        with Timer() as tm, ws.engine.begin() as conn:
            raw = conn.connection.driver_connection
            load_company(raw, "postgresql", ws.company_id, debtors, receivables, BENCH_DATE)
            refresh_policies(conn, ws.config, ws.company_id)
            set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
            settle_levels(conn, ws.config, ws.company_id, BENCH_DATE)
        with ws.engine.connect() as conn:
            conn.connection.driver_connection.autocommit = True
            conn.exec_driver_sql("VACUUM ANALYZE")
        say(f"PostgreSQL: loaded {receivables:,} receivables in {tm.s:.1f} s (+ VACUUM ANALYZE)")
    finally:
        ws.close()


# -- driver --------------------------------------------------------------------------


def run_worker(kind: str, root: Path, url: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--root", str(root), "--url", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    if out.stderr.strip():
        say(out.stderr.rstrip())
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(
    root: Path, fresh_copy: Any, repeats: int, label: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alternate baseline and plan ``repeats`` times, each on a fresh copy of the data."""
    bases, plans = [], []
    for i in range(repeats):
        url = fresh_copy()
        b = run_worker("baseline", root, url)
        bases.append(b)
        url = fresh_copy()
        p = run_worker("plan", root, url)
        plans.append(p)
        say(
            f"[{label} {i + 1}/{repeats}] baseline {b['baseline_s']:.3f} s"
            f" ({b['candidates']:,} debtors with debt, {b['rows']:,} items)"
            f" | plan_day {p['plan_s']:.3f} s ({p['candidates']:,} debtors looked at,"
            f" {p['outbox']:,} claims, {p['due']:,} items)"
            f" | planning process RSS {p['rss_before_mb']:.0f} -> {p['peak_rss_mb']:.0f} MB"
        )
    return bases, plans


def summarise(
    bases: list[dict[str, Any]], plans: list[dict[str, Any]], backend: str
) -> dict[str, Any]:
    plan_s = median([p["plan_s"] for p in plans])
    base_s = median([b["baseline_s"] for b in bases])
    p0 = plans[0]
    if bases[0]["candidates"] != p0["candidates"]:
        say(
            f"note: the baseline found {bases[0]['candidates']:,} debtors with debt, the plan"
            f" looked at {p0['candidates']:,}"
        )
    if p0["items_reported"] != p0["due"] or p0["outbox_reported"] != p0["outbox"]:
        say(
            f"note: PlanResult reported {p0['items_reported']:,} items and "
            f"{p0['outbox_reported']:,} outbox rows; the tables hold {p0['due']:,} and "
            f"{p0['outbox']:,}"
        )
    result: dict[str, Any] = {"bench": "plan"}
    if backend != "sqlite":
        result["backend"] = backend
    result.update(
        {
            "receivables": p0["receivables"],
            "due": p0["due"],
            "outbox": p0["outbox"],
            "plan_s": round(plan_s, 3),
            "baseline_s": round(base_s, 3),
            "ratio": round(plan_s / base_s, 2) if base_s else None,
            "peak_rss_mb": max(p["peak_rss_mb"] for p in plans),
        }
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--receivables", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="alternations of baseline and plan")
    ap.add_argument("--pg", action="store_true", help="also run on PostgreSQL at 127.0.0.1:5432")
    ap.add_argument("--pg-only", action="store_true", help="run on PostgreSQL only")
    ap.add_argument("--worker", choices=["plan", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = worker_plan if args.worker == "plan" else worker_baseline
        print(json.dumps(fn(args.root, args.url)))
        return

    debtors = min(args.debtors, args.receivables)
    results = []
    if not args.pg_only:
        root = ensure_dataset(debtors, args.receivables)
        trial = OUT_DIR / "plan-trial"
        trial.mkdir(parents=True, exist_ok=True)
        db = trial / "cobro.db"

        def fresh_sqlite() -> str:
            copy_sqlite(root / "cobro.db", db)
            return sqlite_url(db)

        bases, plans = measure(root, fresh_sqlite, args.repeats, "sqlite")
        results.append(summarise(bases, plans, "sqlite"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)

    if (args.pg or args.pg_only) and pg_reachable():
        root = OUT_DIR / "plan-pg"
        pg_generate(root, debtors, args.receivables)

        def fresh_pg() -> str:
            _pg_admin("DROP DATABASE IF EXISTS cobro_bench_trial WITH (FORCE)")
            _pg_admin("CREATE DATABASE cobro_bench_trial TEMPLATE cobro_bench")
            return PG_BENCH_URL + "_trial"

        bases, plans = measure(root, fresh_pg, args.repeats, "postgresql")
        _pg_admin("DROP DATABASE IF EXISTS cobro_bench_trial WITH (FORCE)")
        results.append(summarise(bases, plans, "postgresql"))

    for r in results:
        say(
            f"{r.get('backend', 'sqlite')}: plan_day {r['plan_s']:.3f} s vs baseline "
            f"{r['baseline_s']:.3f} s (x{r['ratio']}), {r['due']:,} items due of "
            f"{r['receivables']:,} receivables, {r['outbox']:,} outbox rows, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB; targets: <= 1 s, <= 2x baseline, <= 300 MB"
        )
    for r in results:
        emit(r)


if __name__ == "__main__":
    main()
