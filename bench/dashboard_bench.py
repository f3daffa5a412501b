"""The staff dashboard under load: the overview (``/dashboard/``) and the debtor search
(``/dashboard/debtors?q=...``) served by ``cobro serve`` in its own process on the benchmark
company (1,000,000 receivables, 200,000 debtors, a year of claims: the data of
``api_read_bench.py``), under 20 concurrent ``wrk`` clients in another process, the
requests taking in turn the sessions of 20 logins of a read-only staff user; beside the
same server's ``/healthz`` (rounds alternate, medians are reported) and, in the same
run, the raw SQL
of the same aggregates (the statements the overview and the search run, executed on the
sqlite3 driver without SQLAlchemy, the server stopped).

Targets (issue 12): p99 under 20 concurrent users: overview ≤ 300 ms, search ≤ 100 ms.

    .venv/bin/python bench/dashboard_bench.py [--receivables 1000000] [--debtors 200000]
        [--claims 5] [--connections 20] [--users 20] [--seconds 10] [--rounds 3]
        [--paths 2000] [--sql-samples 200] [--workers 1]

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
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_read_bench import build, free_port, wrk
from common import OUT_DIR, Timer, say, serve_cobro

OUT = OUT_DIR / "dashboard"
PASSWORD = "bench-password-12"
PREFIX = "/dashboard"


def load() -> str:
    """The machine's load averages (what ``uptime`` prints)."""
    return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def workspace(debtors: int, receivables: int, claims: int) -> Path:
    """``bench/out/dashboard/``: a fresh copy of the API benchmark's company and claims."""
    made = build(debtors, receivables, claims)  # bench/out/api/, from the cached data
    if OUT.exists():
        shutil.rmtree(OUT)
    shutil.move(str(made), str(OUT))
    return OUT


def add_user(ws: Path) -> str:
    """A read-only staff user (``cobro users add``; the first command migrates the copy)."""
    email = "staff@bench.example"
    command = [sys.executable, "-m", "cobro", "--workspace", str(ws), "users", "add", email]
    proc = subprocess.run(
        [*command, "--role", "read-only", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"cobro users add failed:\n{proc.stderr}{proc.stdout}")
    return email


def index_terms(ws: Path) -> None:
    """The search's terms of every debtor, when the copy has none: migration ``0020``
    fills them from the debtors there are, but a company generated at that schema
    already was bulk-loaded without them (``common.py`` writes rows, not terms)."""
    from cobro.engine.debtor_terms import index_debtors
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    opened = open_workspace(ws)
    try:
        with opened.engine.begin() as conn:
            if conn.execute(t.customer_terms.select().limit(1)).first() is None:
                with Timer() as tm:
                    written = index_debtors(conn, opened.company_id)
                say(f"indexed {written:,} search terms in {tm.s:.1f} s")
    finally:
        opened.close()


def log_in(base: str, email: str) -> str:
    """The session token of ``email`` logged in through the login form."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as client:
        page = client.get(f"{PREFIX}/login")
        page.raise_for_status()
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if found is None:
            raise SystemExit("the login page has no form token")
        done = client.post(
            f"{PREFIX}/login",
            data={"email": email, "password": PASSWORD, "csrf": found[1], "next": "/dashboard/"},
        )
        token = done.cookies.get("cobro_staff")
        if done.status_code != 303 or not token:
            raise SystemExit(f"logging in {email} failed: {done.status_code}\n{done.text[:500]}")
        return str(token)


def lua(paths: list[str], tokens: list[str], name: str) -> Path:
    """A wrk script asking for ``paths`` in turn, each request with the next session."""
    out = OUT / f"{name}.lua"
    quoted = ",\n".join(json.dumps(p) for p in paths)
    cookies = ",\n".join(json.dumps(f"cobro_staff={t}") for t in tokens)
    out.write_text(
        f"local paths = {{\n{quoted}\n}}\n"
        f"local cookies = {{\n{cookies}\n}}\n"
        "local i = 0\n"
        "setup = function(thread) thread:set('start', math.random(#paths)) end\n"
        "init = function(args) i = tonumber(start) or 0 end\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local p = paths[i % #paths + 1]\n"
        "  local c = cookies[i % #cookies + 1]\n"
        '  return wrk.format("GET", p, {["Cookie"] = c})\n'
        "end\n",
        encoding="utf-8",
    )
    return out


def searches(db: Path, n: int, seed: int = 13) -> list[str]:
    """``n`` searches a collector types, each for another debtor chosen at random: the
    debtor's name, its id, or the start of its email address, in turn."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT external_id, name, email FROM customers").fetchall()
    finally:
        con.close()
    rnd = random.Random(seed)
    out = []
    for i, (external_id, name, email) in enumerate(rnd.sample(rows, min(n, len(rows)))):
        if i % 3 == 0:
            q = name
        elif i % 3 == 1:
            q = external_id
        else:
            q = (email or external_id).split("@")[0] + "@"
        out.append(q)
    return out


def check_page(base: str, path: str, token: str, *needles: str) -> str:
    import httpx

    got = httpx.get(base + path, cookies={"cobro_staff": token}, timeout=600)
    if got.status_code != 200:
        raise SystemExit(f"GET {path}: {got.status_code}\n{got.text[:500]}")
    for needle in needles:
        if needle not in got.text:
            raise SystemExit(f"GET {path}: {needle!r} is not on the page")
    return got.text


def kpi(html: str, name: str) -> str:
    """The digits of the overview's figure ``name`` (``kpi-outstanding``...)."""
    found = re.search(rf'id="{name}".*?<span class="value">([^<]*)</span>', html, re.S)
    if found is None:
        raise SystemExit(f"the overview has no {name}")
    return re.sub(r"\D", "", found[1])


def captured(ws: Any, run: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The SELECT statements ``run(conn)`` executes on workspace ``ws``, with their
    parameters, as the driver receives them."""
    from sqlalchemy import event

    seen: list[tuple[str, tuple[Any, ...]]] = []

    def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, tuple(params)))

    with ws.engine.connect() as conn:
        event.listen(ws.engine, "before_cursor_execute", keep)
        try:
            run(conn)
        finally:
            event.remove(ws.engine, "before_cursor_execute", keep)
    return seen


def raw_ms(db: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> float:
    """Time (ms) to run ``statements`` and fetch every row, on the sqlite3 driver."""
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA cache_size=-65536")
        start = time.perf_counter()
        for statement, params in statements:
            con.execute(statement, params).fetchall()
        return (time.perf_counter() - start) * 1000
    finally:
        con.close()


def baseline(root: Path, today: date, queries: list[str], samples: int) -> dict[str, Any]:
    """The raw SQL of the overview (its aggregates and the 90-day trend, as compiled) and
    of ``samples`` searches: the median milliseconds of 3 runs of the overview's, and
    the median and 99th percentile of the searches'."""
    from cobro.engine.debtor_search import DebtorFilter, search_debtors
    from cobro.engine.reports import overview, trend
    from cobro.workspace import open_workspace

    ws = open_workspace(root)
    c = ws.config.company
    try:
        statements = captured(
            ws,
            lambda conn: (
                overview(conn, ws.company_id, c.currency, today, c.timezone),
                trend(conn, ws.company_id, c.currency, today, c.timezone),
            ),
        )
        found = [
            captured(
                ws,
                lambda conn, q=q: search_debtors(
                    conn, ws.company_id, c.currency, today, DebtorFilter(text=q)
                ),
            )
            for q in queries[:samples]
        ]
    finally:
        ws.close()
    db = root / "cobro.db"
    overview_runs = [raw_ms(db, statements) for _ in range(3)]
    say(f"raw SQL of the overview: {len(statements)} statements, runs {overview_runs}")
    search_runs = [raw_ms(db, each) for each in found]
    return {
        "overview_sql_ms": round(statistics.median(overview_runs), 1),
        "search_sql_ms": round(statistics.median(search_runs), 2),
        "search_sql_p99_ms": round(
            statistics.quantiles(search_runs, n=100)[98] if len(search_runs) > 1 else 0, 2
        ),
    }


def expected(db: Path, currency: str, today: date) -> tuple[int, int]:
    """What the overview must show: the open balance in the company's currency (minor
    units) and the debtors with something overdue, by plain SQL."""
    con = sqlite3.connect(db)
    try:
        total, late = con.execute(
            "SELECT (SELECT coalesce(sum(balance_minor), 0) FROM receivables "
            "WHERE balance_minor > 0 AND currency = ?), "
            "(SELECT count(DISTINCT customer_id) FROM receivables "
            "WHERE balance_minor > 0 AND due_on < ?)",
            (currency, today.isoformat()),
        ).fetchone()
        return int(total), int(late)
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivables", type=int, default=1_000_000)
    ap.add_argument("--debtors", type=int, default=200_000)
    ap.add_argument("--claims", type=int, default=5, help="claims per debtor, on average")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--users", type=int, default=20, help="staff sessions the requests share")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", type=int, default=2000, help="searches asked in turn")
    ap.add_argument("--sql-samples", type=int, default=200, help="searches timed as raw SQL")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes of cobro serve (its --workers)"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt install wrk")
    load_before = load()
    say(f"load average before: {load_before}")

    with Timer() as tm:
        ws = workspace(args.debtors, args.receivables, args.claims)
        email = add_user(ws)
        index_terms(ws)
    say(f"workspace ready in {tm.s:.1f} s")
    from cobro.config.loader import load_config

    company = load_config(ws / "cobro.yaml").company
    # The server's today (the overview is as of the company's date now), on the
    # benchmark's data centred on 2026-06-15: most items are overdue by then.
    today = datetime.now(ZoneInfo(company.timezone)).date()
    open_minor, late_debtors = expected(ws / "cobro.db", company.currency, today)
    queries = searches(ws / "cobro.db", args.paths)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve_cobro(ws, port, args.workers)
    results: dict[str, list[dict[str, float]]] = {"healthz": [], "overview": [], "search": []}
    single: dict[str, dict[str, float]] = {}
    try:
        tokens = [log_in(base, email) for _ in range(args.users)]  # a session each
        with Timer() as first:
            page = check_page(base, f"{PREFIX}/", tokens[0], 'id="kpi-outstanding"')
        if kpi(page, "kpi-outstanding") != str(open_minor):
            raise SystemExit(
                f"the overview shows {kpi(page, 'kpi-outstanding')}, the SQL {open_minor}"
            )
        if kpi(page, "kpi-debtors") != str(late_debtors):
            raise SystemExit(f"the overview shows {kpi(page, 'kpi-debtors')} debtors overdue")
        with Timer() as second:
            check_page(base, f"{PREFIX}/", tokens[1], 'id="kpi-outstanding"')
        say(f"overview: first {first.s * 1000:.0f} ms (computed), then {second.s * 1000:.1f} ms")
        paths = [f"{PREFIX}/debtors?{urlencode({'q': q})}" for q in queries]
        for path in paths[:20]:  # a search finds its debtor
            check_page(base, path, tokens[0], '<td class="id">')
        scripts = {
            "healthz": lua(["/healthz"], tokens, "healthz"),
            "overview": lua([f"{PREFIX}/"], tokens, "overview"),
            "search": lua(paths, tokens, "search"),
        }
        for r in range(args.rounds):
            for name, script in scripts.items():
                got = wrk(base, script, args.connections, args.seconds)
                results[name].append(got)
                say(f"round {r + 1} {name}: {got} (load {load()})")
        for name, script in scripts.items():
            single[name] = wrk(base, script, 1, args.seconds)
            say(f"one client {name}: {single[name]}")
        check_page(base, f"{PREFIX}/", tokens[0], 'id="kpi-outstanding"')  # still served
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    raw = baseline(ws, today, queries, args.sql_samples)
    load_after = load()
    say(f"load average after: {load_after}")

    def median(name: str, key: str) -> float:
        return round(statistics.median(x[key] for x in results[name]), 2)

    summary: dict[str, Any] = {
        "bench": "dashboard",
        "receivables": args.receivables,
        "debtors": args.debtors,
        "connections": args.connections,
        "workers": args.workers,
        "users": args.users,
        "cpus": os.cpu_count(),
        "overview_first_ms": round(first.s * 1000, 1),
    }
    for name in results:
        summary[f"{name}_rps"] = median(name, "rps")
        summary[f"{name}_p50_ms"] = median(name, "p50_ms")
        summary[f"{name}_p99_ms"] = median(name, "p99_ms")
        summary[f"{name}_one_client_p50_ms"] = single[name]["p50_ms"]
    summary["overview_sql_ms"] = raw["overview_sql_ms"]
    summary["search_sql_ms"] = raw["search_sql_ms"]
    summary["search_sql_p99_ms"] = raw["search_sql_p99_ms"]
    summary["load_before"] = load_before
    summary["load_after"] = load_after
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
