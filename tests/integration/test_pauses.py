"""Disputes and promises to pay pause dunning for their items only, through real daily runs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Row, select

from cobro.domain.escalation import reached_phase
from cobro.engine.responses import add_promise, open_dispute, resolve_dispute
from cobro.engine.runs import dispatch_due, run_day
from cobro.engine.simulate import simulate
from cobro.evidence.verify import verify_evidence
from cobro.store import tables as t
from cobro.workspace import Workspace

from .support import business, captured, claimed_numbers, d, invoice, local, outbox, pay, plain


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def ids(ws: Workspace, customer: str, *numbers: str) -> tuple[int, list[int]]:
    """The debtor's id and its items' ids, by number."""
    c, r = t.customers.c, t.receivables.c
    with ws.engine.connect() as conn:
        cid = conn.execute(select(c.id).where(c.external_id == customer)).scalar_one()
        found = {
            row.number: row.id
            for row in conn.execute(
                select(r.number, r.id).where(r.customer_id == cid, r.number.in_(numbers))
            )
        }
    return int(cid), [int(found[n]) for n in numbers]


def dispute(ws: Workspace, customer: str, number: str, on: date) -> int:
    cid, (rid,) = ids(ws, customer, number)
    with ws.engine.begin() as conn:
        return open_dispute(
            conn, ws.company_id, cid, rid, "not ordered", local(ws, on, "12:00"), source="staff"
        )


def resolve(ws: Workspace, dispute_id: int, accepted: bool, on: date) -> None:
    with ws.engine.begin() as conn:
        resolve_dispute(conn, ws.company_id, dispute_id, accepted, None, local(ws, on, "12:00"))


def promise(ws: Workspace, customer: str, numbers: Sequence[str], by: date, on: date) -> int:
    cid, rids = ids(ws, customer, *numbers)
    with ws.engine.begin() as conn:
        return add_promise(
            conn,
            ws.company_id,
            cid,
            rids,
            by,
            ws.config.portal.promise_grace_days,
            local(ws, on, "12:00"),
            today=on,
            max_days=ws.config.portal.promise_max_days,
            source="staff",
        )


def claims_of(ws: Workspace, customer: str) -> list[tuple[date, str, list[str]]]:
    """(day, phase, items listed) of every claim sent to the debtor."""
    return [
        (r.occurrence_on, r.step, claimed_numbers(ws, r.id))
        for r in outbox(ws)
        if r.customer == customer and r.status == "sent"
    ]


def evidence(ws: Workspace, kind: str) -> list[dict[str, object]]:
    e = t.evidence.c
    with ws.engine.connect() as conn:
        return [
            json.loads(p)
            for p in conn.execute(select(e.payload).where(e.kind == kind).order_by(e.seq)).scalars()
        ]


def promise_row(ws: Workspace, promise_id: int) -> Row[Any]:
    with ws.engine.connect() as conn:
        return conn.execute(select(t.promises).where(t.promises.c.id == promise_id)).one()


# -- disputes ---------------------------------------------------------------------------


def test_a_disputed_item_is_left_out_of_the_claims_until_the_dispute_is_rejected(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-05"), "200.00")
    disputed = 0
    for day in days(d("2025-03-01"), d("2025-04-10")):
        if day == d("2025-03-07"):
            disputed = dispute(ws, "C1", "F-1", day)
        if day == d("2025-03-25"):
            resolve(ws, disputed, accepted=False, on=day)
        run_day(ws, day)

    claims = claims_of(ws, "C1")
    while_open = [c for c in claims if d("2025-03-07") <= c[0] <= d("2025-03-25")]
    after = [c for c in claims if c[0] > d("2025-03-25")]
    assert while_open and all(items == ["F-2"] for _, _, items in while_open), claims
    assert after and after[0][2] == ["F-1", "F-2"], claims  # claimed again once rejected
    assert any("- F-2 " in plain(m) and "F-1" not in plain(m) for m in captured(ws))


def test_a_debtor_whose_only_overdue_item_is_disputed_gets_no_claim_and_is_not_blocked(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-9", "C1", d("2024-12-01"), "900.00")  # 40 days overdue at go-live
    for day in days(d("2025-01-10"), d("2025-03-03")):
        if day == d("2025-03-03"):  # the day before phase 05 (blocks the account) is due
            dispute(ws, "C1", "F-9", day)
        run_day(ws, day)
    before = claims_of(ws, "C1")
    assert [step for _, step, _ in before] == ["b2b/01", "b2b/02", "b2b/03", "b2b/04"]
    for day in days(d("2025-03-04"), d("2025-04-30")):
        run_day(ws, day)

    assert claims_of(ws, "C1") == before  # nothing while disputed: no phase 05, no repeat
    with ws.engine.connect() as conn:
        blocked = conn.execute(
            select(t.customers.c.blocked).where(t.customers.c.external_id == "C1")
        ).scalar_one()
    assert blocked is False


def test_an_accepted_dispute_keeps_its_item_out_of_every_later_claim(ws: Workspace) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-01"), "200.00")
    for day in days(d("2025-03-01"), d("2025-05-15")):
        if day == d("2025-03-05"):
            resolve(ws, dispute(ws, "C1", "F-1", day), accepted=True, on=day)
        run_day(ws, day)

    claims = claims_of(ws, "C1")
    assert len(claims) >= 3, claims  # the escalation goes on for F-2 ...
    assert all(items == ["F-2"] for _, _, items in claims), claims  # ... and F-1 stays out


def test_an_item_disputed_after_planning_is_left_out_when_the_claim_goes_out(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    business(ws, "C2", "ap@c2.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-01"), "200.00")
    invoice(ws, "G-1", "C2", d("2025-03-01"), "300.00")
    day = d("2025-03-10")
    run_day(ws, day, as_of=local(ws, day, "06:00"))  # planned, not sent yet (09:00)
    planned = {r.customer: r.id for r in outbox(ws)}
    assert claimed_numbers(ws, planned["C1"]) == ["F-1", "F-2"]
    dispute(ws, "C1", "F-1", day)
    dispute(ws, "C2", "G-1", day)
    dispatch_due(ws, local(ws, day, "09:00"))

    rows = {r.customer: r for r in outbox(ws)}
    assert rows["C1"].status == "sent" and claimed_numbers(ws, rows["C1"].id) == ["F-2"]
    [mail] = captured(ws)
    assert "- F-2 " in plain(mail) and "F-1" not in plain(mail)
    [sent] = evidence(ws, "claim.sent")
    assert [i["number"] for i in sent["items"]] == ["F-2"]  # type: ignore[index]
    assert rows["C2"].status == "cancelled"
    assert rows["C2"].reason == "disputed or promised before sending"
    with ws.engine.connect() as conn:  # what the claim lists agrees with its evidence
        report = verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)
    assert report.ok, report.to_json()


# -- promises ---------------------------------------------------------------------------


def test_an_unpaid_promise_breaks_the_day_after_its_grace_and_one_claim_resumes_dunning(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    made = 0
    for day in days(d("2025-02-20"), d("2025-04-10")):
        if day == d("2025-03-09"):  # the day after phase 01 went out
            made = promise(ws, "C1", ["F-1"], d("2025-03-14"), day)  # paused to 03-17
        run_day(ws, day)
        if day == d("2025-03-17"):
            assert promise_row(ws, made).status == "open"  # the last day of the grace

    row = promise_row(ws, made)
    assert row.status == "broken" and row.settled_at == local(ws, d("2025-03-18"), "09:00")
    [broken] = evidence(ws, "promise.broken")
    assert broken["unpaid"] == {"F-1": 50000} and broken["paused_until"] == "2025-03-17"
    claims = claims_of(ws, "C1")
    per_day = Counter(day for day, _, _ in claims)
    assert set(per_day.values()) == {1}  # never two claims a day
    assert [(day, step) for day, step, _ in claims] == [
        (d("2025-02-22"), "b2b/00"),
        (d("2025-03-08"), "b2b/01"),
        # paused 03-09..03-17 (phase 02 was due on 03-16): one claim when it breaks, at
        # the phase the item has reached, then the next one a full gap later
        (d("2025-03-18"), "b2b/02"),
        (d("2025-04-02"), "b2b/03"),
    ]
    policy = ws.config.policy("b2b")
    reached = reached_phase(policy, d("2025-03-01"), 50000, d("2025-03-18"))
    assert reached is not None and reached.key == "02"


def test_a_long_pause_resumes_one_phase_above_where_the_debtor_stood_not_with_a_burst(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    disputed = 0
    for day in days(d("2025-03-01"), d("2025-05-15")):
        if day == d("2025-03-09"):
            disputed = dispute(ws, "C1", "F-1", day)
        run_day(ws, day)
        if day == d("2025-04-19"):  # F-1 has reached phase 04 (45 days) meanwhile
            resolve(ws, disputed, accepted=False, on=day)

    assert [(day, step) for day, step, _ in claims_of(ws, "C1")] == [
        (d("2025-03-08"), "b2b/01"),
        (d("2025-04-20"), "b2b/02"),  # one claim: the next phase, none of the others
        (d("2025-05-05"), "b2b/03"),  # then step by step, each after its gap
    ]


def test_a_promise_paid_before_its_date_is_kept_and_nothing_is_sent_meanwhile(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    made = 0
    for day in days(d("2025-03-05"), d("2025-04-10")):
        if day == d("2025-03-09"):
            made = promise(ws, "C1", ["F-1"], d("2025-03-20"), day)
        if day == d("2025-03-12"):
            pay(ws, "P-1", "C1", "500.00", day, receivable="F-1")
        run_day(ws, day)
        if day == d("2025-03-12"):
            assert promise_row(ws, made).status == "kept"  # at the next run, before its date

    assert [step for _, step, _ in claims_of(ws, "C1")] == ["b2b/01"]  # 03-08 only
    [kept] = evidence(ws, "promise.kept")
    assert kept["promised_on"] == "2025-03-20"
    assert evidence(ws, "promise.broken") == []


def test_a_debtor_with_a_promised_and_an_unpromised_item_is_claimed_for_the_other_only(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    invoice(ws, "F-1", "C1", d("2025-02-20"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-01"), "200.00")
    for day in days(d("2025-03-10"), d("2025-03-31")):
        if day == d("2025-03-10"):
            promise(ws, "C1", ["F-1"], d("2025-04-05"), day)
        run_day(ws, day)

    claims = claims_of(ws, "C1")
    assert claims and all(items == ["F-2"] for _, _, items in claims), claims


# -- simulation -------------------------------------------------------------------------


def test_a_simulation_leaves_paused_items_out_and_breaks_promises_after_their_grace(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@c1.example")
    business(ws, "C2", "ap@c2.example")
    invoice(ws, "F-1", "C1", d("2025-03-01"), "500.00")
    invoice(ws, "F-2", "C1", d("2025-03-01"), "200.00")
    invoice(ws, "G-1", "C2", d("2025-03-01"), "300.00")
    for day in days(d("2025-03-01"), d("2025-03-08")):
        run_day(ws, day)  # 01 for both on 03-08
    dispute(ws, "C1", "F-1", d("2025-03-08"))
    made = promise(ws, "C2", ["G-1"], d("2025-03-14"), d("2025-03-08"))  # paused to 03-17

    with ws.engine.connect() as conn:
        trans = conn.begin()
        try:
            found = [
                m
                for day in simulate(
                    conn, ws.config, ws.company_id, d("2025-03-09"), d("2025-03-30")
                )
                for m in day
            ]
        finally:
            trans.rollback()

    c1 = [(m.date, m.step, m.items) for m in found if m.customer == "C1"]
    c2 = [(m.date, m.step, m.items) for m in found if m.customer == "C2"]
    assert c1 == [(d("2025-03-16"), "b2b/02", 1)]  # F-2 only: F-1 stays disputed
    assert c2 == [(d("2025-03-18"), "b2b/02", 1)]  # the promise breaks after its grace
    assert promise_row(ws, made).status == "open"  # nothing was changed
