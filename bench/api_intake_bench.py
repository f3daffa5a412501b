"""Bulk intake through the REST API: receivables posted in batches of 10,000 to ``cobro
serve`` (uvicorn, its own process), beside the CSV import of the same rows in the same run.

Steps:

1. The dataset of ``import_bench.py`` at the given size (generated once into
   ``bench/out/import-<debtors>d-<receivables>r/``): ``customers.csv``,
   ``receivables.csv`` (external id, customer, due date, amount, description) and a
   SQLite database holding the customers, checkpointed as ``customers.db``.
2. ``--repeats`` rounds (default 3), each of the two measurements on a fresh copy of
   that database, alternating so that a drift of the machine reaches both alike:
   * ``csv``: in a fresh process, ``import_file(ws, "receivables", receivables.csv,
     now)``, what ``cobro import receivables`` runs;
   * ``api``: a collector key made with ``cobro keys create``, then ``python -m cobro
     serve`` on 127.0.0.1 (uvicorn, the server the product runs) and, in this process,
     the same rows as JSON bodies of ``--batch`` rows (encoded before the clock starts)
     posted one after the other to ``POST /api/v1/receivables/batch`` with httpx over
     one keep-alive connection; timed from the first request to the last answer. Every
     answer is checked: all rows inserted, none rejected.
3. The medians of the rounds; ``ratio`` is the API's rows per second over the CSV
   import's. ``batch_p50_ms`` / ``batch_max_ms`` are the times of single batches (all
   rounds), ``server_peak_rss_mb`` the largest peak RSS of the server (``VmHWM``).

    .venv/bin/python bench/api_intake_bench.py [--receivables 100000] [--debtors 20000]
                                               [--batch 10000] [--repeats 3]

Final stdout line: {"bench": "api_intake", "receivables", "debtors", "batch", "api_s",
"api_rows_s", "csv_s", "csv_rows_s", "ratio", "batch_p50_ms", "batch_max_ms",
"body_mb", "server_peak_rss_mb"}.
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Timer, copy_sqlite, emit, say, serve_cobro
from import_bench import _paths

COBRO = [sys.executable, "-m", "cobro"]


def _bodies(csv_path: Path, batch: int) -> list[bytes]:
    """The rows of ``receivables.csv`` as JSON bodies of ``batch`` rows each."""
    bodies: list[bytes] = []
    rows: list[dict[str, str]] = []
    with csv_path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows.append(row)
            if len(rows) == batch:
                bodies.append(json.dumps({"rows": rows}).encode())
                rows = []
    if rows:
        bodies.append(json.dumps({"rows": rows}).encode())
    return bodies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cobro(ws: Path, db: Path, *args: str) -> str:
    proc = subprocess.run(
        [*COBRO, "--workspace", str(ws), "--db", f"sqlite:///{db}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"cobro {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def _serve(ws: Path, db: Path, port: int) -> subprocess.Popen[str]:
    return serve_cobro(ws, port, db=f"sqlite:///{db}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _trial_db(base: Path, name: str) -> Path:
    trial = base / f"trial-{name}.db"
    copy_sqlite(base / "customers.db", trial)
    return trial


def _drop(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def measure_api(args: argparse.Namespace, bodies: list[bytes], rows: int) -> dict[str, Any]:
    import httpx

    p = _paths(args.debtors, args.receivables)
    db = _trial_db(p["base"], "api")
    made = json.loads(_cobro(p["ws"], db, "keys", "create", "--name", "bench", "--role",
                             "collector", "--json"))  # fmt: skip
    port = _free_port()
    server = _serve(p["ws"], db, port)
    times: list[float] = []
    try:
        headers = {"authorization": f"Bearer {made['key']}", "content-type": "application/json"}
        url = f"http://127.0.0.1:{port}/api/v1/receivables/batch"
        with httpx.Client(timeout=None) as client:
            client.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
            inserted = 0
            with Timer() as timer:
                for body in bodies:
                    began = time.perf_counter()
                    response = client.post(url, content=body, headers=headers)
                    times.append(time.perf_counter() - began)
                    if response.status_code != 200:
                        raise SystemExit(f"batch refused: {response.status_code} {response.text}")
                    report = response.json()
                    if report["rejected"]:
                        raise SystemExit(f"rows rejected: {report['rejected'][:3]}")
                    inserted += report["inserted"]
        rss = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
        _drop(db)
    assert inserted == rows, (inserted, rows)
    return {"rows": inserted, "s": timer.s, "batch_s": times, "server_peak_rss_mb": rss}


def measure_csv(args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--csv-worker", "--debtors", str(args.debtors),
         "--receivables", str(args.receivables)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out.strip().splitlines()[-1]))


def _csv_worker(args: argparse.Namespace) -> None:
    from import_bench import _measure_import

    p = _paths(args.debtors, args.receivables)
    db = _trial_db(p["base"], "csv")
    try:
        result = _measure_import(db, p["ws"], p["receivables"])
    finally:
        _drop(db)
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivables", type=int, default=100_000)
    ap.add_argument("--debtors", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.csv_worker:
        _csv_worker(args)
        return
    with Timer() as gen:
        subprocess.run(
            [sys.executable, "-c", _GENERATE, str(args.debtors), str(args.receivables)],
            check=True,
            cwd=Path(__file__).parent,
        )
    say(f"dataset ready in {gen.s:.1f} s")
    bodies = _bodies(_paths(args.debtors, args.receivables)["receivables"], args.batch)
    size = sum(len(b) for b in bodies)
    say(f"{len(bodies)} bodies, {size / 1e6:.1f} MB of JSON")
    api: list[dict[str, Any]] = []
    imported: list[dict[str, Any]] = []
    for r in range(args.repeats):
        imported.append(measure_csv(args))
        say(f"round {r + 1} csv: {imported[-1]['rows']} rows in {imported[-1]['s']:.2f} s")
        api.append(measure_api(args, bodies, imported[-1]["rows"]))
        say(
            f"round {r + 1} api: {api[-1]['rows']} rows in {api[-1]['s']:.2f} s "
            f"(batches {', '.join(f'{s:.2f}' for s in api[-1]['batch_s'])} s)"
        )
    rows = api[0]["rows"]
    api_s = statistics.median(x["s"] for x in api)
    csv_s = statistics.median(x["s"] for x in imported)
    batches = [s for x in api for s in x["batch_s"]]
    emit(
        {
            "bench": "api_intake",
            "receivables": rows,
            "debtors": args.debtors,
            "batch": args.batch,
            "api_s": round(api_s, 2),
            "api_rows_s": round(rows / api_s),
            "csv_s": round(csv_s, 2),
            "csv_rows_s": round(rows / csv_s),
            "ratio": round(csv_s / api_s, 2),
            "batch_p50_ms": round(statistics.median(batches) * 1000),
            "batch_max_ms": round(max(batches) * 1000),
            "body_mb": round(size / 1e6, 1),
            "server_peak_rss_mb": max(x["server_peak_rss_mb"] for x in api),
        }
    )


_GENERATE = "import sys, import_bench; import_bench._generate(int(sys.argv[1]), int(sys.argv[2]))"

if __name__ == "__main__":
    main()
