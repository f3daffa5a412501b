"""Channels benchmark: a mix of email, SMS and automated calls dispatched, against the raw
client sends of the same messages and calls; then Twilio status callbacks taken by
``cobro serve``.

1. Two servers in other processes on 127.0.0.1: an aiosmtpd sink that accepts, records and
   discards mail (``common.py``'s, as in ``dispatch_bench.py``), and the
   Twilio-speaking test server of ``tests/fakes/twilio.py`` (``--twilio-server``), which
   records each message and the signed status callbacks Twilio would post for it
   ("sent", then "delivered"), and each call with the arguments of its request.
2. A workspace in ``bench/out/channels`` (SQLite) gets N debtors, each with one receivable
   reaching a step on the benchmark date: business debtors, half of them (b2b phase 01, by
   email to the debtor and the sales rep: 2 emails), and persons with a mobile number, the
   other half, on consumer phase "due": two of each three persons (a third of the
   debtors) have the policy ``consumer_calls``, whose phases go on ``channels: [voice,
   sms, email]`` with ``call: {attempts: 3, retry_after_minutes: 120, max_per_7_days: 2}``
   (one call each), the others the starter's ``consumer`` on ``channels: [sms, email]``
   (one SMS each). The calendar is on, so its checks are measured: SMS hours
   09:00-21:00, call hours 10:00-20:00, Spanish holidays, a cap of 3 messages in 7 days
   and one of 1 call a day (and the phase's calls a week). ``run_day`` at 07:00 fills the
   outbox.
3. Pre-rendering for the baseline: ``dispatch_due`` on a copy of the database with the
   email transport keeping the bytes in memory (SMS and calls go to the test server, which
   keeps each request's arguments).
4. Baseline (raw): the same email bytes over raw aiosmtplib (as many persistent
   connections as the email channel) and, at the same time, the same SMS and the same
   calls through Twilio's own async client (``messages.create_async`` and
   ``calls.create_async`` with the arguments the test server recorded from Cobro's
   requests: to, from, TwiML URL and method, status callback, its events and method,
   machine detection, ring time; a client each, as many requests at once each as the SMS
   and voice channels), median of 3 runs. Each run's calls are checked to be the calls
   Cobro placed.
5. Measured: ``dispatch_due(ws, 10:00)``; with ``--workers N`` (default 1) N processes
   running it at once on the same database, as ``cobro dispatch --workers N`` shares the
   outbox, each a new interpreter with its own workspace, released together once all have
   imported and opened it and timed from the release to the last one's end
   (``common.dispatch_in_processes``). The deliveries recorded are checked against both
   servers by claim and recipient (email: the sink's ``X-Cobro-Claim`` and envelope; SMS
   and calls: the delivery each names in its status callback URL), each received once,
   and their number (summed over the processes) against the messages and calls
   pre-rendered: any difference fails the benchmark. Target: >= 80 % of the raw rate.

   What a call costs here is what placing it costs: the voice text rendered, the TwiML
   built and kept as the message as sent, the delivery recorded ``sending`` before the
   request, the ``POST .../Calls.json`` answered 201 (the same request the raw baseline
   makes), its answer recorded. What follows a real call happens after that, at Twilio's
   pace, and is not measured: Twilio fetching the TwiML from ``cobro serve`` when the call
   is answered, the key pressed, the call's status callbacks. The test server only does
   those when a test plays the calls, which this benchmark does not, so no ``cobro
   serve`` runs during the dispatch (the TwiML and status callback URLs the calls carry
   point at the port it takes in step 6).
6. Callbacks: ``cobro serve`` in its own process; the status callbacks of the measured SMS
   (signed by the test server with the auth token, as Twilio signs them): the "sent" ones
   posted by ``--clients`` concurrent clients as fast as they are answered (callbacks per
   second), then the "delivered" ones open loop at ``--rate`` per second (each answer's
   latency); every SMS delivery is then checked as recorded ``delivered``. Target: p99 <=
   50 ms.

Final stdout line: {"bench": "channels", "calendar": true, "workers": W, "messages": N,
"email": E, "sms": S, "voice": V, "per_s": X, "raw_per_s": Y, "ratio": R, "callbacks": C,
"callbacks_per_s": Z, "callback_rate": .., "callback_p50_ms": .., "callback_p99_ms": ..};
``messages`` counts the calls too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import yaml

from common import (
    BENCH_DATE,
    OUT_DIR,
    STARTER,
    MemoryTransport,
    SmtpServerProcess,
    Timer,
    check_once,
    check_received,
    checkpoint,
    copy_sqlite,
    dispatch_in_processes,
    emit,
    load_company,
    median,
    say,
    serve_cobro,
    set_covered,
    sqlite_url,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
COBRO = [sys.executable, "-m", "cobro"]
SERVER_LIFETIME_S = 1800  # the test servers exit by themselves after this
CALL_POLICY = "consumer_calls"  # the persons called: a third of the debtors
CALL_SETTINGS = {"attempts": 3, "retry_after_minutes": 120, "max_per_7_days": 2}


# -- the servers (each in its own process) ---------------------------------------------


def serve_twilio() -> None:
    """The Twilio test server: prints its URL, account and token as JSON, then answers
    ``count`` (``[messages, calls]``), ``messages FROM``, ``calls FROM`` and
    ``callbacks FROM`` with one JSON line each."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.twilio import FakeTwilio

    with FakeTwilio() as tw:
        print(json.dumps({"url": tw.url, "sid": tw.account_sid, "token": tw.auth_token}))
        sys.stdout.flush()
        deadline = time.monotonic() + SERVER_LIFETIME_S
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "count":
                answer: Any = [len(tw.messages), len(tw.calls)]
            elif command == "messages":
                answer = tw.messages[int(arg or 0) :]
            elif command == "calls":
                answer = tw.calls[int(arg or 0) :]
            elif command == "callbacks":
                answer = [
                    [c["url"], c["params"], c["signature"]] for c in tw.callbacks[int(arg or 0) :]
                ]
            else:
                answer = None
            print(json.dumps(answer), flush=True)
            if time.monotonic() > deadline:
                break


class TwilioProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--twilio-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url, self.sid, self.token = info["url"], info["sid"], info["token"]

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def counts(self) -> tuple[int, int]:
        """(messages, calls) the test server has taken so far."""
        messages, calls = self.ask("count")
        return int(messages), int(calls)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_twilio(taken: list[dict[str, Any]], engine: Any, channel: str) -> int:
    """The number of SMS (``channel`` "sms": ``taken`` are the test server's messages) or
    calls ("voice": its calls) the Twilio test server took for the database's claims;
    raises ``SystemExit`` (the benchmark fails) when its count by claim and recipient
    differs from the deliveries of ``channel`` the database records as sent, or one was
    taken twice. Each message and call names its delivery in its status callback URL
    (``?ref=``), which names the claim."""
    from sqlalchemy import select

    from cobro.store import tables as t

    what = {"sms": "SMS", "voice": "calls"}[channel]
    d = t.deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.ref, d.outbox_id, d.recipient, d.status).where(d.channel == channel)
        ).all()
    claim_of = {r.ref: int(r.outbox_id) for r in rows if r.ref}
    recorded = Counter((int(r.outbox_id), str(r.recipient)) for r in rows if r.status == "sent")
    got: Counter[tuple[int, str]] = Counter()
    for m in taken:
        ref = parse_qs(urlsplit(m.get("status_callback") or "").query).get("ref", [""])[0]
        got[(claim_of.get(ref, 0), str(m["to"]))] += 1
    check_once(got, f"the Twilio test server ({what})")
    if got != recorded:
        missing, extra = recorded - got, got - recorded
        raise SystemExit(
            f"FAILED: the Twilio test server took {sum(got.values()):,} {what}, the database "
            f"records {sum(recorded.values()):,} {channel} deliveries; recorded but not "
            f"taken: {sum(missing.values()):,} (e.g. {sorted(missing)[:3]}), taken but not "
            f"recorded: {sum(extra.values()):,} (e.g. {sorted(extra)[:3]})"
        )
    return sum(got.values())


def call_args(call: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``calls.create_async`` that make the request the test server
    recorded for ``call`` (what Cobro's voice channel sent)."""
    args = {
        "to": call["to"],
        "from_": call["from_"],
        "url": call["url"],
        "method": call["method"],
        "twiml": call["twiml"],
        "status_callback": call["status_callback"],
        "status_callback_event": call["events"] or None,
        "status_callback_method": call["status_callback_method"],
        "machine_detection": call["machine_detection"],
        "timeout": call["timeout"],
    }
    return {name: value for name, value in args.items() if value is not None}


# -- raw sends -------------------------------------------------------------------------


async def send_raw(
    smtp_port: int,
    mails: list[tuple[str, str, bytes]],
    connections: int,
    twilio: TwilioProcess,
    sms: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    parallel: int,
) -> tuple[int, float]:
    """The email bytes over raw aiosmtplib, the SMS and the calls through Twilio's client
    (one client each, ``parallel`` requests at once each, as Cobro's SMS and voice
    channels), all at once."""
    import aiosmtplib
    from twilio.rest import Client

    from cobro.channels.sms import _TwilioHttp

    mail_queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
    for m in mails:
        mail_queue.put_nowait(m)
    sms_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for s in sms:
        sms_queue.put_nowait(s)
    call_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for c in calls:
        call_queue.put_nowait(call_args(c))
    sent = 0
    http = _TwilioHttp(twilio.url, 15.0)
    client = Client(twilio.sid, twilio.token, http_client=http)
    call_http = _TwilioHttp(twilio.url, 15.0)
    call_client = Client(twilio.sid, twilio.token, http_client=call_http)

    async def mailer() -> None:
        nonlocal sent
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False, timeout=30)
        await smtp.connect()
        try:
            while True:
                try:
                    sender, rcpt, data = mail_queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await smtp.sendmail(sender, [rcpt], data)
                sent += 1
        finally:
            await smtp.quit()

    async def texter() -> None:
        nonlocal sent
        while True:
            try:
                s = sms_queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            args = {"to": s["to"], "from_": s["from_"], "body": s["body"]}
            if s["status_callback"]:
                args["status_callback"] = s["status_callback"]
            await client.messages.create_async(**args)
            sent += 1

    async def caller() -> None:
        nonlocal sent
        while True:
            try:
                args = call_queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await call_client.calls.create_async(**args)
            sent += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(
            *(mailer() for _ in range(connections)),
            *(texter() for _ in range(parallel)),
            *(caller() for _ in range(parallel)),
        )
    finally:
        await http.close()
        await call_http.close()
    return sent, time.perf_counter() - t0


# -- the workspace ---------------------------------------------------------------------


def build_workspace(
    root: Path,
    smtp_port: int,
    twilio: TwilioProcess,
    serve_port: int,
    debtors: int,
    calendar: bool = True,
) -> Any:
    from sqlalchemy import text

    from cobro.workspace import open_workspace

    if root.exists():
        for p in root.glob("cobro.db*"):
            p.unlink()
    phases = yaml.safe_load(STARTER.read_text(encoding="utf-8"))["policies"]["consumer"]["phases"]
    for ph in phases:
        ph["channels"] = ["sms", "email"]
    calling = [
        {**ph, "channels": ["voice", "sms", "email"], "call": dict(CALL_SETTINGS)} for ph in phases
    ]
    edit: dict[str, Any] = {
        "company.public_url": f"http://127.0.0.1:{serve_port}",
        "channels.email.smtp.host": "127.0.0.1",
        "channels.email.smtp.port": smtp_port,
        "channels.email.smtp.starttls": False,
        "channels.email.smtp.connections": 4,
        "channels.sms": {
            "account_sid": twilio.sid,
            "sender": "+34910000000",
            "api_url": twilio.url,
            "cost_per_segment": 0.05,
        },
        "channels.voice": {
            "account_sid": twilio.sid,
            "caller_id": "+34910000000",
            "api_url": twilio.url,
            "cost_per_call": 0.10,
        },
        "policies.consumer.phases": phases,
        f"policies.{CALL_POLICY}": {
            "description": "Card statements, each reminder by a call first",
            "phases": calling,
        },
    }
    if calendar:
        edit["calendar"] = {
            "holidays": {"country": "ES", "region": "MD"},
            "windows": {
                "sms": {"start": "09:00", "end": "21:00"},
                "voice": {"start": "10:00", "end": "20:00"},
            },
            "caps": [{"max": 3, "days": 7}, {"max": 1, "days": 1, "channels": ["voice"]}],
        }
    write_config(root, edit)
    ws = open_workspace(root, sqlite_url(root / "cobro.db"))
    with ws.engine.begin() as conn:
        raw = conn.connection.driver_connection
        load_company(raw, "sqlite", ws.company_id, debtors, debtors, BENCH_DATE, one_each=True)
        conn.execute(
            text(
                "UPDATE customers SET phone = '+3461' || substr('0000000' || id, -7, 7) "
                "WHERE kind = 'person'"
            )
        )
        # Persons are the odd ids: two of each three (1 and 5 modulo 6) are called.
        conn.execute(
            text(
                "UPDATE customers SET policy = :p, effective_policy = :p "
                "WHERE kind = 'person' AND id % 6 != 3"
            ),
            {"p": CALL_POLICY},
        )
        set_covered(conn, ws.company_id, BENCH_DATE - timedelta(days=1))
    return ws


# -- callbacks -------------------------------------------------------------------------


def serve(ws: Path, port: int, token: str) -> subprocess.Popen[str]:
    return serve_cobro(ws, port, env={"TWILIO_AUTH_TOKEN": token})


async def post_callbacks(
    callbacks: list[list[Any]], clients: int, rate: float | None = None
) -> tuple[list[float], float, dict[int, int]]:
    """Post each signed callback: by ``clients`` concurrent clients as fast as answered, or
    (``rate``) callback i at t0 + i / rate, open loop. Latencies (s, from the moment each
    was due), the whole time, and answers by HTTP status."""
    import httpx

    queue: asyncio.Queue[tuple[int, list[Any]]] = asyncio.Queue()
    for i, c in enumerate(callbacks):
        queue.put_nowait((i, c))
    latencies: list[float] = []
    answers: dict[int, int] = {}

    async def post(http: httpx.AsyncClient, callback: list[Any], due: float) -> None:
        url, params, signature = callback
        r = await http.post(url, data=params, headers={"X-Twilio-Signature": signature})
        latencies.append(time.perf_counter() - due)
        answers[r.status_code] = answers.get(r.status_code, 0) + 1

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                _, callback = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await post(http, callback, time.perf_counter())

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        t0 = time.perf_counter()
        if rate is None:
            await asyncio.gather(*(client(http) for _ in range(clients)))
        else:
            posts = []
            for i, callback in enumerate(callbacks):
                due = t0 + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                posts.append(asyncio.create_task(post(http, callback, due)))
            await asyncio.gather(*posts)
        took = time.perf_counter() - t0
    return latencies, took, answers


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--debtors", type=int, default=3_000, help="debtors (2 emails, 1 SMS or 1 call each)"
    )
    ap.add_argument("--clients", type=int, default=8, help="concurrent callback clients")
    ap.add_argument("--rate", type=float, default=50, help="callbacks per second (latency)")
    ap.add_argument(
        "--no-calendar",
        action="store_true",
        help="no holidays, SMS or call hours or caps configured",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes dispatching at once in the measured step (cobro dispatch --workers)",
    )
    ap.add_argument("--twilio-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 1 <= args.workers <= 32:
        ap.error("--workers must be from 1 to 32")
    if args.twilio_server:
        serve_twilio()
        return

    from sqlalchemy import func, select

    from cobro.engine.dispatch import PARALLEL, DispatchReport
    from cobro.engine.runs import default_channels, dispatch_due, run_day
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    sink = SmtpServerProcess()
    twilio = TwilioProcess()
    os.environ["TWILIO_AUTH_TOKEN"] = twilio.token
    say(f"SMTP sink in process {sink.proc.pid}; Twilio test server in process {twilio.proc.pid}")
    root = OUT_DIR / "channels"
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    serve_port = int(sock.getsockname()[1])
    sock.close()
    server: subprocess.Popen[str] | None = None
    try:
        ws = build_workspace(
            root, sink.port, twilio, serve_port, args.debtors, not args.no_calendar
        )
        tz = ZoneInfo(ws.config.company.timezone)
        plan_at = datetime.combine(BENCH_DATE, clock(7, 0), tzinfo=tz)
        send_at = datetime.combine(BENCH_DATE, clock(10, 0), tzinfo=tz)
        report = run_day(ws, BENCH_DATE, as_of=plan_at)
        say(f"planned {report.planned:,} outbox rows at {plan_at}")
        ws.close()
        db = root / "cobro.db"
        checkpoint(db)
        pristine = OUT_DIR / "channels-planned.db"
        copy_sqlite(db, pristine)

        # Pre-render: the real pipeline, email kept in memory, SMS and calls recorded by
        # the test server.
        copy_db = OUT_DIR / "channels-copy.db"
        copy_sqlite(pristine, copy_db)
        ws_copy = open_workspace(root, sqlite_url(copy_db))
        channels = default_channels(ws_copy, send_at)
        memory = MemoryTransport()
        channels["email"].transport = memory  # type: ignore[attr-defined]
        sms_before, calls_before = twilio.counts()
        with Timer() as tm_mem:
            dispatch_due(ws_copy, send_at, channels=channels)
        ws_copy.close()
        mails = memory.messages
        sms = twilio.ask(f"messages {sms_before}")
        calls = twilio.ask(f"calls {calls_before}")
        say(
            f"pipeline with email in memory: {len(mails):,} emails, {len(sms):,} SMS, "
            f"{len(calls):,} calls in {tm_mem.s:.2f} s"
        )
        if not calls or not sms or not mails:
            raise SystemExit(
                f"FAILED: the mix lacks a channel: {len(mails):,} emails, {len(sms):,} SMS, "
                f"{len(calls):,} calls pre-rendered"
            )

        expected_calls = sorted(repr(call_args(c)) for c in calls)
        raw_rates = []
        for i in range(3):
            mail_before, (sms_before, calls_before) = sink.count(), twilio.counts()
            sent, secs = asyncio.run(send_raw(sink.port, mails, 4, twilio, sms, calls, PARALLEL))
            sms_after, calls_after = twilio.counts()
            placed = twilio.ask(f"calls {calls_before}")
            if sorted(repr(call_args(c)) for c in placed) != expected_calls:
                raise SystemExit("FAILED: the raw calls differ from the calls Cobro placed")
            got = sink.count() - mail_before + sms_after - sms_before + calls_after - calls_before
            raw_rates.append(sent / secs)
            say(
                f"[raw {i + 1}/3] {sent:,} sent, {got:,} received in {secs:.2f} s "
                f"= {sent / secs:,.0f}/s"
            )
        raw_per_s = median(raw_rates)

        records = OUT_DIR / "channels-records.json"
        sink.dump(records)  # the raw sends' records: the sink keeps the measured ones only
        before_sms, before_calls = twilio.counts()
        before_callbacks = len(twilio.ask("callbacks 0"))
        parts: list[tuple[DispatchReport, float]] = []
        if args.workers == 1:
            ws = open_workspace(root, sqlite_url(db))
            with Timer() as tm:
                result = dispatch_due(ws, send_at)
            seconds = tm.s
        else:
            seconds, parts = dispatch_in_processes(root, sqlite_url(db), send_at, args.workers)
            result = DispatchReport()
            for part, _ in parts:
                result.add(part)
            ws = open_workspace(root, sqlite_url(db))
        try:
            got_mail = check_received(sink.dump(records), ws.engine)
            got_sms = check_twilio(twilio.ask(f"messages {before_sms}"), ws.engine, "sms")
            got_calls = check_twilio(twilio.ask(f"calls {before_calls}"), ws.engine, "voice")
        finally:
            ws.close()
        per_s = result.deliveries / seconds
        say(
            f"dispatch_due{f' in {args.workers} processes' if args.workers > 1 else ''}: "
            f"{result.deliveries:,} deliveries ({dict(result.by_channel)}; servers got "
            f"{got_mail:,} emails, {got_sms:,} SMS, {got_calls:,} calls, one per delivery), "
            f"{result.failed} failed, {result.retrying} retrying, {result.waiting} waiting, "
            f"in {seconds:.2f} s = {per_s:,.0f}/s"
            + (
                "; per process: "
                + ", ".join(f"{p.deliveries:,} in {s:.2f} s ({p.lost} lost)" for p, s in parts)
                if parts
                else ""
            )
        )
        got = got_mail + got_sms + got_calls
        rendered = len(mails) + len(sms) + len(calls)
        if got != result.deliveries or result.deliveries != rendered:
            raise SystemExit(
                f"FAILED: {result.deliveries:,} deliveries made, {got:,} messages and calls "
                f"received by the servers, {rendered:,} pre-rendered"
            )

        # Status callbacks of the measured SMS, posted to `cobro serve`.
        callbacks = twilio.ask(f"callbacks {before_callbacks}")
        sent_cbs = [c for c in callbacks if c[1]["MessageStatus"] == "sent"]
        delivered_cbs = [c for c in callbacks if c[1]["MessageStatus"] == "delivered"]
        server = serve(root, serve_port, twilio.token)
        warm = sent_cbs[: min(20, len(sent_cbs))]
        asyncio.run(post_callbacks(warm, 1))  # first requests load the app's code paths
        fast, took, answers = asyncio.run(post_callbacks(sent_cbs[len(warm) :], args.clients))
        cb_per_s = len(fast) / took
        say(
            f"callbacks as fast as answered: {len(fast):,} by {args.clients} clients in "
            f"{took:.2f} s = {cb_per_s:,.0f}/s, answers {answers}, "
            f"p50 {percentile(fast, 50) * 1000:.1f} ms"
        )
        latencies, took, answers = asyncio.run(post_callbacks(delivered_cbs, 1, args.rate))
        ws = open_workspace(root, sqlite_url(db))
        d = t.deliveries.c
        with ws.engine.connect() as conn:
            delivered = conn.execute(
                select(func.count()).where(d.channel == "sms", d.state == "delivered")
            ).scalar_one()
        ws.close()
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        say(
            f"callbacks at {args.rate:g}/s: {len(latencies):,} in {took:.2f} s, answers "
            f"{answers}, p50 {p50:.1f} ms, p99 {p99:.1f} ms; {delivered:,} SMS deliveries "
            "recorded as delivered"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        sink.close()
        twilio.close()
        (OUT_DIR / "channels-records.json").unlink(missing_ok=True)
        for name in ("channels-planned.db", "channels-copy.db"):
            for suffix in ("", "-wal", "-shm"):
                (OUT_DIR / (name + suffix)).unlink(missing_ok=True)

    say(
        f"dispatch ({args.workers} process(es)) {per_s:,.0f} msg/s vs raw clients "
        f"{raw_per_s:,.0f} msg/s "
        f"= {per_s / raw_per_s:.0%} (target >= 80%); callback p99 {p99:.1f} ms (target <= 50)"
    )
    emit(
        {
            "bench": "channels",
            "calendar": not args.no_calendar,
            "workers": args.workers,
            "messages": result.deliveries,
            "email": result.by_channel.get("email", 0),
            "sms": result.by_channel.get("sms", 0),
            "voice": result.by_channel.get("voice", 0),
            "per_s": round(per_s, 1),
            "raw_per_s": round(raw_per_s, 1),
            "ratio": round(per_s / raw_per_s, 2),
            "callbacks": len(fast) + len(latencies),
            "callbacks_per_s": round(cb_per_s, 1),
            "callback_rate": args.rate,
            "callback_p50_ms": round(p50, 1),
            "callback_p99_ms": round(p99, 1),
        }
    )


if __name__ == "__main__":
    main()
