"""Shared pieces of the benchmarks: paths, the synthetic company, timing and reporting.

The synthetic company is loaded straight into the tables with ``executemany``
in large batches inside one transaction (SQLite) or with ``COPY``
(PostgreSQL); the importer is not used, so generation stays a small part of a
benchmark run. A generated SQLite database is cached in ``bench/out/`` under a
name made of its parameters and reused by later runs.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
STARTER = REPO / "src" / "cobro" / "starter" / "cobro.yaml"

# Every benchmark plans and simulates from this date (a Monday).
BENCH_DATE = date(2026, 6, 15)
# Due dates are spread evenly over a year centred on the benchmark date.
SPREAD_DAYS = 182
BATCH = 50_000
# Part of the cache key: bump when the generator changes what it produces.
DATASET_VERSION = 3  # 3: dunning levels as daily runs would have left them
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_URL = "postgresql://postgres@127.0.0.1:5432/cobro_bench"

_DT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite


SINK_LIFETIME_S = 1800  # the SMTP sink exits by itself after this long without a command
_HEADER = re.compile(rb"^(Message-ID|X-Cobro-Claim):[ \t]*(.*?)\r?$", re.M | re.I)


def serve_smtp() -> None:
    """The recording SMTP sink (``python bench/common.py --smtp-server``): accepts every
    message on 127.0.0.1, records (accepted at, Message-ID, X-Cobro-Claim, recipients)
    and discards the rest. Prints its port, then answers on stdin: ``count`` (how many
    are recorded), ``dump PATH`` (writes the records as JSON to PATH, forgets them,
    prints ``ok``). Stops when stdin closes."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    records: list[tuple[float, str, str, list[str]]] = []

    class Recorder:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            accepted = time.time()
            data = envelope.original_content or envelope.content or b""
            if isinstance(data, str):
                data = data.encode("utf-8", "replace")
            head = data.split(b"\r\n\r\n", 1)[0]
            found = {k.lower(): v for k, v in _HEADER.findall(head)}
            records.append(
                (
                    accepted,
                    found.get(b"message-id", b"").decode("ascii", "replace"),
                    found.get(b"x-cobro-claim", b"").decode("ascii", "replace"),
                    list(envelope.rcpt_tos),
                )
            )
            return "250 2.0.0 accepted"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Recorder(), hostname="bench.localhost", ident="cobro-bench sink"),
            "127.0.0.1",
            0,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:  # stdin closed (the benchmark ended or died): stop
            line = await asyncio.wait_for(reader.readline(), SINK_LIFETIME_S)
            if not line:
                break
            cmd, _, arg = line.decode().strip().partition(" ")
            if cmd == "count":
                print(len(records), flush=True)
            elif cmd == "dump":
                Path(arg).write_text(json.dumps(records), encoding="utf-8")
                records.clear()
                print("ok", flush=True)
        server.close()

    asyncio.run(main())


Record = tuple[float, str, str, list[str]]  # accepted at, Message-ID, X-Cobro-Claim, recipients


class SmtpServerProcess:
    """The recording SMTP sink (``serve_smtp``) in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--smtp-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self) -> int:
        """Messages the server has accepted (and recorded) so far."""
        return int(self.ask("count"))

    def dump(self, path: Path) -> list[Record]:
        """The records so far, which the server then forgets."""
        self.ask(f"dump {path}")
        records = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
        return [(r[0], r[1], r[2], r[3]) for r in records]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def received_claims(records: list[Record]) -> Counter[tuple[int, str]]:
    """How many copies of each (outbox id, recipient) the sink received, read from each
    message's ``X-Cobro-Claim`` header (``<company>/<outbox id>/<phase>``) and envelope
    recipients; a message without that header counts under outbox id 0."""
    got: Counter[tuple[int, str]] = Counter()
    for _, _, claim, rcpts in records:
        parts = claim.split("/")
        outbox_id = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else 0
        for rcpt in rcpts:
            got[(outbox_id, rcpt.lower())] += 1
    return got


def recorded_claims(engine: Any) -> Counter[tuple[int, str]]:
    """The email deliveries the database records as sent, by (outbox id, recipient)."""
    from sqlalchemy import select

    from cobro.store import tables as t

    d = t.deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.outbox_id, d.recipient).where(d.channel == "email", d.status == "sent")
        ).all()
    return Counter((int(o), str(r).lower()) for o, r in rows)


def check_received(records: list[Record], engine: Any) -> int:
    """The number of messages the sink received for the database's claims; raises
    ``SystemExit`` (the benchmark fails) when the sink's count by claim and recipient
    differs from the deliveries the database records, or when one (claim, recipient) was
    received more than once: a message lost, doubled or recorded without being
    received."""
    got, recorded = received_claims(records), recorded_claims(engine)
    check_once(got, "the SMTP sink")
    if got == recorded:
        return sum(got.values())
    missing = recorded - got
    extra = got - recorded
    raise SystemExit(
        f"FAILED: the SMTP sink received {sum(got.values()):,} messages, the database records "
        f"{sum(recorded.values()):,} deliveries; recorded but not received: "
        f"{sum(missing.values()):,} (e.g. {sorted(missing)[:3]}), received but not recorded "
        f"(or twice): {sum(extra.values()):,} (e.g. {sorted(extra)[:3]})"
    )


def check_once(got: Counter[tuple[int, str]], server: str) -> None:
    """Raises ``SystemExit`` (the benchmark fails) when ``server`` received a (claim,
    recipient) more than once, whether or not the database recorded each copy."""
    twice = {key: n for key, n in got.items() if n > 1}
    if twice:
        raise SystemExit(
            f"FAILED: {server} received {len(twice):,} (claim, recipient) more than once, "
            f"{sum(twice.values()) - len(twice):,} extra copies (e.g. {sorted(twice.items())[:3]})"
        )


def _dispatch_process(conn: Any, go: Any, root: str, db_url: str, send_at: datetime) -> None:
    """One process of ``dispatch_in_processes``: imports, opens its own workspace, says it is
    ready, waits for the release, runs ``dispatch_due(ws, send_at)`` and sends back its
    report and how long the call took."""
    import traceback

    try:
        from cobro.engine.runs import dispatch_due, templates_for
        from cobro.workspace import open_workspace

        ws = open_workspace(Path(root), db_url)
    except Exception:
        conn.send(("error", traceback.format_exc()))  # the benchmark prints it and fails
        raise SystemExit(1) from None
    try:
        templates_for(ws)  # the template environment, as a watcher makes it before its loop
        conn.send(("ready", os.getpid()))
        go.wait()
        t0 = time.perf_counter()
        report = dispatch_due(ws, send_at)
        conn.send(("done", (report, time.perf_counter() - t0)))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        ws.close()
        conn.close()


def dispatch_in_processes(
    root: Path, db_url: str, send_at: datetime, workers: int
) -> tuple[float, list[tuple[Any, float]]]:
    """``dispatch_due(ws, send_at)`` in ``workers`` processes at once on the same database,
    as ``cobro dispatch --workers N`` shares the outbox: each a new interpreter (``spawn``)
    opening its own workspace, released together once all are ready (``run_released``).
    Returns the time from the release to the last one's report and each process's
    (``DispatchReport``, seconds its call took); raises ``SystemExit`` (the benchmark fails)
    when one fails or dies."""
    args = (str(root), db_url, send_at)
    return run_released(_dispatch_process, [args] * workers, "a dispatching process")


def run_released(
    target: Any, argses: Sequence[tuple[Any, ...]], who: str, shared: Sequence[Any] = ()
) -> tuple[float, list[Any]]:
    """``target(conn, go, *shared, *args)`` in a new interpreter (``spawn``) for each ``args``
    of ``argses``, all at once. Each imports what it needs and sends ``("ready", ...)`` on
    ``conn``, then waits for ``go`` (one ``multiprocessing.Event``), does its work and sends
    ``("done", report)`` (or ``("error", traceback)``). They are started first and released
    together once every one is ready; the time is taken from the release to the last one's
    report. ``shared`` are objects made with ``shared_context()`` (a queue...) passed to
    each. Returns that time and the reports in the order of ``argses``; raises
    ``SystemExit`` (the benchmark fails) when one fails or dies (``who`` names it)."""
    from multiprocessing.connection import wait

    ctx = shared_context()
    go = ctx.Event()
    procs: list[Any] = []
    conns: list[Any] = []
    finished = False
    try:
        for args in argses:
            here, there = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=target, args=(there, go, *shared, *args))
            proc.start()
            there.close()
            procs.append(proc)
            conns.append(here)

        def answers(expected: str) -> dict[Any, Any]:
            got: dict[Any, Any] = {}
            while len(got) < len(conns):
                for c in wait([c for c in conns if c not in got]):
                    try:
                        kind, value = c.recv()
                    except EOFError:
                        raise SystemExit(f"FAILED: {who} ended without a report") from None
                    if kind != expected:
                        raise SystemExit(f"FAILED: {who} failed:\n{value}")
                    got[c] = value
            return got

        answers("ready")
        t0 = time.perf_counter()
        go.set()
        done = answers("done")
        took = time.perf_counter() - t0
        finished = True
        return took, [done[c] for c in conns]
    finally:
        for proc in procs:
            if not finished and proc.is_alive():
                proc.terminate()  # another one failed: the rest stop, released or not
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for c in conns:
            c.close()


def shared_context() -> Any:
    """The ``multiprocessing`` context of ``run_released`` (``spawn``: each process a new
    interpreter, as a worker or a ``cobro`` command is)."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


def loadavg() -> str:
    """The machine's load averages over 1, 5 and 15 minutes (what ``uptime`` prints)."""
    return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


async def send_raw(
    port: int, messages: list[tuple[str, str, bytes]], connections: int
) -> tuple[int, float]:
    """Send pre-built (sender, recipient, bytes) messages over ``connections`` persistent
    aiosmtplib connections at once: the raw baseline of the dispatch benchmarks."""
    import asyncio

    import aiosmtplib

    queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        try:
            while True:
                try:
                    sender, rcpt, data = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await client.sendmail(sender, [rcpt], data)
                sent += 1
        finally:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return sent, time.perf_counter() - t0


class MemoryTransport:
    """An email transport that keeps every finished message in memory instead of sending
    it: the messages the raw baselines send."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []

    async def start(self) -> None:
        return None

    async def deliver(self, sender: str, recipient: str, data: bytes, name: str) -> str:
        self.messages.append((sender, recipient, data))
        return "250 kept"

    async def stop(self) -> None:
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def say(*parts: object) -> None:
    """Human-readable progress, on stderr so that stdout ends with the JSON line."""
    print(*parts, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The benchmark's final single-line JSON result, on stdout."""
    print(json.dumps(result, separators=(", ", ": ")), flush=True)


class Timer:
    """``with Timer() as t: ...`` then ``t.s`` is the elapsed wall time in seconds."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self._t0


def write_config(root: Path, edit: dict[str, Any] | None = None) -> Path:
    """A workspace directory with the starter ``cobro.yaml``, optionally changed.

    ``edit`` maps dotted paths to values, e.g. ``{"channels.email.smtp.port": 2525}``.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / "cobro.yaml"
    if not edit:
        shutil.copyfile(STARTER, path)
        return path
    data = yaml.safe_load(STARTER.read_text(encoding="utf-8"))
    for dotted, value in edit.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def copy_sqlite(src: Path, dst: Path) -> None:
    """Copy a checkpointed SQLite database file (no -wal / -shm left beside it), written
    to disk before this returns: else the first fsync of the copy in a timed part (SQLite's
    checkpoint at a commit) also writes the hundreds of megabytes just copied."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file so the database is one self-contained file."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()


# -- the synthetic company -----------------------------------------------------------


def _customer_rows(company_id: int, debtors: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    for i in range(1, debtors + 1):
        business = i % 2 == 0
        yield (
            i,
            company_id,
            f"C{i:07d}",
            f"{'Empresa' if business else 'Cliente'} {i}",
            "business" if business else "person",
            None,
            "es",
            f"d{i}@mail.example",
            None,
            "",
            None,
            None,
            "b2b" if business else "consumer",
            False,
            now,
            now,
        )


def _contact_rows(company_id: int, debtors: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Business debtors have one internal contact: their sales rep and account manager."""
    for n, i in enumerate(range(2, debtors + 1, 2), start=1):
        yield (
            n,
            company_id,
            i,
            f"K{n:07d}",
            f"Comercial {i % 40}",
            f"rep{i % 40}@demo.example",
            None,
            "sales_rep,account_manager",
            "es",
            now,
        )


def _receivable_rows(
    company_id: int,
    debtors: int,
    receivables: int,
    on: date,
    now: datetime,
    seed: int,
    one_each: bool,
) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    first = on - timedelta(days=SPREAD_DAYS)
    days = [first + timedelta(days=k) for k in range(2 * SPREAD_DAYS + 1)]
    each = max(receivables // debtors, 1)
    for j in range(1, receivables + 1):
        if one_each:
            # Debtor c owes receivables (c - 1) * each + 1 ... c * each; the first reaches
            # a step on ``on``: b2b/01 for business debtors (7 days overdue), consumer/due
            # for persons; the others fall due 10, 17, 24... days after ``on``, too late
            # for any step today (the claim lists them, as it lists every open item).
            customer, k = divmod(j - 1, each)
            customer += 1
            if k:
                due = on + timedelta(days=3 + 7 * k)
            else:
                due = on - timedelta(days=7) if customer % 2 == 0 else on
        else:
            customer = rnd.randrange(1, debtors + 1)
            due = days[rnd.randrange(len(days))]
        amount = rnd.randrange(1_000, 500_000)
        yield (
            j,
            company_id,
            customer,
            f"R{j:08d}",
            "invoice",
            f"F-{j:08d}",
            None,
            due - timedelta(days=30),
            due,
            "EUR",
            amount,
            amount,
            None,
            now,
        )


_CUSTOMER_COLS = (
    "id, company_id, external_id, name, kind, group_name, language, email, phone, tags, "
    "attributes, policy, effective_policy, blocked, created_at, updated_at"
)
_CONTACT_COLS = (
    "id, company_id, customer_id, external_id, name, email, phone, roles, language, updated_at"
)
_RECEIVABLE_COLS = (
    "id, company_id, customer_id, external_id, kind, number, invoice_number, issued_on, due_on, "
    "currency, amount_minor, balance_minor, description, updated_at"
)


def _batches(rows: Iterator[tuple[Any, ...]], size: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).strftime(_DT)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return int(v)
    return v


def _sqlite_rows(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        yield tuple(_sqlite_value(v) for v in row)


def load_company(
    raw: Any,
    dialect: str,
    company_id: int,
    debtors: int,
    receivables: int,
    on: date = BENCH_DATE,
    seed: int = 20260615,
    contacts: bool = True,
    one_each: bool = False,
) -> None:
    """Bulk-load debtors, contacts and open receivables through a DB-API connection.

    Receivables go to random debtors with due dates spread evenly over a year
    centred on ``on``; with ``one_each`` each debtor has ``receivables // debtors``
    receivables, the first of which reaches a step on ``on``. The caller commits.
    ``dialect`` is ``"sqlite"`` or ``"postgresql"``.
    """
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tables: list[tuple[str, str, Iterator[tuple[Any, ...]]]] = [
        ("customers", _CUSTOMER_COLS, _customer_rows(company_id, debtors, now)),
        (
            "receivables",
            _RECEIVABLE_COLS,
            _receivable_rows(company_id, debtors, receivables, on, now, seed, one_each),
        ),
    ]
    if contacts:
        tables.insert(1, ("contacts", _CONTACT_COLS, _contact_rows(company_id, debtors, now)))
    cur = raw.cursor()
    for table, cols, rows in tables:
        n = cols.count(",") + 1
        if dialect == "sqlite":
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * n)})"
            for batch in _batches(_sqlite_rows(rows)):
                cur.executemany(sql, batch)
        else:
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    if dialect == "postgresql":
        for table in ("customers", "contacts", "receivables"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
    cur.close()


def load_company_server(
    cur: Any,
    company_id: int,
    debtors: int,
    receivables: int,
    on: date = BENCH_DATE,
    seed: float = 0.20260615,
    chunk: int = 1_000_000,
    progress: Any = None,
) -> None:
    """The company of ``load_company`` generated by PostgreSQL itself (``INSERT ... SELECT``
    over ``generate_series``), through a psycopg cursor: the same debtors and contacts,
    receivables drawn the same way by the server's ``random()`` (seeded with ``setseed``),
    so no row crosses the connection. The caller commits. ``progress(table, rows)`` is
    called after each chunk of at most ``chunk`` rows."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = on - timedelta(days=SPREAD_DAYS)

    def padded(prefix: str, n: str, width: int) -> str:
        return f"'{prefix}' || lpad({n}::text, greatest({width}, length({n}::text)), '0')"

    def chunks(total: int) -> Iterator[tuple[int, int]]:
        for lo in range(1, total + 1, chunk):
            yield lo, min(lo + chunk - 1, total)

    cur.execute("SELECT setseed(%s)", [seed])
    for lo, hi in chunks(debtors):
        cur.execute(
            f"INSERT INTO customers ({_CUSTOMER_COLS}) "
            f"SELECT i, %(company)s, {padded('C', 'i', 7)}, "
            "CASE WHEN mod(i, 2) = 0 THEN 'Empresa ' ELSE 'Cliente ' END || i, "
            "CASE WHEN mod(i, 2) = 0 THEN 'business' ELSE 'person' END, NULL, 'es', "
            "'d' || i || '@mail.example', NULL, '', NULL, NULL, "
            "CASE WHEN mod(i, 2) = 0 THEN 'b2b' ELSE 'consumer' END, false, %(now)s, %(now)s "
            "FROM generate_series(%(lo)s::int, %(hi)s::int) AS i",
            {"company": company_id, "now": now, "lo": lo, "hi": hi},
        )
        if progress:
            progress("customers", hi)
    for lo, hi in chunks(debtors // 2):
        cur.execute(
            f"INSERT INTO contacts ({_CONTACT_COLS}) "
            f"SELECT n, %(company)s, 2 * n, {padded('K', 'n', 7)}, "
            "'Comercial ' || mod(2 * n, 40), 'rep' || mod(2 * n, 40) || '@demo.example', NULL, "
            "'sales_rep,account_manager', 'es', %(now)s "
            "FROM generate_series(%(lo)s::int, %(hi)s::int) AS n",
            {"company": company_id, "now": now, "lo": lo, "hi": hi},
        )
        if progress:
            progress("contacts", hi)
    for lo, hi in chunks(receivables):
        cur.execute(
            f"INSERT INTO receivables ({_RECEIVABLE_COLS}) "
            f"SELECT j, %(company)s, customer_id, {padded('R', 'j', 8)}, 'invoice', "
            f"{padded('F-', 'j', 8)}, NULL, due - 30, due, 'EUR', amount, amount, NULL, %(now)s "
            "FROM (SELECT j, 1 + floor(random() * %(debtors)s)::int AS customer_id, "
            "%(first)s::date + floor(random() * %(days)s)::int AS due, "
            "1000 + floor(random() * 499000)::int AS amount "
            "FROM generate_series(%(lo)s::int, %(hi)s::int) AS j) AS g",
            {
                "company": company_id,
                "now": now,
                "lo": lo,
                "hi": hi,
                "debtors": debtors,
                "first": first,
                "days": 2 * SPREAD_DAYS + 1,
            },
        )
        if progress:
            progress("receivables", hi)
    for table in ("customers", "contacts", "receivables"):
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {table}))"
        )


def settle_levels_server(cur: Any, config: Any, company_id: int, on: date) -> int:
    """``settle_levels`` done by PostgreSQL: the level of each (policy, oldest due date) pair
    (``settled_level``, a few hundred of them) goes into a temporary table, and the levels
    are written with one ``INSERT ... SELECT`` joining each debtor's oldest open item to it.
    Returns how many levels were written."""
    cur.execute(
        "SELECT min(due_on), max(due_on) FROM receivables "
        "WHERE company_id = %s AND balance_minor > 0",
        [company_id],
    )
    lo, hi = cur.fetchone()
    if lo is None:
        return 0
    cur.execute(
        "CREATE TEMPORARY TABLE bench_settled (policy VARCHAR(40), oldest DATE, "
        "phase_key VARCHAR(40), reached_on DATE, repeats INTEGER, review_on DATE)"
    )
    pairs = []
    for policy in config.all_policies():
        for k in range((hi - lo).days + 1):
            oldest = lo + timedelta(days=k)
            level = settled_level(policy, oldest, on)
            if level is not None:
                pairs.append((policy.name, oldest, *level))
    cur.executemany("INSERT INTO bench_settled VALUES (%s, %s, %s, %s, %s, %s)", pairs)
    cur.execute(
        "INSERT INTO dunning_levels (company_id, customer_id, policy, phase_key, reached_on, "
        "repeats, review_on, updated_at) "
        "SELECT %(company)s, o.customer_id, s.policy, s.phase_key, s.reached_on, s.repeats, "
        "s.review_on, %(now)s "
        "FROM (SELECT r.customer_id, c.effective_policy AS policy, min(r.due_on) AS oldest "
        "FROM receivables r JOIN customers c ON c.id = r.customer_id "
        "WHERE r.company_id = %(company)s AND r.balance_minor > 0 "
        "GROUP BY r.customer_id, c.effective_policy) AS o "
        "JOIN bench_settled s ON s.policy = o.policy AND s.oldest = o.oldest "
        "ORDER BY o.customer_id",
        {
            "company": company_id,
            "now": datetime.combine(on - timedelta(days=1), datetime.min.time(), UTC),
        },
    )
    written = int(cur.rowcount)
    cur.execute("DROP TABLE bench_settled")
    return written


def set_covered(conn: Any, company_id: int, covered: date) -> None:
    """Mark the company planned through ``covered`` and its policies resolved (SQLAlchemy)."""
    from sqlalchemy import update

    from cobro.store import tables as t

    conn.execute(
        update(t.companies).where(t.companies.c.id == company_id).values(covered_through=covered)
    )


def settled_level(policy: Any, oldest: date, on: date) -> tuple[str, date, int, date | None] | None:
    """The dunning level daily runs up to ``on - 1`` would have left a debtor on ``policy``
    whose oldest open item fell due on ``oldest``: (phase key, the day that phase was sent,
    its repeats, the next review day); None when no phase was reached."""
    from cobro.domain.escalation import Level, next_review

    yesterday = on - timedelta(days=1)
    age = (yesterday - oldest).days
    reached = [i for i, ph in enumerate(policy.phases) if ph.offset_days <= age]
    if not reached:
        return None
    i = reached[-1]
    ph = policy.phases[i]
    day = oldest + timedelta(days=ph.offset_days)
    repeats = 0
    if ph.repeat_every_days:
        repeats = (yesterday - day).days // ph.repeat_every_days
        if ph.max_repeats is not None:
            repeats = min(repeats, ph.max_repeats)
        day += timedelta(days=repeats * ph.repeat_every_days)
    review = next_review(policy, i, Level(ph.key, day, repeats))
    if review is not None and review < on:
        review = None  # that day's run found nothing more to send
    return ph.key, day, repeats, review


def settle_levels(conn: Any, config: Any, company_id: int, on: date) -> int:
    """Give every debtor the dunning level daily runs up to ``on - 1`` would have left: the
    phase its oldest open item had reached, sent on that phase's day (repeats included),
    and its next review day (``settled_level``). Returns how many levels were written."""
    from sqlalchemy import func, insert, select

    from cobro.store import tables as t

    r, c = t.receivables.c, t.customers.c
    policies = {p.name: p for p in config.all_policies()}
    now = datetime.combine(on - timedelta(days=1), datetime.min.time(), UTC)
    rows = []
    query = (
        select(r.customer_id, c.effective_policy, func.min(r.due_on))
        .join(t.customers, c.id == r.customer_id)
        .where(r.company_id == company_id, r.balance_minor > 0)
        .group_by(r.customer_id, c.effective_policy)
    )
    for cid, policy_name, oldest in conn.execute(query):
        level = settled_level(policies[policy_name], oldest, on)
        if level is None:
            continue
        phase_key, day, repeats, review = level
        rows.append(
            {
                "company_id": company_id,
                "customer_id": cid,
                "policy": policy_name,
                "phase_key": phase_key,
                "reached_on": day,
                "repeats": repeats,
                "review_on": review,
                "updated_at": now,
            }
        )
    for i in range(0, len(rows), BATCH):
        conn.execute(insert(t.dunning_levels), rows[i : i + BATCH])
    return len(rows)


# -- cached datasets -----------------------------------------------------------------


def dataset_dir(debtors: int, receivables: int, on: date = BENCH_DATE) -> Path:
    return OUT_DIR / f"company-v{DATASET_VERSION}-{debtors}d-{receivables}r-{on.isoformat()}"


def generate_sqlite(root: Path, debtors: int, receivables: int, on: date = BENCH_DATE) -> None:
    """Build the workspace ``root`` with its database ``cobro.db``, planned through ``on - 1``."""
    from cobro.engine.planner import refresh_policies
    from cobro.workspace import open_workspace

    if root.exists():
        shutil.rmtree(root)
    write_config(root)
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    try:
        with Timer() as tm, ws.engine.begin() as conn:
            raw = conn.connection.driver_connection
            load_company(raw, "sqlite", ws.company_id, debtors, receivables, on)
            refresh_policies(conn, ws.config, ws.company_id)
            set_covered(conn, ws.company_id, on - timedelta(days=1))
            levels = settle_levels(conn, ws.config, ws.company_id, on)
        say(
            f"generated {debtors:,} debtors, {receivables:,} receivables and {levels:,}"
            f" dunning levels in {tm.s:.1f} s"
        )
    finally:
        ws.close()
    checkpoint(root / "cobro.db")
    meta = {"debtors": debtors, "receivables": receivables, "date": on.isoformat()}
    (root / "ready.json").write_text(json.dumps(meta), encoding="utf-8")


def upgrade_schema(db: Path) -> None:
    """Bring a dataset cached by an earlier version up to the current schema once, so that
    no benchmark times a migration (a new index on a million rows) in the copy it opens."""
    from cobro.store.db import head_revision, make_engine, migrate

    engine = make_engine(sqlite_url(db))
    try:
        with engine.connect() as conn:
            current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        if current != head_revision():
            say(f"bringing the cached dataset from {current} to {head_revision()}...")
            migrate(engine)
    finally:
        engine.dispose()


def ensure_dataset(debtors: int, receivables: int, on: date = BENCH_DATE) -> Path:
    """The cached workspace for these parameters, generated in a separate process if missing."""
    import subprocess

    root = dataset_dir(debtors, receivables, on)
    if (root / "ready.json").exists():
        say(f"using cached dataset {root.relative_to(REPO)}")
        upgrade_schema(root / "cobro.db")
        return root
    say(f"generating dataset {root.relative_to(REPO)} (cached for later runs)...")
    cmd = [sys.executable, str(Path(__file__).resolve()), str(debtors), str(receivables), str(on)]
    subprocess.run(cmd, check=True)
    return root


if __name__ == "__main__" and sys.argv[1:] == ["--smtp-server"]:
    serve_smtp()
elif __name__ == "__main__":
    # python bench/common.py DEBTORS RECEIVABLES DATE: generate one dataset.
    _d, _r, _on = int(sys.argv[1]), int(sys.argv[2]), date.fromisoformat(sys.argv[3])
    generate_sqlite(dataset_dir(_d, _r, _on), _d, _r, _on)


def serve_cobro(
    ws: Path,
    port: int,
    workers: int = 1,
    db: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``cobro serve`` with ``workers`` processes (on the database ``db``, with the
    environment ``env`` added), once it says it is serving."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cobro",
            "--workspace",
            str(ws),
            *(["--db", db] if db else []),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Serving "):  # printed once the socket listens
            # Keep reading its output, so that a full pipe never stops the server.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc
    raise SystemExit("cobro serve did not start")
