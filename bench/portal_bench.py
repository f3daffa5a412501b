"""The debtor portal under load: a debtor's page with 50 open items served by ``cobro serve``
in its own process, 50 concurrent clients from ``wrk`` in another, beside the same
server's trivial ``/healthz`` route in the same run (the baseline); then the statement PDF,
one at a time.

Targets (issue "Debtor portal"): the page's p99 ≤ 50 ms and ≥ 50 % of the baseline's
requests per second. Rounds alternate page and baseline and medians are reported, so a
noisy machine moves both. Needs ``wrk`` (Debian package ``wrk``).

    .venv/bin/python bench/portal_bench.py [--items 50] [--connections 50] [--seconds 10]
                                           [--rounds 3] [--pdfs 20] [--workers 1]

``--workers N`` serves with ``cobro serve --workers N`` (N processes on one socket).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from common import serve_cobro

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "portal"
COBRO = [sys.executable, "-m", "cobro"]


def cobro(ws: Path, *args: str) -> str:
    proc = subprocess.run(
        [*COBRO, "--workspace", str(ws), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"cobro {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def build(items: int) -> tuple[Path, str]:
    """A workspace whose debtor P1 has ``items`` overdue invoices and was sent a claim
    today; the link of that claim."""
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*COBRO, "init", str(OUT)], check=True, capture_output=True)
    today = datetime.now(UTC).date()
    (OUT / "customers.csv").write_text(
        "external_id,name,kind,language,email\nP1,Ana Pérez,business,es,ana@example.com\n",
        encoding="utf-8",
    )
    rows = [
        f"R{i},P1,F-{i:04d},{today - timedelta(days=10 + i)},EUR,{100 + i}.50" for i in range(items)
    ]
    (OUT / "receivables.csv").write_text(
        "external_id,customer,number,due_on,currency,amount\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    cobro(OUT, "import", "customers", str(OUT / "customers.csv"))
    cobro(OUT, "import", "receivables", str(OUT / "receivables.csv"))
    cobro(OUT, "run", "--date", today.isoformat(), "--quiet")
    link = json.loads(cobro(OUT, "portal", "link", "P1", "--json"))
    return OUT, str(link["url"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    """Requests per second and latency percentiles (ms) of ``url`` under ``wrk``."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests on {url}:\n{out}")
    found: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        found[f"p{pct}_ms"] = float(m[1]) * units[m[2]]
    return found


def pdf_times(url: str, n: int) -> list[float]:

    times = []
    with httpx.Client() as client:
        client.get(url).raise_for_status()  # warm
        for _ in range(n):
            began = time.perf_counter()
            response = client.get(url)
            response.raise_for_status()
            assert response.content.startswith(b"%PDF-")
            times.append(time.perf_counter() - began)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pdfs", type=int, default=20)
    ap.add_argument(
        "--workers", type=int, default=1, help="processes of cobro serve (its --workers)"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt install wrk")

    ws, link = build(args.items)
    port = free_port()
    page = re.sub(r"^https?://[^/]+", f"http://127.0.0.1:{port}", link)
    health = f"http://127.0.0.1:{port}/healthz"
    server = serve_cobro(ws, port, args.workers)
    results: dict[str, list[dict[str, float]]] = {"page": [], "healthz": []}
    try:
        # The rounds measure a warm server: the first request of the page compiles its
        # template and renders it (timed apart, "cold_page_ms"), later ones find it kept.
        cold = time.perf_counter()
        httpx.get(page, timeout=30).raise_for_status()
        cold_ms = (time.perf_counter() - cold) * 1000
        httpx.get(health, timeout=30).raise_for_status()
        for r in range(args.rounds):
            for name, url in (("healthz", health), ("page", page)):
                got = wrk(url, args.connections, args.seconds)
                results[name].append(got)
                print(f"round {r + 1} {name}: {got}", file=sys.stderr, flush=True)
        pdfs = pdf_times(page.rstrip("/") + "/statement.pdf", args.pdfs) if args.pdfs else []
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)

    def median(name: str, key: str) -> float:
        return statistics.median(x[key] for x in results[name])

    summary: dict[str, Any] = {
        "bench": "portal",
        "items": args.items,
        "connections": args.connections,
        "workers": args.workers,
        "page_rps": round(median("page", "rps"), 1),
        "page_p50_ms": round(median("page", "p50_ms"), 2),
        "page_p99_ms": round(median("page", "p99_ms"), 2),
        "healthz_rps": round(median("healthz", "rps"), 1),
        "healthz_p99_ms": round(median("healthz", "p99_ms"), 2),
        "cpus": os.cpu_count(),
        "cold_page_ms": round(cold_ms, 1),
    }
    summary["page_vs_healthz"] = round(summary["page_rps"] / summary["healthz_rps"], 3)
    if pdfs:
        summary["pdf_median_ms"] = round(statistics.median(pdfs) * 1000, 1)
        summary["pdf_max_ms"] = round(max(pdfs) * 1000, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
