"""Simulation benchmark: 90 days of ``cobro.engine.simulate.simulate`` on the planning dataset.

The process opens a fresh copy of the cached dataset (the one ``plan_bench``
uses: 200,000 debtors, 1,000,000 open receivables, planned through the day
before the benchmark date) and times consuming every day of
``simulate(conn, config, company_id, D, D + 89)`` inside a transaction that is
rolled back.

Final stdout line: {"bench": "simulate", "receivables": N, "days": 90,
"messages": M, "simulate_s": X, "peak_rss_mb": Z}.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import timedelta
from pathlib import Path

from common import (
    BENCH_DATE,
    OUT_DIR,
    copy_sqlite,
    emit,
    ensure_dataset,
    peak_rss_mb,
    say,
    sqlite_url,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--receivables", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the simulation here")
    args = ap.parse_args()

    root = ensure_dataset(min(args.debtors, args.receivables), args.receivables)
    trial = OUT_DIR / "simulate-trial"
    trial.mkdir(parents=True, exist_ok=True)
    db = trial / "cobro.db"
    copy_sqlite(root / "cobro.db", db)

    from sqlalchemy import func, select

    from cobro.engine.simulate import simulate
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    ws = open_workspace(root, sqlite_url(db))
    start, end = BENCH_DATE, BENCH_DATE + timedelta(days=args.days - 1)
    per_day: list[float] = []
    messages = days = 0
    profiler = cProfile.Profile() if args.profile else None
    try:
        with ws.engine.connect() as conn:
            receivables = conn.execute(select(func.count()).select_from(t.receivables)).scalar_one()
            conn.rollback()
            rss_before = peak_rss_mb()
            trans = conn.begin()
            try:
                if profiler:
                    profiler.enable()
                t0 = last = time.perf_counter()
                for day in simulate(conn, ws.config, ws.company_id, start, end):
                    now = time.perf_counter()
                    per_day.append(now - last)
                    last = now
                    messages += len(day)
                    days += 1
                total = time.perf_counter() - t0
                if profiler:
                    profiler.disable()
            finally:
                trans.rollback()
    finally:
        ws.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)

    if profiler and args.profile:
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    rest = sorted(per_day[1:]) or [0.0]
    say(
        f"simulated {days} days ({start} .. {end}) of {receivables:,} receivables: "
        f"{messages:,} messages in {total:.2f} s; first day (with set-up) {per_day[0]:.2f} s, "
        f"other days median {rest[len(rest) // 2]:.3f} s, max {rest[-1]:.3f} s; "
        f"RSS {rss_before:.0f} -> {peak_rss_mb():.0f} MB; target <= 60 s"
    )
    emit(
        {
            "bench": "simulate",
            "receivables": receivables,
            "days": days,
            "messages": messages,
            "simulate_s": round(total, 2),
            "peak_rss_mb": peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    main()
