"""The REST API's reads under load: ``GET /api/v1/customers/{id}/claims`` and filtered lists,
served by ``cobro serve`` in its own process on the benchmark company (1,000,000
receivables, 200,000 debtors, by default) with a year of claims behind it, under 50
concurrent ``wrk`` clients in another process, beside the same server's ``/healthz`` in
the same run (rounds alternate, medians are reported); then each route with one client
(its time per request without queueing).

Target (issue 11): p99 ≤ 50 ms under 50 concurrent clients. Each request of a round asks
for another debtor (a list of ``--paths`` debtors with claims, in turn). The filtered
receivables list (``/receivables?customer=``) is measured when the server has that route;
``/claims?customer=&status=sent`` and ``/customers?policy=b2b`` are measured in any case.

    .venv/bin/python bench/api_read_bench.py [--receivables 1000000] [--debtors 200000]
        [--claims 5] [--connections 50] [--seconds 10] [--rounds 3] [--paths 2000]
        [--workers 1] [--build-only]

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DATE,
    OUT_DIR,
    Timer,
    checkpoint,
    copy_sqlite,
    ensure_dataset,
    say,
    serve_cobro,
    upgrade_schema,
)

OUT = OUT_DIR / "api"
COBRO = [sys.executable, "-m", "cobro"]
_DT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite


def cobro(ws: Path, *args: str) -> str:
    proc = subprocess.run(
        [*COBRO, "--workspace", str(ws), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"cobro {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def add_claims(db: Path, per_debtor: int, seed: int = 7) -> tuple[int, int]:
    """A year of claims behind the company: each debtor 0 to ``2 * per_debtor`` claims
    (``per_debtor`` on average), a week apart before the benchmark date, each sent (a
    delivery) and listing up to three of the debtor's receivables. Returns (claims, items)."""
    rnd = random.Random(seed)
    con = sqlite3.connect(db)
    try:
        (company_id,) = con.execute("SELECT id FROM companies").fetchone()
        kinds = dict(con.execute("SELECT id, kind FROM customers"))
        owned: dict[int, list[int]] = {}
        for rid, cid in con.execute("SELECT id, customer_id FROM receivables"):
            owned.setdefault(cid, []).append(rid)
        outbox: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []
        items: list[tuple[Any, ...]] = []
        oid = items_n = 0
        for cid in sorted(kinds):
            business = kinds[cid] == "business"
            for j in range(rnd.randint(0, 2 * per_debtor)):
                oid += 1
                day = BENCH_DATE - timedelta(days=7 * (j + 1))
                at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=7)
                step = f"b2b/0{min(j, 5)}" if business else ("consumer/after")
                stamp = at.replace(tzinfo=None).strftime(_DT)
                outbox.append(
                    (
                        oid,
                        company_id,
                        cid,
                        step,
                        day.isoformat(),
                        "sent",
                        stamp,
                        stamp,
                        1,
                        stamp,
                        stamp,
                    )
                )
                deliveries.append(
                    (
                        oid,
                        company_id,
                        oid,
                        1,
                        "email",
                        f"d{cid}@mail.example",
                        "debtor",
                        "sent",
                        f"<cobro.bench.{oid}@demo.example>",
                        "0.0005",
                        stamp,
                    )
                )
                for rid in (owned.get(cid) or [])[:3]:
                    items_n += 1
                    items.append((company_id, oid, rid, step, day.toordinal(), 1000))
        con.executemany(
            "INSERT INTO outbox (id, company_id, customer_id, step, occurrence_on, status, "
            "due_at, next_attempt_at, attempts, created_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            outbox,
        )
        con.executemany(
            "INSERT INTO deliveries (id, company_id, outbox_id, attempt, channel, recipient, "
            "recipient_role, status, message_id, cost, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            deliveries,
        )
        con.executemany(
            "INSERT INTO claim_items (company_id, outbox_id, receivable_id, step, repeat_no, "
            "balance_minor) VALUES (?, ?, ?, ?, ?, ?)",
            items,
        )
        con.commit()
        return oid, items_n
    finally:
        con.close()


def build(debtors: int, receivables: int, per_debtor: int) -> Path:
    """``bench/out/api/``: a copy of the cached benchmark company with its claim history
    (cached itself as ``claims.db`` beside it)."""
    source = ensure_dataset(debtors, receivables)
    tag = f"{debtors}d-{receivables}r-{per_debtor}c"
    cached = OUT_DIR / f"api-{tag}.db"
    if not cached.exists():
        work = OUT_DIR / f"api-{tag}.building.db"
        copy_sqlite(source / "cobro.db", work)
        with Timer() as tm:
            claims, items = add_claims(work, per_debtor)
        checkpoint(work)
        work.rename(cached)
        say(f"added {claims:,} claims listing {items:,} items in {tm.s:.1f} s")
    upgrade_schema(cached)  # cached by an earlier version: brought to the current schema
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    shutil.copyfile(source / "cobro.yaml", OUT / "cobro.yaml")
    copy_sqlite(cached, OUT / "cobro.db")
    return OUT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script(paths: list[str], key: str | None) -> Path:
    """A wrk script asking for ``paths`` in turn (each thread from its own place)."""
    lua = OUT / f"paths-{abs(hash(tuple(paths)))}.lua"
    quoted = ",\n".join(json.dumps(p) for p in paths)
    auth = f'["Authorization"] = "Bearer {key}"' if key else ""
    lua.write_text(
        f"local paths = {{\n{quoted}\n}}\n"
        "local i = 0\n"
        "setup = function(thread) thread:set('start', math.random(#paths)) end\n"
        "init = function(args) i = tonumber(start) or 0 end\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        f'  return wrk.format("GET", paths[i], {{{auth}}})\n'
        "end\n",
        encoding="utf-8",
    )
    return lua


def wrk(base: str, lua: Path, connections: int, seconds: int) -> dict[str, float]:
    """Requests per second and latency percentiles (ms) under ``wrk``."""
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    found: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        found[f"p{pct}_ms"] = round(float(m[1]) * units[m[2]], 2)
    return found


def check(base: str, path: str, key: str) -> Any:
    import httpx

    response = httpx.get(base + path, headers={"authorization": f"Bearer {key}"}, timeout=60)
    response.raise_for_status()
    return response.json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivables", type=int, default=1_000_000)
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--claims", type=int, default=5, help="claims per debtor, on average")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", type=int, default=2000, help="debtors asked for in turn")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes of cobro serve (its --workers)"
    )
    ap.add_argument("--build-only", action="store_true", help="build the data, measure nothing")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt install wrk")

    with Timer() as tm:
        ws = build(args.debtors, args.receivables, args.claims)
    say(f"workspace ready in {tm.s:.1f} s")
    if args.build_only:
        return
    key = json.loads(cobro(ws, "keys", "create", "--name", "bench", "--json"))["key"]
    con = sqlite3.connect(ws / "cobro.db")
    try:
        with_claims = [
            row[0]
            for row in con.execute(
                "SELECT c.external_id FROM customers c WHERE EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.company_id = c.company_id "
                "AND o.customer_id = c.id)"
            )
        ]
        claims_n, customers_n = con.execute(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM customers)"
        ).fetchone()
    finally:
        con.close()
    rnd = random.Random(11)
    chosen = rnd.sample(with_claims, min(args.paths, len(with_claims)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve_cobro(ws, port, args.workers)
    api = "/api/v1"
    targets: dict[str, list[str]] = {
        "healthz": ["/healthz"],
        "customer_claims": [f"{api}/customers/{c}/claims" for c in chosen],
        "claims_by_customer": [f"{api}/claims?customer={c}&status=sent" for c in chosen],
        "customers_by_policy": [
            f"{api}/customers?policy=b2b&limit=50&cursor=" + cursor
            for cursor in cursors(rnd, customers_n, len(chosen))
        ],
    }
    try:
        paths = check(base, f"{api}/openapi.json", key)["paths"]
        if "/receivables" in paths:
            targets["receivables_by_customer"] = [f"{api}/receivables?customer={c}" for c in chosen]
        sample = check(base, targets["customer_claims"][0], key)
        say(f"{claims_n:,} claims; a debtor's page: {len(sample['data'])} claim(s)")
        for name, urls in targets.items():  # each route once, before measuring
            if name != "healthz":
                check(base, urls[0], key)
        scripts = {n: script(urls, None if n == "healthz" else key) for n, urls in targets.items()}
        results: dict[str, list[dict[str, float]]] = {n: [] for n in targets}
        for r in range(args.rounds):
            for name, lua in scripts.items():
                got = wrk(base, lua, args.connections, args.seconds)
                results[name].append(got)
                say(f"round {r + 1} {name}: {got}")
        single = {n: wrk(base, lua, 1, args.seconds) for n, lua in scripts.items()}
        for name, got in single.items():
            say(f"one client {name}: {got}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # requests still running: stop it anyway
            server.kill()
            server.wait()

    def median(name: str, key_: str) -> float:
        return round(statistics.median(x[key_] for x in results[name]), 2)

    summary: dict[str, Any] = {
        "bench": "api_read",
        "receivables": args.receivables,
        "debtors": args.debtors,
        "claims": claims_n,
        "connections": args.connections,
        "workers": args.workers,
        "cpus": os.cpu_count(),
    }
    for name in targets:
        summary[f"{name}_rps"] = median(name, "rps")
        summary[f"{name}_p50_ms"] = median(name, "p50_ms")
        summary[f"{name}_p99_ms"] = median(name, "p99_ms")
        summary[f"{name}_one_client_p50_ms"] = single[name]["p50_ms"]
    print(json.dumps(summary))


def cursors(rnd: random.Random, customers: int, n: int) -> list[str]:
    """Cursors of /customers pages starting at random debtors (the pages a client paging
    through the list asks for)."""
    import base64

    return [
        base64.urlsafe_b64encode(json.dumps([rnd.randrange(customers)]).encode())
        .decode()
        .rstrip("=")
        for _ in range(n)
    ]


if __name__ == "__main__":
    main()
