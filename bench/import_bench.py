"""Import benchmark: ``cobro import receivables`` of a large CSV file, beside a raw INSERT.

Steps:

1. Files are generated once into ``bench/out/import-<debtors>d-<receivables>r/``:
   ``customers.csv`` and ``receivables.csv`` (external id, customer, due date,
   amount, description), and a workspace whose SQLite database holds the customers
   (imported with the importer), checkpointed as ``customers.db``.
2. Each measurement runs in a fresh process on a fresh copy of that database:
   * ``import``: ``import_file(ws, "receivables", receivables.csv, now)``, the
     importer as ``cobro import`` runs it (streaming, batches of 1000, every field
     checked);
   * ``raw``: the same rows read with the ``csv`` module, customer ids mapped with
     one query, ``INSERT`` with ``executemany`` in batches of 1000 on the raw
     sqlite3 connection, one commit per batch: the least the same result needs.
   ``peak_rss_mb`` is the peak RSS (``ru_maxrss``) of each measuring process.

Final stdout line: {"bench": "import", "receivables": N, "import_s": X, "import_rows_s": R,
"import_peak_rss_mb": M, "raw_s": Y, "raw_rows_s": R2, "raw_peak_rss_mb": M2, "ratio": X/Y,
"file_mb": F}.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from common import OUT_DIR, Timer, checkpoint, copy_sqlite, emit, peak_rss_mb, say, write_config

NOW = datetime(2026, 6, 15, 5, 0, tzinfo=UTC)
BATCH = 1000


def _paths(debtors: int, receivables: int) -> dict[str, Path]:
    base = OUT_DIR / f"import-{debtors}d-{receivables}r"
    return {
        "base": base,
        "customers": base / "customers.csv",
        "receivables": base / "receivables.csv",
        "db": base / "customers.db",
        "ws": base / "ws",
    }


def _generate(debtors: int, receivables: int) -> None:
    from cobro.intake.importer import import_file
    from cobro.workspace import open_workspace

    p = _paths(debtors, receivables)
    if p["db"].exists() and p["receivables"].exists():
        return
    p["base"].mkdir(parents=True, exist_ok=True)
    rng = random.Random(16)
    with p["customers"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "name", "kind", "email"])
        for i in range(debtors):
            w.writerow(
                [f"C{i:07d}", f"Debtor {i}", ("business", "person")[i % 2], f"d{i}@debtors.example"]
            )
    start = date(2026, 1, 1)
    with p["receivables"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "customer", "due_on", "amount", "description"])
        for i in range(receivables):
            w.writerow(
                [
                    f"R{i:08d}",
                    f"C{rng.randrange(debtors):07d}",
                    (start + timedelta(days=rng.randrange(365))).isoformat(),
                    f"{rng.randrange(1000, 500000) / 100:.2f}",
                    f"Invoice {i}",
                ]
            )
    write_config(p["ws"])
    ws = open_workspace(p["ws"], f"sqlite:///{p['db']}")
    try:
        report = import_file(ws, "customers", p["customers"], NOW)
        say(f"customers: {report.inserted} imported, {report.rejected_rows} rejected")
        assert not report.rejected, report.rejected[:3]
    finally:
        ws.close()
    checkpoint(p["db"])


def _measure_import(db: Path, ws_root: Path, csv_path: Path) -> dict[str, Any]:
    from cobro.intake.importer import import_file
    from cobro.workspace import open_workspace

    ws = open_workspace(ws_root, f"sqlite:///{db}")
    try:
        with Timer() as timer:
            report = import_file(ws, "receivables", csv_path, NOW)
    finally:
        ws.close()
    assert not report.rejected, report.rejected[:3]
    return {"rows": report.inserted, "s": timer.s, "peak_rss_mb": peak_rss_mb()}


def _measure_raw(db: Path, csv_path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    rows = 0
    with Timer() as timer:
        company_id, currency = 1, "EUR"
        ids = dict(conn.execute("SELECT external_id, id FROM customers WHERE company_id = 1"))
        now = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
        sql = (
            "INSERT INTO receivables (company_id, customer_id, external_id, kind, number,"
            " due_on, currency, amount_minor, balance_minor, description, updated_at)"
            " VALUES (?, ?, ?, 'invoice', ?, ?, ?, ?, ?, ?, ?)"
        )
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            next(reader)
            batch: list[tuple[Any, ...]] = []
            for ext, customer, due_on, amount, description in reader:
                minor = round(float(amount) * 100)
                batch.append(
                    (company_id, ids[customer], ext, ext, due_on, currency, minor, minor,
                     description, now)
                )  # fmt: skip
                if len(batch) == BATCH:
                    conn.executemany(sql, batch)
                    conn.commit()
                    rows += len(batch)
                    batch.clear()
            conn.executemany(sql, batch)
            conn.commit()
            rows += len(batch)
    conn.close()
    return {"rows": rows, "s": timer.s, "peak_rss_mb": peak_rss_mb()}


def _worker(args: argparse.Namespace) -> None:
    p = _paths(args.debtors, args.receivables)
    trial = p["base"] / f"trial-{args.worker}.db"
    copy_sqlite(p["db"], trial)
    try:
        if args.worker == "import":
            result = _measure_import(trial, p["ws"], p["receivables"])
        else:
            result = _measure_raw(trial, p["receivables"])
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(trial) + suffix).unlink(missing_ok=True)
    print(json.dumps(result), flush=True)


def _run_worker(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--debtors",
            str(args.debtors),
            "--receivables",
            str(args.receivables),
        ],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivables", type=int, default=1_090_000)
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--worker", choices=("import", "raw"))
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    with Timer() as gen:
        subprocess.run(
            [sys.executable, "-c", _GENERATE, str(args.debtors), str(args.receivables)],
            check=True,
            cwd=Path(__file__).parent,
        )
    say(f"dataset ready in {gen.s:.1f} s")
    raw = _run_worker("raw", args)
    say(f"raw INSERT: {raw['rows']} rows in {raw['s']:.1f} s, peak RSS {raw['peak_rss_mb']} MB")
    imp = _run_worker("import", args)
    say(f"import: {imp['rows']} rows in {imp['s']:.1f} s, peak RSS {imp['peak_rss_mb']} MB")
    size = _paths(args.debtors, args.receivables)["receivables"].stat().st_size
    emit(
        {
            "bench": "import",
            "receivables": imp["rows"],
            "import_s": round(imp["s"], 2),
            "import_rows_s": round(imp["rows"] / imp["s"]),
            "import_peak_rss_mb": imp["peak_rss_mb"],
            "raw_s": round(raw["s"], 2),
            "raw_rows_s": round(raw["rows"] / raw["s"]),
            "raw_peak_rss_mb": raw["peak_rss_mb"],
            "ratio": round(imp["s"] / raw["s"], 2),
            "file_mb": round(size / 1e6, 1),
        }
    )


_GENERATE = "import sys, import_bench; import_bench._generate(int(sys.argv[1]), int(sys.argv[2]))"

if __name__ == "__main__":
    main()
