"""``/segments``, on every database: the configured segments with their criteria, who is in
one on a date (counted, listed with their debt, paged), and one company's members never
shown to another."""

from __future__ import annotations

from datetime import timedelta

from cobro.engine.segments import members
from cobro.store import tables as t

from ..support import d, invoice, person
from .claimed import claimed, rows
from .conftest import Server


def test_segments_are_listed_with_their_criteria(server: Server) -> None:
    listed = server.client("acme", "read-only").get("/segments")

    assert listed.status_code == 200
    segments = {s["name"]: s for s in listed.json()["data"]}
    assert list(segments) == ["overdue_30", "large_b2b_debt", "card_holders"]
    large = segments["large_b2b_debt"]
    assert large["description"] == "Businesses owing more than 5,000 overdue"
    assert large["currency"] == "EUR"
    assert large["criteria"]["kind"] == "business"
    assert large["criteria"]["overdue_amount"] == {"min": "5000", "max": None}
    assert segments["overdue_30"]["criteria"]["days_overdue"] == {"min": 30, "max": None}
    assert listed.json()["next_cursor"] is None


def test_a_segments_members_on_a_date_are_counted_and_listed_with_their_debt(
    server: Server,
) -> None:
    claimed(server)
    client = server.client("acme", "read-only")

    today = client.get("/segments/overdue_30")  # 2025-03-04: F-1 is 12 days overdue
    later = client.get("/segments/overdue_30", params={"date": "2025-03-25"})
    members = client.get("/segments/overdue_30/members", params={"date": "2025-03-25"})

    assert (today.json()["date"], today.json()["members"]) == ("2025-03-04", 0)
    assert (later.json()["date"], later.json()["members"]) == ("2025-03-25", 1)
    assert members.json() == {
        "data": [
            {
                "customer": "C1",
                "name": "Acme Industrial",
                "open": {"amount": "350.50", "currency": "EUR"},
                "overdue": {"amount": "350.50", "currency": "EUR"},
                "days_overdue": 33,
            }
        ],
        "next_cursor": None,
    }
    assert client.get("/segments/overdue_30/members").json()["data"] == []


def test_a_segments_members_are_paged_by_external_id(server: Server) -> None:
    acme = server.companies["acme"]
    for n in (3, 1, 2):
        person(acme, f"P{n}", f"p{n}@example.com")
    invoice(acme, "P2-1", "P2", server.clock.now.date(), "10.00")
    client = server.client("acme", "read-only")

    first = client.get("/segments/card_holders/members", params={"limit": 2}).json()
    rest = client.get(
        "/segments/card_holders/members", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()

    assert [m["customer"] for m in first["data"]] == ["P1", "P2"]
    assert [m["customer"] for m in rest["data"]] == ["P3"]
    assert rest["next_cursor"] is None
    assert first["data"][1]["open"] == {"amount": "10.00", "currency": "EUR"}
    assert client.get("/segments/card_holders").json()["members"] == 3


def test_paged_members_are_those_cobro_segments_show_lists(server: Server) -> None:
    """Pages sum each debtor's items as they walk the debtors; the command sums every item
    of the company first: both find the same debtors with the same debt."""
    claimed(server)
    acme = server.companies["acme"]
    for n in range(1, 8):
        person(acme, f"P{n}", f"p{n}@example.com")
        invoice(acme, f"P{n}-1", f"P{n}", d("2025-01-01") + timedelta(days=9 * n), f"{n}0.00")
        invoice(acme, f"P{n}-2", f"P{n}", d("2025-03-20"), "5.00", "USD")
    invoice(acme, "F-9", "C2", d("2025-01-05"), "7000.00")
    client = server.client("acme", "read-only")
    on = d("2025-04-15")

    for name in acme.config.segments:
        with acme.engine.connect() as conn:
            expected = [
                (m.external_id, str(m.open.amount), str(m.overdue.amount), m.days_overdue)
                for m in members(conn, acme.company_id, acme.config.segment(name), on, "EUR")
            ]
        found: list[tuple[str, str, str, int]] = []
        cursor = None
        while True:
            params = {"date": on.isoformat(), "limit": "3"} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"/segments/{name}/members", params=params).json()
            found += [
                (m["customer"], m["open"]["amount"], m["overdue"]["amount"], m["days_overdue"])
                for m in page["data"]
            ]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert found == expected, name
        assert expected, name  # every starter segment has members in this data
        counted = client.get(f"/segments/{name}", params={"date": on.isoformat()}).json()
        assert counted["members"] == len(expected), name


def test_an_unknown_segment_is_not_found_and_a_bad_date_refused(server: Server) -> None:
    client = server.client("acme", "read-only")

    assert client.get("/segments/nope").status_code == 404
    assert client.get("/segments/nope/members").status_code == 404
    bad = client.get("/segments/overdue_30/members", params={"date": "someday"})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.date"]


def test_one_companys_debtors_are_never_members_of_anothers_segments(server: Server) -> None:
    claimed(server)
    person(server.companies["acme"], "P1", "p1@example.com")
    beta = server.client("beta", "read-only")

    members = beta.get("/segments/overdue_30/members", params={"date": "2025-04-15"}).json()
    counted = beta.get("/segments/overdue_30", params={"date": "2025-04-15"}).json()

    # Beta's own C1 (H-1, 75.00), never acme's C1 (350.50) or acme's C2.
    assert [(m["customer"], m["name"], m["open"]["amount"]) for m in members["data"]] == [
        ("C1", "Beta's C1", "75.00")
    ]
    assert counted["members"] == 1
    assert beta.get("/segments/card_holders/members").json()["data"] == []
    assert len(rows(server.companies["acme"], t.customers)) == 3
