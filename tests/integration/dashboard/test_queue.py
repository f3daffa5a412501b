"""The queue of disputes and promises: open disputes (a collector accepts or rejects them
with a note), promises due, ahead and broken; keyset pages."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select

from cobro.engine.responses import open_dispute
from cobro.engine.work_queue import open_disputes, promises
from cobro.evidence.chain import verify_chain
from cobro.store import tables as t

from .conftest import Site
from .helpers import NOW, TODAY, customer_id, work_data
from .test_messages import text_of


def item_of(site: Site, number: str) -> int:
    r = t.receivables.c
    with site.acme.engine.connect() as conn:
        return int(conn.execute(select(r.id).where(r.number == number)).scalar_one())


def rows(html: str, table: str) -> list[str]:
    """The text of each row of the table ``table``."""
    body = html.partition(f'id="{table}"')[2].partition("</table>")[0]
    return [text_of(row).strip() for row in re.findall(r"<tr data-[^>]+>(.*?)</tr>", body, re.S)]


def test_the_queue_lists_open_disputes_and_promises_due_ahead_and_broken(site: Site) -> None:
    work_data(site.acme)
    reader = site.staff("read-only")
    page = reader.get("/dashboard/disputes")
    assert page.status_code == 200
    (dispute,) = rows(page.text, "disputes")
    assert "Acme Industrial C1 F-2 500,00 € Goods returned in February Personal" in dispute
    assert f'href="/dashboard/debtors/{customer_id(site.acme, "C1")}"' in page.text
    assert 'action="/dashboard/disputes/' not in page.text  # read only: no decision
    (due,) = rows(page.text, "promises")
    assert "Acme Industrial C1 F-1 · 600,00 € 4 mar 2025 7 mar 2025" in due
    assert "Transfer on Tuesday" in due
    (ahead,) = rows(reader.get("/dashboard/disputes?promised=ahead").text, "promises")
    assert "Beta Retail C2 F-4 · 200,00 € 20 mar 2025 23 mar 2025" in ahead
    (broken,) = rows(reader.get("/dashboard/disputes?promised=broken").text, "promises")
    assert "Carla Ruiz C3 F-6 · 150,00 € 22 feb 2025 25 feb 2025" in broken
    assert "Incumplida" in broken


def test_a_collector_accepts_or_rejects_a_dispute_with_a_note(site: Site) -> None:
    work = work_data(site.acme)
    c2, f4 = customer_id(site.acme, "C2"), item_of(site, "F-4")
    with site.acme.engine.begin() as conn:
        second = open_dispute(
            conn,
            site.acme.company_id,
            c2,
            f4,
            "Never ordered",
            NOW,
            source="staff",
        )
    collector = site.staff("collector")
    accepted = collector.form(
        f"/dashboard/disputes/{work.dispute}/resolve",
        {"decision": "accept", "note": "Credit note CN-7 issued", "back": "/dashboard/disputes"},
        "/dashboard/disputes",
    )
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/dashboard/disputes?done=accepted"
    page = collector.get(accepted.headers["location"])
    assert "La disputa está aceptada" in page.text
    assert [r.split(" ")[3] for r in rows(page.text, "disputes")] == ["Beta"]  # one left
    rejected = collector.form(
        f"/dashboard/disputes/{second}/resolve", {"decision": "reject"}, "/dashboard/disputes"
    )
    assert rejected.status_code == 303
    assert rows(collector.get("/dashboard/disputes").text, "disputes") == []
    d = t.disputes.c
    with site.acme.engine.connect() as conn:
        found = {
            row.id: (row.status, row.resolution, row.resolved_at)
            for row in conn.execute(select(d.id, d.status, d.resolution, d.resolved_at))
        }
        assert verify_chain(conn, site.acme.company_id).ok
    assert found[work.dispute] == ("accepted", "Credit note CN-7 issued", NOW)
    assert found[second] == ("rejected", None, NOW)
    # Resolved already, or no decision: refused, nothing changes.
    again = collector.form(
        f"/dashboard/disputes/{second}/resolve", {"decision": "accept"}, "/dashboard/disputes"
    )
    assert again.status_code == 409 and "Esta disputa ya está resuelta." in again.text
    undecided = collector.form(
        f"/dashboard/disputes/{second}/resolve", {"decision": "maybe"}, "/dashboard/disputes"
    )
    assert undecided.status_code == 422 and "Elija aceptar o rechazar." in undecided.text


def test_queue_pages_follow_one_another_by_their_keys(site: Site) -> None:
    work = work_data(site.acme)
    c2, f4 = customer_id(site.acme, "C2"), item_of(site, "F-4")
    with site.acme.engine.begin() as conn:
        later = open_dispute(
            conn,
            site.acme.company_id,
            c2,
            f4,
            "Never ordered",
            NOW.replace(hour=11),
            source="staff",
        )
    ws = site.acme
    with ws.engine.connect() as conn:
        seen: list[int] = []
        cursor = None
        for _ in range(4):
            page = open_disputes(conn, ws.company_id, cursor, limit=1)
            seen += [d.id for d in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [work.dispute, later]
        ahead = promises(conn, ws.company_id, "ahead", TODAY, limit=1)
        everything_open = promises(conn, ws.company_id, "due", date(2025, 3, 31))
        assert [p.id for p in ahead.rows] == [work.promise_ahead] and ahead.next_cursor is None
        assert [p.id for p in everything_open.rows] == [work.promise_due, work.promise_ahead]
        first = promises(conn, ws.company_id, "due", date(2025, 3, 31), limit=1)
        assert first.next_cursor is not None
        rest = promises(conn, ws.company_id, "due", date(2025, 3, 31), first.next_cursor, 1)
        assert [p.id for p in rest.rows] == [work.promise_ahead]
        first_dispute = open_disputes(conn, ws.company_id, limit=1)
    html = site.staff("read-only").get(f"/dashboard/disputes?dcursor={first_dispute.next_cursor}")
    assert [r.split(" ")[3] for r in rows(html.text, "disputes")] == ["Beta"]
