"""Views, disputes and promises hold against the evidence chain: an edit, a deletion or a
swap made directly in the database, in their rows or in the chain, is named by
``cobro evidence verify`` (table, row, field, debtor, evidence entry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, delete, select, update

from cobro.evidence.chain import EvidenceEntry, append
from cobro.evidence.verify import VerifyReport, verify_evidence
from cobro.store import tables as t
from cobro.workspace import Workspace

from .answered import PHONE, REASON, Answered, answered, cobro, evidence_verify_fails

Named = tuple[str, int | None, str | None, str, int | None]  # table, id, field, debtor, entry


def verify(ws: Workspace) -> VerifyReport:
    with ws.engine.connect() as conn:
        return verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)


def seq(conn: Connection, kind: str, ref: str) -> int:
    ev = t.evidence.c
    return int(conn.execute(select(ev.seq).where(ev.kind == kind, ev.ref == ref)).scalar_one())


def view_seq(conn: Connection, view_id: int) -> int:
    ev = t.evidence.c
    for number, payload in conn.execute(
        select(ev.seq, ev.payload).where(ev.kind.in_(["claim.opened", "claim.read"]))
    ):
        if json.loads(payload)["view"] == view_id:
            return int(number)
    raise AssertionError(f"no entry for view {view_id}")


def test_untouched_views_disputes_and_promises_verify(ws: Workspace) -> None:
    answered(ws)

    report = verify(ws)

    assert report.ok, report.to_json()
    proc = cobro(ws, "evidence", "verify", ok=True)
    assert "views, disputes and promises match it" in proc.stdout


@dataclass(frozen=True)
class Tamper:
    change: Callable[[Connection, Answered], None]
    named: Callable[[Connection, Answered], set[Named]]
    says: Callable[[Answered], str]  # a line `evidence verify` prints


V, D, P, PI = t.claim_views, t.disputes, t.promises, t.promise_items


def _swap_view_kinds(conn: Connection, a: Answered) -> None:
    conn.execute(update(V).where(V.c.id == a.opened).values(kind="read"))
    conn.execute(update(V).where(V.c.id == a.read).values(kind="opened"))


def _swap_view_instants(conn: Connection, a: Answered) -> None:
    opened_at, read_at = (
        conn.execute(select(V.c.at).where(V.c.id == i)).scalar_one() for i in (a.opened, a.read)
    )
    conn.execute(update(V).where(V.c.id == a.opened).values(at=read_at))
    conn.execute(update(V).where(V.c.id == a.read).values(at=opened_at))


def _promise_item(conn: Connection, a: Answered) -> int:
    return int(conn.execute(select(PI.c.id).where(PI.c.promise_id == a.promise)).scalar_one())


def _delete_promise(conn: Connection, a: Answered) -> None:
    conn.execute(delete(PI).where(PI.c.promise_id == a.promise))
    conn.execute(delete(P).where(P.c.id == a.promise))


TAMPERING = {
    "a read's IP edited": Tamper(
        lambda c, a: c.execute(update(V).where(V.c.id == a.read).values(ip="10.0.0.1")),
        lambda c, a: {("claim_views", a.read, "ip", "C1", view_seq(c, a.read))},
        lambda a: (
            f"claim_views id {a.read} ip, debtor C1: is '10.0.0.1', the evidence says '{PHONE.ip}'"
        ),
    ),
    "a read's instant edited": Tamper(
        lambda c, a: c.execute(
            update(V)
            .where(V.c.id == a.read)
            .values(
                at=c.execute(select(V.c.at).where(V.c.id == a.read)).scalar_one()
                - timedelta(days=2)
            )
        ),
        lambda c, a: {("claim_views", a.read, "at", "C1", view_seq(c, a.read))},
        lambda a: f"claim_views id {a.read} at, debtor C1: is 2025-03-01T09:20:00+00:00",
    ),
    "an open passed off as the read (kinds swapped)": Tamper(
        _swap_view_kinds,
        lambda c, a: {
            ("claim_views", a.opened, "kind", "C1", view_seq(c, a.opened)),
            ("claim_views", a.read, "kind", "C1", view_seq(c, a.read)),
        },
        lambda a: (
            f"claim_views id {a.opened} kind, debtor C1: is 'read', the evidence says 'opened'"
        ),
    ),
    "the open and the read reordered (instants swapped)": Tamper(
        _swap_view_instants,
        lambda c, a: {
            ("claim_views", a.opened, "at", "C1", view_seq(c, a.opened)),
            ("claim_views", a.read, "at", "C1", view_seq(c, a.read)),
        },
        lambda a: (
            f"claim_views id {a.read} at, debtor C1: is 2025-03-03T09:00:00+00:00, "
            "the evidence says 2025-03-03T09:20:00+00:00"
        ),
    ),
    "a read deleted": Tamper(
        lambda c, a: c.execute(delete(V).where(V.c.id == a.read)),
        lambda c, a: {("claim_views", None, None, "C1", view_seq(c, a.read))},
        lambda a: (
            f"claim_views, debtor C1: the read of claim {a.claim} at "
            f"2025-03-03T09:20:00+00:00 (view {a.read}, IP {PHONE.ip}) is missing"
        ),
    ),
    "a dispute's reason edited": Tamper(
        lambda c, a: c.execute(update(D).where(D.c.id == a.dispute).values(reason="No reason")),
        lambda c, a: {
            (
                "disputes",
                a.dispute,
                "reason",
                "C1",
                seq(c, "dispute.opened", f"dispute:{a.dispute}"),
            )
        },
        lambda a: (
            f"disputes id {a.dispute} reason, debtor C1: is 'No reason', the evidence "
            f"says {REASON!r}"
        ),
    ),
    "a dispute marked accepted without evidence": Tamper(
        lambda c, a: c.execute(update(D).where(D.c.id == a.dispute).values(status="accepted")),
        lambda c, a: {
            (
                "disputes",
                a.dispute,
                "status",
                "C1",
                seq(c, "dispute.opened", f"dispute:{a.dispute}"),
            )
        },
        lambda a: (
            f"disputes id {a.dispute} status, debtor C1: is 'accepted', the evidence says 'open'"
        ),
    ),
    "a resolution's note edited": Tamper(
        lambda c, a: c.execute(
            update(D).where(D.c.id == a.other_dispute).values(resolution="Debtor agreed")
        ),
        lambda c, a: {
            (
                "disputes",
                a.other_dispute,
                "resolution",
                "C2",
                seq(c, "dispute.resolved", f"dispute:{a.other_dispute}"),
            )
        },
        lambda a: (
            f"disputes id {a.other_dispute} resolution, debtor C2: is 'Debtor agreed', "
            "the evidence says 'Order form signed'"
        ),
    ),
    "a dispute deleted": Tamper(
        lambda c, a: c.execute(delete(D).where(D.c.id == a.dispute)),
        lambda c, a: {
            ("disputes", None, None, "C1", seq(c, "dispute.opened", f"dispute:{a.dispute}"))
        },
        lambda a: (
            f"disputes, debtor C1: dispute {a.dispute} of item F-2 opened at "
            "2025-03-03T09:25:00+00:00"
        ),
    ),
    "a promise's date edited": Tamper(
        lambda c, a: c.execute(
            update(P).where(P.c.id == a.promise).values(promised_on=date(2025, 3, 31))
        ),
        lambda c, a: {
            (
                "promises",
                a.promise,
                "promised_on",
                "C1",
                seq(c, "promise.made", f"promise:{a.promise}"),
            )
        },
        lambda a: (
            f"promises id {a.promise} promised_on, debtor C1: is '2025-03-31', the "
            "evidence says '2025-03-13'"
        ),
    ),
    "a promise marked kept without evidence": Tamper(
        lambda c, a: c.execute(update(P).where(P.c.id == a.promise).values(status="kept")),
        lambda c, a: {
            ("promises", a.promise, "status", "C1", seq(c, "promise.made", f"promise:{a.promise}"))
        },
        lambda a: f"promises id {a.promise} status, debtor C1: is 'kept', the evidence says 'open'",
    ),
    "a promised item's balance edited": Tamper(
        lambda c, a: c.execute(
            update(PI).where(PI.c.promise_id == a.promise).values(balance_minor=1000)
        ),
        lambda c, a: {
            (
                "promise_items",
                _promise_item(c, a),
                "balance_minor",
                "C1",
                seq(c, "promise.made", f"promise:{a.promise}"),
            )
        },
        lambda a: f"item F-1 of promise {a.promise} is 10.00 EUR, the evidence says 100.00 EUR",
    ),
    "a promise deleted with its items": Tamper(
        _delete_promise,
        lambda c, a: {
            ("promises", None, None, "C1", seq(c, "promise.made", f"promise:{a.promise}"))
        },
        lambda a: f"promises, debtor C1: promise {a.promise} to pay F-1 by 2025-03-13",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
def test_an_edited_deleted_or_swapped_answer_is_named(ws: Workspace, case: str) -> None:
    tamper = TAMPERING[case]
    a = answered(ws)
    with ws.engine.begin() as conn:
        tamper.change(conn, a)
        expected = tamper.named(conn, a)

    report = verify(ws)

    assert report.chain.ok and report.problems == []  # the chain itself is intact
    named = {(p.table, p.id, p.field, p.debtor, p.seq) for p in report.records}
    assert named == expected, [str(p) for p in report.records]
    stderr = evidence_verify_fails(ws)
    assert tamper.says(a) in stderr, stderr


# --------------------------------------------------------------------------- the chain


def test_an_edited_chain_entry_is_named_with_what_it_records(ws: Workspace) -> None:
    a = answered(ws)
    ev = t.evidence.c
    with ws.engine.begin() as conn:
        number = view_seq(conn, a.read)
        payload = json.loads(conn.execute(select(ev.payload).where(ev.seq == number)).scalar_one())
        payload["ip"] = "10.0.0.1"
        conn.execute(update(t.evidence).where(ev.seq == number).values(payload=json.dumps(payload)))

    report = verify(ws)

    assert not report.chain.ok and report.chain.first_bad_seq == number
    stderr = evidence_verify_fails(ws)
    assert (
        f"entry {number}: entry content does not match its hash (it was edited); the entry is "
        f"claim.read outbox:{a.claim}, debtor C1"
    ) in stderr


def test_a_deleted_chain_entry_is_named_and_so_is_the_record_it_held(ws: Workspace) -> None:
    a = answered(ws)
    ev = t.evidence.c
    with ws.engine.begin() as conn:
        number = seq(conn, "dispute.opened", f"dispute:{a.dispute}")
        conn.execute(delete(t.evidence).where(ev.seq == number))

    report = verify(ws)

    assert not report.chain.ok and report.chain.first_bad_seq == number + 1
    named = {(p.table, p.id, p.field, p.debtor, p.seq) for p in report.records}
    assert named == {("disputes", a.dispute, None, "C1", None)}
    stderr = evidence_verify_fails(ws)
    assert f"entry {number + 1}: entry {number} is missing" in stderr
    assert f"disputes id {a.dispute}, debtor C1: the dispute of item F-2 opened at" in stderr


def test_swapped_chain_entries_are_named_as_reordered(ws: Workspace) -> None:
    a = answered(ws)
    ev = t.evidence.c
    with ws.engine.begin() as conn:
        opened, read = view_seq(conn, a.opened), view_seq(conn, a.read)
        conn.execute(update(t.evidence).where(ev.seq == opened).values(seq=-1))
        conn.execute(update(t.evidence).where(ev.seq == read).values(seq=opened))
        conn.execute(update(t.evidence).where(ev.seq == -1).values(seq=read))

    report = verify(ws)

    assert not report.chain.ok and report.chain.first_bad_seq == opened
    stderr = evidence_verify_fails(ws)
    assert (
        f"entry {opened}: link to the previous entry is broken: it followed entry {read - 1}, "
        f"not entry {opened - 1} (entries were reordered); the entry is claim.read "
        f"outbox:{a.claim}, debtor C1"
    ) in stderr


def test_a_broken_promise_holds_by_its_last_entry_and_an_undone_break_is_named(
    ws: Workspace,
) -> None:
    a = answered(ws)
    at = datetime(2025, 3, 17, 8, 0, tzinfo=UTC)
    with ws.engine.begin() as conn:
        append(
            conn,
            ws.company_id,
            [EvidenceEntry("promise.broken", f"promise:{a.promise}", a.c1, at, {"unpaid": "F-1"})],
        )
        conn.execute(update(P).where(P.c.id == a.promise).values(status="broken", settled_at=at))
    assert verify(ws).ok

    with ws.engine.begin() as conn:
        conn.execute(update(P).where(P.c.id == a.promise).values(status="open"))
        broken = seq(conn, "promise.broken", f"promise:{a.promise}")

    (problem,) = verify(ws).records
    assert (problem.table, problem.id, problem.field, problem.seq) == (
        "promises",
        a.promise,
        "status",
        broken,
    )
    assert "is 'open', the evidence says 'broken'" in problem.detail
