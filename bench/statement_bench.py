"""Statement benchmark: the statement of account PDF of a debtor with 50 open items.

1. A workspace in ``bench/out/statement`` (SQLite) gets the starter ``cobro.yaml`` with
   bank details under ``portal.bank``, and one debtor with ``--items`` open invoices
   (issued and due dates spread over a year, amounts of 10-5,000 EUR; one in five
   disputed, one in five promised), imported with the importer; disputes and the
   promise recorded with ``cobro.engine.responses``.
2. Measured in this process after one warm-up statement (fonts, templates, imports):
   rounds of ``--per-round`` statements and ``--per-round`` baseline PDFs, alternating,
   ``--rounds`` times (the machine's speed drifts; alternating keeps the two comparable):
   * **statement**: ``cobro.render.statement.statement_pdf(conn, config, company, debtor,
     language="es", on=BENCH_DATE, root=ws)``, exactly what the portal's download and a
     claim with ``attach_statement`` call: the debtor's items read from the database, the
     HTML rendered from the sandboxed template, the PDF written by WeasyPrint.
   * **baseline**: the same WeasyPrint renderer (``cobro.render.receipt.html_pdf``, the
     receipts' trimmed user-agent stylesheet and font configuration) on a one-line HTML
     page, ``<p>Statement</p>``: what any PDF costs at the least.
   Then the statement's parts alone, ``--per-round`` times each: the queries
   (``load_statement``), the HTML (``statement_html``), the PDF from that HTML.

One stdout line: {"bench": "statement", "items", "pdfs", "pages", "kib", "statement_ms",
"statement_p95_ms", "statement_cpu_ms", "baseline_ms", "baseline_cpu_ms", "ratio",
"query_ms", "html_ms", "pdf_ms", "harfbuzz_subset"} (milliseconds per PDF, medians over
the rounds; ``ratio`` = statement / baseline, CPU).
"""

from __future__ import annotations

import argparse
import io
import math
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import BENCH_DATE, OUT_DIR, emit, median, say, sqlite_url, write_config

BANK = {
    "holder": "Distribuciones Demo S.L.",
    "iban": "ES9121000418450200051332",
    "bic": "CAIXESBBXXX",
    "bank": "CaixaBank",
}


def build(root: Path, items: int) -> tuple[int, int]:
    """The workspace with one debtor of ``items`` open invoices: (company id, debtor id)."""
    from sqlalchemy import select

    from cobro.engine.responses import add_promise, open_dispute
    from cobro.intake.importer import import_records
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    if root.exists():
        shutil.rmtree(root)
    write_config(root, {"portal": {"bank": BANK}})
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rng = random.Random(7)
    customer = {"external_id": "B1", "name": "Ferretería Norte S.L.", "kind": "business"}
    import_records(ws, "customers", [(1, customer)], now, "bench")
    rows = []
    for n in range(items):
        due = BENCH_DATE + timedelta(days=rng.randint(-300, 60))
        rows.append(
            (
                n + 1,
                {
                    "external_id": f"R{n:03d}",
                    "customer": "B1",
                    "number": f"FAC-2026-{n:05d}",
                    "issued_on": (due - timedelta(days=30)).isoformat(),
                    "due_on": due.isoformat(),
                    "amount": f"{rng.randint(1000, 500000) / 100:.2f}",
                },
            )
        )
    report = import_records(ws, "receivables", rows, now, "bench")
    assert not report.rejected, report.rejected
    c, r = t.customers.c, t.receivables.c
    at = datetime.combine(BENCH_DATE, datetime.min.time(), UTC) - timedelta(days=1)
    with ws.engine.begin() as conn:
        debtor = int(conn.execute(select(c.id).where(c.external_id == "B1")).scalar_one())
        ids = list(conn.execute(select(r.id).order_by(r.id)).scalars())
        for rid in ids[0::5]:
            open_dispute(conn, ws.company_id, debtor, rid, "Not received", at, source="staff")
        add_promise(
            conn,
            ws.company_id,
            debtor,
            ids[1::5],
            BENCH_DATE + timedelta(days=10),
            3,
            at,
            today=at.date(),
            max_days=30,
            source="staff",
        )
    company_id = ws.company_id
    ws.close()
    return company_id, debtor


def pages(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


def harfbuzz_subset() -> bool:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "harfbuzz-subset" in out


def timed(fn: Callable[[], object], n: int) -> tuple[list[float], float]:
    """Wall seconds of each of ``n`` calls of ``fn``, and their CPU seconds in all."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return walls, time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50, help="open items of the debtor")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=10)
    args = ap.parse_args()

    from cobro.render.receipt import html_pdf
    from cobro.render.statement import (
        load_statement,
        statement_html,
        statement_language,
        statement_pdf,
    )
    from cobro.workspace import open_workspace

    root = OUT_DIR / "statement"
    company_id, debtor = build(root, args.items)
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    config = ws.config
    trivial = "<p>Statement</p>"
    with ws.engine.connect() as conn:

        def statement() -> bytes:
            return statement_pdf(
                conn, config, company_id, debtor, language="es", on=BENCH_DATE, root=root
            )

        first = statement()  # warm-up: fonts, templates, imports
        html_pdf(trivial)
        say(
            f"statement of {args.items} items: {pages(first)} page(s), "
            f"{len(first) / 1024:.1f} KiB; harfbuzz-subset: {harfbuzz_subset()}"
        )
        walls: list[float] = []
        base_walls: list[float] = []
        cpu_per: list[float] = []
        base_cpu_per: list[float] = []
        for n in range(args.rounds):
            w, cpu = timed(statement, args.per_round)
            bw, bcpu = timed(lambda: html_pdf(trivial), args.per_round)
            walls += w
            base_walls += bw
            cpu_per.append(cpu / args.per_round)
            base_cpu_per.append(bcpu / args.per_round)
            say(
                f"  round {n + 1}: statement {median(w) * 1000:.1f} ms "
                f"({cpu / args.per_round * 1000:.1f} CPU), baseline {median(bw) * 1000:.1f} ms"
            )
        language, locale = statement_language(config, "es")
        loaded = load_statement(conn, company_id, debtor, BENCH_DATE)
        html = statement_html(config, loaded, language, locale)
        q, _ = timed(lambda: load_statement(conn, company_id, debtor, BENCH_DATE), args.per_round)
        h, _ = timed(lambda: statement_html(config, loaded, language, locale), args.per_round)
        p, _ = timed(lambda: html_pdf(html), args.per_round)
    ws.close()
    walls.sort()
    ms = median(walls) * 1000
    cpu_ms = median(cpu_per) * 1000
    base_cpu_ms = median(base_cpu_per) * 1000
    result = {
        "bench": "statement",
        "items": args.items,
        "pdfs": len(walls),
        "pages": pages(first),
        "kib": round(len(first) / 1024, 1),
        "statement_ms": round(ms, 1),
        "statement_p95_ms": round(walls[math.ceil(len(walls) * 0.95) - 1] * 1000, 1),
        "statement_cpu_ms": round(cpu_ms, 1),
        "baseline_ms": round(median(base_walls) * 1000, 1),
        "baseline_cpu_ms": round(base_cpu_ms, 1),
        "ratio": round(cpu_ms / base_cpu_ms, 1),
        "query_ms": round(median(q) * 1000, 2),
        "html_ms": round(median(h) * 1000, 1),
        "pdf_ms": round(median(p) * 1000, 1),
        "harfbuzz_subset": harfbuzz_subset(),
    }
    say(
        f"statement PDF: {ms:.1f} ms ({cpu_ms:.1f} ms CPU); baseline (one-line page) "
        f"{result['baseline_ms']} ms ({base_cpu_ms:.1f} CPU): x{result['ratio']}; parts: "
        f"queries {result['query_ms']} ms, HTML {result['html_ms']} ms, PDF {result['pdf_ms']} ms"
    )
    emit(result)


if __name__ == "__main__":
    main()
