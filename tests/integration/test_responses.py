"""Recording what a debtor answers to a claim: views, disputes, promises; and the history
that shows them after the claim, in time order, opens apart from confirmed reads."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from cobro.engine.responses import (
    Attachment,
    Client,
    ResponseError,
    add_promise,
    open_dispute,
    record_view,
    resolve_dispute,
)
from cobro.engine.runs import run_day
from cobro.evidence.chain import verify_chain
from cobro.evidence.history import claim_history
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import business, d, invoice, local, outbox, pay

PHONE = Client("203.0.113.9", "Mozilla/5.0 (iPhone)")
DAY = d("2025-03-10")


@pytest.fixture
def claimed(ws: Workspace) -> Workspace:
    """C1 owes F-1 and F-2 (overdue) and was claimed on DAY; C2 owes G-1."""
    business(ws, "C1", "ap@c1.example")
    business(ws, "C2", "ap@c2.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-02"), "200.00")
    invoice(ws, "G-1", "C2", d("2025-03-01"), "300.00")
    run_day(ws, DAY)
    return ws


def ids(ws: Workspace) -> dict[str, int]:
    """Customer and receivable ids by external id / number, and C1's claim as "claim"."""
    c, r = t.customers.c, t.receivables.c
    with ws.engine.connect() as conn:
        found = {row.external_id: row.id for row in conn.execute(select(c.id, c.external_id))}
        found |= {row.number: row.id for row in conn.execute(select(r.id, r.number))}
    found["claim"] = next(row.id for row in outbox(ws) if row.customer == "C1")
    return found


def entries(ws: Workspace, kind: str) -> list[dict[str, Any]]:
    e = t.evidence.c
    with ws.engine.connect() as conn:
        return [
            json.loads(p)
            for p in conn.execute(select(e.payload).where(e.kind == kind).order_by(e.seq)).scalars()
        ]


def promise(ws: Workspace, customer: int, items: list[int], by: date, **kw: Any) -> int:
    with ws.engine.begin() as conn:
        return add_promise(
            conn,
            ws.company_id,
            customer,
            items,
            by,
            3,
            local(ws, DAY, "15:00"),
            today=DAY,
            max_days=30,
            source=kw.pop("source", "staff"),
            **kw,
        )


def dispute(ws: Workspace, customer: int, item: int, reason: str = "not ordered", **kw: Any) -> int:
    with ws.engine.begin() as conn:
        return open_dispute(
            conn,
            ws.company_id,
            customer,
            item,
            reason,
            local(ws, DAY, "14:00"),
            source=kw.pop("source", "staff"),
            **kw,
        )


def test_opening_a_link_and_confirming_its_reading_are_recorded_apart(claimed: Workspace) -> None:
    ws, n = claimed, ids(claimed)
    with ws.engine.begin() as conn:
        record_view(
            conn, ws.company_id, n["C1"], n["claim"], "opened", local(ws, DAY, "10:00"), PHONE
        )
        record_view(
            conn, ws.company_id, n["C1"], n["claim"], "read", local(ws, DAY, "10:01"), PHONE
        )
        with pytest.raises(ValueError):
            record_view(
                conn, ws.company_id, n["C1"], n["claim"], "seen", local(ws, DAY, "10:02"), PHONE
            )

    with ws.engine.connect() as conn:
        views = conn.execute(select(t.claim_views).order_by(t.claim_views.c.id)).all()
        assert verify_chain(conn, ws.company_id).ok
    assert [(v.kind, v.ip, v.user_agent) for v in views] == [
        ("opened", "203.0.113.9", "Mozilla/5.0 (iPhone)"),
        ("read", "203.0.113.9", "Mozilla/5.0 (iPhone)"),
    ]
    assert entries(ws, "claim.opened")[0]["ip"] == "203.0.113.9"
    assert entries(ws, "claim.read")[0]["user_agent"] == "Mozilla/5.0 (iPhone)"


def test_a_dispute_is_evidence_with_its_attachment_hash_and_opens_a_staff_task(
    claimed: Workspace,
) -> None:
    ws, n = claimed, ids(claimed)
    data = b"%PDF-1.4 signed delivery note"
    found = dispute(
        ws,
        n["C1"],
        n["F-1"],
        "  Goods never arrived  ",
        source="portal",
        client=PHONE,
        outbox_id=n["claim"],
        attachment=Attachment("albaran.pdf", "application/pdf", data),
    )

    [entry] = entries(ws, "dispute.opened")
    assert entry["receivable"] == "F-1" and entry["reason"] == "Goods never arrived"
    assert entry["attachment_sha256"] == hashlib.sha256(data).hexdigest()
    assert (entry["claim"], entry["ip"]) == (n["claim"], "203.0.113.9")
    with ws.engine.connect() as conn:
        task = conn.execute(select(t.tasks)).one()
    assert task.action_key == f"dispute/{found}" and task.customer_id == n["C1"]
    assert task.message == "Item F-1 disputed: Goods never arrived"

    with ws.engine.begin() as conn:
        resolve_dispute(
            conn, ws.company_id, found, True, "credit note issued", local(ws, DAY, "16:00")
        )
    [resolved] = entries(ws, "dispute.resolved")
    assert resolved == {"status": "accepted", "note": "credit note issued"}


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("blank reason", "a dispute needs a reason"),
        ("another debtor's item", "not an open item of this debtor"),
        ("a paid item", "item F-2 is not open (nothing is owed on it)"),
        ("twice", "item F-1 is already disputed"),
        ("accepted before", "item F-1 was disputed and the dispute accepted"),
    ],
)
def test_a_dispute_that_cannot_be_recorded_is_refused_and_leaves_nothing(
    claimed: Workspace, case: str, problem: str
) -> None:
    ws, n = claimed, ids(claimed)
    pay(ws, "P-1", "C1", "200.00", DAY, receivable="F-2")
    if case == "twice":
        dispute(ws, n["C1"], n["F-1"])
    if case == "accepted before":
        earlier = dispute(ws, n["C1"], n["F-1"])
        with ws.engine.begin() as conn:
            resolve_dispute(conn, ws.company_id, earlier, True, None, local(ws, DAY, "15:00"))
    before = len(entries(ws, "dispute.opened"))
    item = {"another debtor's item": n["G-1"], "a paid item": n["F-2"]}.get(case, n["F-1"])
    reason = "  " if case == "blank reason" else "wrong"
    with pytest.raises(ResponseError, match=re.escape(problem)):
        dispute(ws, n["C1"], item, reason)
    assert len(entries(ws, "dispute.opened")) == before


def test_resolving_an_unknown_or_resolved_dispute_is_refused(claimed: Workspace) -> None:
    ws, n = claimed, ids(claimed)
    found = dispute(ws, n["C1"], n["F-1"])
    with ws.engine.begin() as conn:
        with pytest.raises(ResponseError, match="no dispute 99"):
            resolve_dispute(conn, ws.company_id, 99, False, None, local(ws, DAY, "16:00"))
        resolve_dispute(conn, ws.company_id, found, False, None, local(ws, DAY, "16:00"))
        with pytest.raises(ResponseError, match=f"dispute {found} is already rejected"):
            resolve_dispute(conn, ws.company_id, found, True, None, local(ws, DAY, "16:01"))


def test_a_promise_records_the_balances_promised_as_evidence(claimed: Workspace) -> None:
    ws, n = claimed, ids(claimed)
    found = promise(ws, n["C1"], [n["F-2"], n["F-1"]], d("2025-03-20"), note="two transfers")
    [entry] = entries(ws, "promise.made")
    assert entry["items"] == {"F-1": 50000, "F-2": 20000}
    assert (entry["promised_on"], entry["grace_days"]) == ("2025-03-20", 3)
    with ws.engine.connect() as conn:
        row = conn.execute(select(t.promises).where(t.promises.c.id == found)).one()
    assert (row.status, row.note, row.source) == ("open", "two transfers", "staff")


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("no items", "a promise covers at least one item"),
        ("yesterday", "the promised date 2025-03-09 has passed"),
        ("too far", "a promise is for at most 30 days ahead"),
        ("another debtor's item", "not an open item of this debtor"),
        ("twice", "item F-1 is already promised for 2025-03-15"),
    ],
)
def test_a_promise_that_cannot_be_recorded_is_refused(
    claimed: Workspace, case: str, problem: str
) -> None:
    ws, n = claimed, ids(claimed)
    if case == "twice":
        promise(ws, n["C1"], [n["F-1"]], d("2025-03-15"))
    items = {"no items": [], "another debtor's item": [n["F-1"], n["G-1"]]}.get(case, [n["F-1"]])
    by = {"yesterday": d("2025-03-09"), "too far": d("2025-04-10")}.get(case, d("2025-03-20"))
    with pytest.raises(ResponseError, match=re.escape(problem)):
        promise(ws, n["C1"], items, by)


def test_history_lists_what_followed_each_claim_in_time_order(claimed: Workspace) -> None:
    ws, n = claimed, ids(claimed)
    with ws.engine.begin() as conn:
        for kind, at in (("opened", "09:30"), ("opened", "11:00"), ("read", "11:02")):
            record_view(conn, ws.company_id, n["C1"], n["claim"], kind, local(ws, DAY, at), PHONE)
    dispute(ws, n["C1"], n["F-1"], source="portal", client=PHONE, outbox_id=n["claim"])
    promise(ws, n["C1"], [n["F-2"]], d("2025-03-15"))  # staff: the latest claim listing F-2
    pay(ws, "P-1", "C1", "200.00", d("2025-03-12"), receivable="F-2")
    run_day(ws, d("2025-03-12"))  # the promise is kept

    with ws.engine.connect() as conn:
        [c1] = claim_history(conn, ws.config, ws.company_id, "C1")
        [c2] = claim_history(conn, ws.config, ws.company_id, "C2")
    assert [e.kind for e in c1.events] == [
        "delivery",
        "opened",
        "opened",
        "read",
        "dispute",
        "promise",
        "payment",  # on 03-12: a day, before that day's run
        "promise.kept",  # by the run of 03-12
    ]
    texts = [e.text for e in c1.events]
    assert texts[1].startswith("link opened (a page view: weak") and "203.0.113.9" in texts[1]
    assert texts[3] == "reading confirmed by the debtor from 203.0.113.9"
    assert texts[6].startswith("payment P-1: 200.00") and texts[6].endswith(" on F-2")
    as_json = c1.to_json()["events"]
    assert [e["kind"] for e in as_json].count("read") == 1
    assert as_json[6]["paid_on"] == "2025-03-12" and as_json[6]["amount"] == "200.00"
    assert [e.kind for e in c2.events] == ["delivery"]  # another debtor's answers stay apart
