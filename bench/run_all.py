"""Run the four benchmarks in sequence, each in its own process; print their JSON lines.

Each benchmark's own progress goes to stderr as it runs; at the end the
result lines are printed together on stdout. Options are passed on:
``--receivables N`` and ``--debtors N`` to the planning and simulation
benchmarks, ``--dispatch-debtors N`` to the dispatch benchmark, ``--pg`` to
the planning benchmark, ``--events N`` and ``--event-dispatchers 1,2`` to the
events benchmark. Exit status 1 when a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str]) -> list[str]:
    print(f"== {script} {' '.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return [json.dumps({"bench": script.removesuffix("_bench.py"), "error": proc.returncode})]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debtors", type=int)
    ap.add_argument("--receivables", type=int)
    ap.add_argument("--dispatch-debtors", type=int)
    ap.add_argument("--pg", action="store_true")
    ap.add_argument("--events", type=int)
    ap.add_argument("--event-dispatchers")
    args = ap.parse_args()

    size: list[str] = []
    if args.debtors:
        size += ["--debtors", str(args.debtors)]
    if args.receivables:
        size += ["--receivables", str(args.receivables)]
    dispatch = ["--debtors", str(args.dispatch_debtors)] if args.dispatch_debtors else []
    events: list[str] = []
    if args.events:
        events += ["--events", str(args.events)]
    if args.event_dispatchers:
        events += ["--dispatchers", args.event_dispatchers]

    results: list[str] = []
    results += run("plan_bench.py", size + (["--pg"] if args.pg else []))
    results += run("simulate_bench.py", size)
    results += run("dispatch_bench.py", dispatch)
    results += run("events_bench.py", events)
    for line in results:
        print(line, flush=True)
    sys.exit(1 if any('"error"' in line for line in results) else 0)


if __name__ == "__main__":
    main()
