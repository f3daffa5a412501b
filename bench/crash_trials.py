"""Crash trials: ``cobro run`` and ``cobro dispatch`` killed with SIGKILL at random moments.

Each trial:

1. loads debtors of its own into the workspace (one invoice each, reaching phase 00 of
   the b2b policy on the trial date), and for a ``dispatch`` trial plans them first
   (``cobro run`` before the send time);
2. starts the command as an operator would (``python -m cobro ...``, a process of its
   own) and kills it with SIGKILL either when the SMTP server has received a random
   number of messages (before the server answers 250, the worst moment) or after a
   random delay (planning and claiming included);
3. runs the same command again, as often as needed (at most 3 times), until nothing is
   left to send;
4. counts, at the recording SMTP server (aiosmtpd in this process), every (claim,
   recipient): a miss is one that never arrived, a duplicate one that arrived more
   than once. Every copy must carry the same Message-ID.

With ``--commands run,dispatch,worker`` the third kind is a Celery worker (``cobro worker``
on the broker of ``--broker``, PostgreSQL only): the day is planned, the scheduler's tick
(in this process) queues its shards, the worker is killed, started again, and the tick runs
again after the requeue time (as the scheduler would, for Redis, whose unacknowledged
tasks come back only after their visibility timeout).

Trials alternate between the commands, and with ``--db both`` between
SQLite and PostgreSQL (a fresh database ``cobro_crash`` on the local server, dropped
at the end). Final stdout line: {"bench": "crash_trials", "trials": N, "kills": K,
"misses": M, "duplicates": D, "duplicates_per_crash_max": X,
"duplicates_per_crash_mean": Y, "same_message_id": true, "seconds": S}.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

from cobro.engine.runs import run_day
from cobro.intake.importer import import_records
from cobro.workspace import open_workspace, utcnow
from common import OUT_DIR, PG_ADMIN_URL, emit, say, sqlite_url, write_config

TRIAL_DATE = "2026-06-15"  # invoices due 2026-06-22: phase 00 of b2b on this day
PG_URL = "postgresql://postgres@127.0.0.1:5432/cobro_crash"


class Recorder:
    """Keeps (claim, recipient, Message-ID) of every message; calls ``on_message(count)``
    before answering, so a trial can kill the sender at that moment."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, str]] = []
        self.on_message: Any = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=default_policy).parsebytes(envelope.original_content)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.got.append((str(msg["X-Cobro-Claim"]), rcpt, str(msg["Message-ID"])))
            count = len(self.got)
        if self.on_message is not None:
            self.on_message(count)
        return "250 OK"


def cobro(root: Path, url: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cobro", "--workspace", str(root), "--db", url, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def load_debtors(root: Path, url: str, prefix: str, n: int) -> set[str]:
    ws = open_workspace(root, url)
    try:
        now = utcnow()
        customers = [
            {
                "external_id": f"{prefix}{i}",
                "name": f"Debtor {prefix}{i}",
                "kind": "business",
                "email": f"{prefix.lower()}{i}@debtors.example",
            }
            for i in range(n)
        ]
        receivables = [
            {
                "external_id": f"{prefix}F{i}",
                "customer": f"{prefix}{i}",
                "due_on": "2026-06-22",
                "amount": "100.00",
            }
            for i in range(n)
        ]
        import_records(ws, "customers", list(enumerate(customers, 1)), now, "crash")
        import_records(ws, "receivables", list(enumerate(receivables, 1)), now, "crash")
    finally:
        ws.close()
    return {f"{prefix.lower()}{i}@debtors.example" for i in range(n)}


def plan_only(root: Path, url: str) -> None:
    from datetime import UTC, date, datetime

    ws = open_workspace(root, url)
    try:
        run_day(ws, date.fromisoformat(TRIAL_DATE), as_of=datetime(2026, 6, 15, 4, tzinfo=UTC))
    finally:
        ws.close()


class WorkerTrials:
    """A Celery worker process for the trials of ``worker``, and the scheduler's app."""

    def __init__(self, root: Path, url: str, broker: str) -> None:
        from cobro.config.settings import WorkerSettings
        from cobro.workers import make_app

        self.root, self.url = root, url
        self.settings = WorkerSettings(
            broker_url=broker,
            database_url=url,
            workspace=root,
            queue=f"cobro-crash-{os.getpid()}",
            shard_debtors=10,
            metrics_port=0,
        )
        self.app, self.companies = make_app(self.settings)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRO_")}
        env.update(
            COBRO_BROKER_URL=self.settings.broker_url,
            COBRO_QUEUE=self.settings.queue,
            COBRO_SHARD_DEBTORS=str(self.settings.shard_debtors),
            COBRO_METRICS_PORT="0",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "cobro", "-w", str(self.root), "--db", self.url, "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # until the worker says it is ready
            if " ready." in line:
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        self.proc = proc
        return proc

    def tick(self, later: bool = False) -> None:
        from datetime import UTC, datetime, timedelta

        from cobro.workers import tick

        now = datetime(2026, 6, 15, 12, tzinfo=UTC)
        if later:
            now += timedelta(seconds=self.settings.requeue_after_s + 1)
        tick(self.app, self.companies, now)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.companies.close()
        with self.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(self.settings.queue)
            conn.default_channel.queue_delete(self.settings.prompt_queue)


def trial(
    n: int,
    command: str,
    root: Path,
    url: str,
    rec: Recorder,
    rng: random.Random,
    debtors: int,
    workers: WorkerTrials | None = None,
) -> dict[str, Any]:
    addresses = load_debtors(root, url, f"T{n}X", debtors)
    if command == "worker":
        assert workers is not None
        return worker_trial(addresses, root, url, rec, rng, debtors, workers)
    args = ["run", "--date", TRIAL_DATE] if command == "run" else ["dispatch"]
    if command == "dispatch":
        plan_only(root, url)
    with rec.lock:
        rec.got.clear()
    proc = cobro(root, url, *args)
    at_message = rng.randint(1, debtors) if rng.random() < 0.6 else None

    def kill(count: int) -> None:
        if count == at_message:
            os.kill(proc.pid, signal.SIGKILL)

    rec.on_message = kill
    timer = None
    if at_message is None:  # anywhere: interpreter start, planning, claiming, sending
        timer = threading.Timer(rng.uniform(0.3, 3.0), proc.send_signal, (signal.SIGKILL,))
        timer.start()
    proc.wait()
    if timer is not None:
        timer.cancel()
    rec.on_message = None
    killed = proc.returncode == -signal.SIGKILL
    for _ in range(3):  # the operator runs it again until it is done
        if {r for _, r, _ in rec.got} >= addresses:
            break
        cobro(root, url, *args).wait()
    return _tally(rec, addresses, killed)


def worker_trial(
    addresses: set[str],
    root: Path,
    url: str,
    rec: Recorder,
    rng: random.Random,
    debtors: int,
    workers: WorkerTrials,
) -> dict[str, Any]:
    plan_only(root, url)
    with rec.lock:
        rec.got.clear()
    proc = workers.proc if workers.proc and workers.proc.poll() is None else workers.start()
    at_message = rng.randint(1, debtors) if rng.random() < 0.6 else None

    def kill(count: int) -> None:
        if count == at_message:
            os.kill(proc.pid, signal.SIGKILL)

    rec.on_message = kill
    timer = None
    if at_message is None:  # anywhere: claiming, rendering, sending, recording
        timer = threading.Timer(rng.uniform(0.05, 1.5), proc.send_signal, (signal.SIGKILL,))
        timer.start()
    workers.tick()
    began = time.monotonic()
    while proc.poll() is None and time.monotonic() - began < 30:
        if {r for _, r, _ in list(rec.got)} >= addresses:
            break
        time.sleep(0.05)
    if timer is not None:
        timer.cancel()
    rec.on_message = None
    killed = proc.poll() == -signal.SIGKILL
    if killed:
        workers.start()
        workers.tick(later=True)
    began = time.monotonic()
    while time.monotonic() - began < 60 and not {r for _, r, _ in list(rec.got)} >= addresses:
        time.sleep(0.05)
    time.sleep(0.5)  # a duplicate would come now, if any
    return _tally(rec, addresses, killed)


def _tally(rec: Recorder, addresses: set[str], killed: bool) -> dict[str, Any]:
    with rec.lock:
        got = list(rec.got)
    counts = Counter((claim, rcpt) for claim, rcpt, _ in got)
    ids: dict[tuple[str, str], set[str]] = {}
    for claim, rcpt, mid in got:
        ids.setdefault((claim, rcpt), set()).add(mid)
    return {
        "killed": killed,
        "misses": len(addresses - {r for _, r in counts}),
        "duplicates": sum(c - 1 for c in counts.values()),
        "same_message_id": all(len(v) == 1 for v in ids.values()),
    }


def prepare(db: str, port: int, connections: int) -> tuple[Path, str]:
    root = OUT_DIR / f"crash-{db}"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("cobro.db*"):
        old.unlink()
    write_config(
        root,
        {
            "channels.email.smtp.host": "127.0.0.1",
            "channels.email.smtp.port": port,
            "channels.email.smtp.connections": connections,
            "actions": [],
        },
    )
    if db == "sqlite":
        return root, sqlite_url(root / "cobro.db")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cobro_crash WITH (FORCE)")
        conn.execute("CREATE DATABASE cobro_crash")
    return root, PG_URL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--debtors", type=int, default=60, help="claims per trial")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--db", choices=["sqlite", "pg", "both"], default="both")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--commands",
        default="run,dispatch",
        help="what is killed, in turn: run, dispatch, worker (PostgreSQL only)",
    )
    ap.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    a = ap.parse_args()
    commands = [c for c in a.commands.split(",") if c]
    if not set(commands) <= {"run", "dispatch", "worker"}:
        ap.error(f"--commands: {a.commands!r}: choose among run, dispatch, worker")
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    rec = Recorder()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(rec, hostname="127.0.0.1", port=port)
    controller.start()
    dbs = ["sqlite", "pg"] if a.db == "both" else [a.db]
    places = {db: prepare(db, port, a.connections) for db in dbs}
    results: list[dict[str, Any]] = []
    workers = None
    if "worker" in commands:
        if "pg" not in places:
            ap.error("worker trials need PostgreSQL: --db pg or --db both")
        workers = WorkerTrials(*places["pg"], a.broker)
    began = time.perf_counter()
    try:
        for n in range(a.trials):
            db = dbs[n % len(dbs)]
            command = commands[(n // len(dbs)) % len(commands)]
            if command == "worker":
                db = "pg"
            root, url = places[db]
            r = trial(n, command, root, url, rec, rng, a.debtors, workers)
            r["command"] = command
            results.append(r)
            say(
                f"trial {n + 1}/{a.trials} {db} {command}: killed {r['killed']}, "
                f"misses {r['misses']}, duplicates {r['duplicates']}"
            )
    finally:
        if workers is not None:
            workers.close()
        controller.stop()
        if "pg" in dbs:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS cobro_crash WITH (FORCE)")
    crashes = [r for r in results if r["killed"]]
    per_crash = [r["duplicates"] for r in crashes]
    emit(
        {
            "bench": "crash_trials",
            "seed": seed,
            "trials": len(results),
            "kills": len(crashes),
            "misses": sum(r["misses"] for r in results),
            "duplicates": sum(r["duplicates"] for r in results),
            "duplicates_without_crash": sum(r["duplicates"] for r in results if not r["killed"]),
            "duplicates_per_crash_max": max(per_crash, default=0),
            "duplicates_per_crash_mean": round(sum(per_crash) / len(per_crash), 2)
            if per_crash
            else 0,
            "same_message_id": all(r["same_message_id"] for r in results),
            "by_command": {
                c: {
                    "trials": sum(r["command"] == c for r in results),
                    "kills": sum(r["command"] == c and r["killed"] for r in results),
                    "misses": sum(r["misses"] for r in results if r["command"] == c),
                    "duplicates": sum(r["duplicates"] for r in results if r["command"] == c),
                }
                for c in commands
            },
            "seconds": round(time.perf_counter() - began, 1),
        }
    )


if __name__ == "__main__":
    main()
