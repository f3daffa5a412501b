"""Claim history by the day a message went out, in the company's time zone."""

from __future__ import annotations

from datetime import timedelta

from cobro.engine.runs import dispatch_due, run_day
from cobro.evidence.history import claim_history
from cobro.workspace import Workspace

from .support import business, d, invoice, local

DUE = d("2025-03-10")  # b2b phase 00 is 7 days before: planned on 2025-03-03
PLANNED = d("2025-03-03")
NEXT_DAY = PLANNED + timedelta(days=1)


def test_history_selects_claims_by_the_company_day_they_went_out(ws: Workspace) -> None:
    business(ws, "C1", "ap@late.example")
    business(ws, "C2", "ap@ontime.example")
    invoice(ws, "F-1", "C1", DUE, "100.00")
    invoice(ws, "F-2", "C2", DUE + timedelta(days=2), "50.00")  # planned and sent 03-05
    run_day(ws, PLANNED, as_of=local(ws, PLANNED, "08:00"))  # planned, not yet due
    # Sent at 00:30 in Madrid on 03-04, which is still 03-03 in UTC.
    assert dispatch_due(ws, local(ws, NEXT_DAY, "00:30")).sent == 1
    run_day(ws, PLANNED + timedelta(days=2))

    def customers(since: str | None = None, until: str | None = None) -> list[str]:
        with ws.engine.connect() as conn:
            found = claim_history(
                conn,
                ws.config,
                ws.company_id,
                since=d(since) if since else None,
                until=d(until) if until else None,
            )
        return [c.customer for c in found]

    assert customers() == ["C1", "C2"]
    assert customers("2025-03-04", "2025-03-04") == ["C1"]  # planned on 03-03, sent on 03-04
    assert customers(until="2025-03-03") == []
    assert customers(since="2025-03-05") == ["C2"]
    assert customers("2025-03-06") == []

    with ws.engine.connect() as conn:
        late, on_time = claim_history(conn, ws.config, ws.company_id)
    assert (late.occurrence_on, late.sent_on) == (PLANNED, NEXT_DAY)
    assert late.sent_at == local(ws, NEXT_DAY, "00:30")
    assert late.to_json()["sent_on"] == "2025-03-04"
    assert on_time.sent_on == on_time.occurrence_on == d("2025-03-05")


def test_a_claim_that_never_went_out_is_found_by_its_planned_or_settled_day(
    ws: Workspace,
) -> None:
    business(ws, "C1", "ap@late.example")
    invoice(ws, "F-1", "C1", DUE, "100.00")
    run_day(ws, PLANNED, as_of=local(ws, PLANNED, "08:00"))  # waiting for its send time
    with ws.engine.connect() as conn:
        (waiting,) = claim_history(conn, ws.config, ws.company_id, since=PLANNED, until=PLANNED)
        assert claim_history(conn, ws.config, ws.company_id, since=NEXT_DAY) == []
    assert waiting.sent_on is None and waiting.to_json()["sent_at"] is None
