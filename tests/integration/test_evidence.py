"""The evidence chain: verifiable after real runs, and tampering is found."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, text, update

from cobro.engine.dispatch import Dispatcher
from cobro.engine.runs import email_channel, run_day, templates_for
from cobro.evidence.chain import (
    GENESIS,
    ChainReport,
    EvidenceEntry,
    append,
    canonical,
    legacy_hash,
    lock_after,
    verify_chain,
)
from cobro.evidence.checkpoint import CHECKPOINT_FILE
from cobro.store import tables as t
from cobro.workspace import Workspace

from .answered import cobro
from .support import business, captured, d, invoice, local, outbox, rendezvous

DAY = d("2025-03-03")


def verify(ws: Workspace) -> ChainReport:
    with ws.engine.connect() as conn:
        return verify_chain(conn, ws.company_id)


def two_claims(ws: Workspace) -> None:
    business(ws, "C1", "ap@one.example")
    business(ws, "C2", "ap@two.example")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")
    invoice(ws, "G-1", "C2", d("2025-03-10"), "70.00")


def test_evidence_chain_verifies_and_detects_tampering(ws: Workspace) -> None:
    two_claims(ws)
    run_day(ws, DAY)
    good = verify(ws)
    assert good.ok and good.entries == 4  # a delivery and a claim per debtor
    ev = t.evidence.c
    with ws.engine.connect() as conn:
        rows = conn.execute(select(ev.seq, ev.kind, ev.payload).order_by(ev.seq)).all()
    assert sorted(r.kind for r in rows) == ["claim.sent", "claim.sent", "delivery", "delivery"]
    seq, payload = next((r.seq, r.payload) for r in rows if r.kind == "delivery")

    # Someone rewrites who a message was delivered to.
    forged = json.loads(payload)
    forged["recipient"] = "someone-else@example.com"
    with ws.engine.begin() as conn:
        conn.execute(update(t.evidence).where(ev.seq == seq).values(payload=json.dumps(forged)))
    bad = verify(ws)
    assert not bad.ok
    assert bad.first_bad_seq == seq
    assert bad.problem and "does not match" in bad.problem

    # Put it back: the chain verifies again. Then remove an entry.
    with ws.engine.begin() as conn:
        conn.execute(update(t.evidence).where(ev.seq == seq).values(payload=payload))
    assert verify(ws).ok
    with ws.engine.begin() as conn:
        conn.execute(delete(t.evidence).where(ev.seq == 2))
    gone = verify(ws)
    assert not gone.ok and gone.first_bad_seq == 3
    assert gone.problem and "missing" in gone.problem


def test_evidence_of_a_run_given_a_local_time_verifies(ws: Workspace) -> None:
    two_claims(ws)
    madrid = local(ws, DAY, "09:30").astimezone(ZoneInfo("Europe/Madrid"))

    assert run_day(ws, DAY, as_of=madrid).sent == 2

    assert verify(ws).ok


def test_moving_evidence_to_another_debtor_is_detected(ws: Workspace) -> None:
    two_claims(ws)
    run_day(ws, DAY)
    ev, cu = t.evidence.c, t.customers.c
    with ws.engine.begin() as conn:
        ids = dict(conn.execute(select(cu.external_id, cu.id)).all())
        conn.execute(
            update(t.evidence).where(ev.customer_id == ids["C1"]).values(customer_id=ids["C2"])
        )

    assert not verify(ws).ok


def test_concurrent_dispatchers_keep_one_evidence_chain(
    ws: Workspace,
    reopen: Callable[[Workspace], Workspace],
    is_postgres: bool,
    request: pytest.FixtureRequest,
) -> None:
    for i in range(20):
        business(ws, f"C{i}", f"ap{i}@acme.example")
        invoice(ws, f"F-{i}", f"C{i}", d("2025-03-10"), "10.00")
    run_day(ws, DAY, as_of=local(ws, DAY, "07:00"))  # plan only
    as_of = local(ws, DAY, "09:00")
    workspaces = [ws, reopen(ws)]
    start = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def dispatch(w: Workspace) -> None:
        dispatcher = Dispatcher(
            w.engine,
            w.config,
            w.company_id,
            w.secret,
            templates_for(w),
            {"email": email_channel(w, as_of)},
            as_of,
            batch_size=5,
        )
        try:
            start.wait()
            asyncio.run(dispatcher.run())
        except BaseException as exc:
            errors.append(exc)

    # Both dispatchers record their first batch at the same time.
    with rendezvous(
        [w.engine for w in workspaces] if is_postgres else [],
        2,
        lambda sql: sql.startswith("INSERT INTO deliveries"),
        after=True,
    ):
        threads = [threading.Thread(target=dispatch, args=(w,)) for w in workspaces]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)

    assert [repr(e) for e in errors] == []
    assert {r.status for r in outbox(ws)} == {"sent"}
    assert len(captured(ws)) == 20
    chain = verify(ws)
    assert chain.ok and chain.entries == 40
    # Nothing is left to send later (a batch lost by a crash would be retried after its lease).
    assert run_day(ws, DAY, as_of=as_of + timedelta(hours=1)).sent == 0


def test_a_chain_written_in_the_older_form_still_verifies_and_goes_on_in_the_new_one(
    ws: Workspace,
) -> None:
    """Entries written before the chain hashed digests: hash = sha256(prev + canonical)."""
    two_claims(ws)
    run_day(ws, DAY)
    ev = t.evidence.c
    with ws.engine.begin() as conn:
        prev = GENESIS
        for e in conn.execute(select(t.evidence).order_by(ev.seq)).all():
            entry = EvidenceEntry(e.kind, e.ref, e.customer_id, e.at, json.loads(e.payload))
            h = legacy_hash(prev, canonical(e.seq, entry))
            conn.execute(update(t.evidence).where(ev.id == e.id).values(prev_hash=prev, hash=h))
            prev = h
        conn.execute(delete(t.evidence_checkpoints))  # those signed the new form's hashes
    (ws.root / CHECKPOINT_FILE).unlink()
    assert verify(ws).ok
    business(ws, "C3", "ap@three.example")
    invoice(ws, "H-1", "C3", d("2025-03-11"), "10.00")

    assert run_day(ws, DAY + timedelta(days=1)).sent == 1

    assert verify(ws).ok and verify(ws).entries == 6
    out = ws.root / "c1.json"
    cobro(ws, "evidence", "export", "C1", "--out", str(out), ok=True)
    pack = json.loads(out.read_text())
    assert [e["form"] for e in pack["entries"]] == [1, 1]  # C1 was claimed first
    old = [x for x in pack["links"] if x["seq"] <= 4]
    new = [x for x in pack["links"] if x["seq"] > 4]
    assert old and all(x["form"] == 1 and "digest" not in x for x in old)
    assert [x["seq"] for x in new] == [5, 6] and all("digest" in x for x in new)
    with ws.engine.begin() as conn:
        conn.execute(update(t.evidence).where(ev.seq == 2).values(ref="outbox:99"))
    edited = verify(ws)
    assert not edited.ok and edited.first_bad_seq == 2


def test_the_head_read_after_the_lock_sees_entries_committed_while_it_waited(
    ws: Workspace,
) -> None:
    """``lock_after`` (PostgreSQL): its lock waits for another writer of the chain, and the
    chain's last entry it reads is that writer's, committed meanwhile; appended after it,
    the chain holds."""
    if ws.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's locks and pipeline")
    at = local(ws, DAY, "09:00")

    def entry(n: int) -> EvidenceEntry:
        return EvidenceEntry("note", f"test:{n}", None, at, {"n": n})

    waiting = threading.Event()
    pid: list[int] = []
    failed: list[BaseException] = []

    def second() -> None:
        try:
            with ws.engine.begin() as conn:
                pid.append(conn.connection.driver_connection.info.backend_pid)  # type: ignore[union-attr]
                waiting.set()
                rows, head = lock_after(conn, ws.company_id, "SELECT 2 AS two", {})
                assert rows == [(2,)]
                append(conn, ws.company_id, [entry(2)], head)
        except BaseException as exc:  # reported by the test's thread
            failed.append(exc)

    with ws.engine.connect() as first, ws.engine.connect() as watch:
        with first.begin():
            append(first, ws.company_id, [entry(1)])  # the lock held until commit
            thread = threading.Thread(target=second)
            thread.start()
            assert waiting.wait(30)
            # The second writer waits for the lock before the first commits.
            lock_wait = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
            deadline = time.monotonic() + 30
            while watch.execute(lock_wait, {"pid": pid[0]}).scalar() != "Lock":
                watch.rollback()
                assert time.monotonic() < deadline, "the second writer never waited"
        thread.join(30)
    assert not thread.is_alive() and not failed, failed
    report = verify(ws)
    assert report.ok and report.entries >= 2
    e = t.evidence.c
    with ws.engine.connect() as conn:
        refs = conn.execute(
            select(e.ref).where(e.company_id == ws.company_id).order_by(e.seq)
        ).scalars()
        assert list(refs)[-2:] == ["test:1", "test:2"]
