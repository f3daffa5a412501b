"""The debtors list: found by name, id, email and phone; filtered; sorted; keyset pages."""

from __future__ import annotations

import re

from cobro.engine.debtor_search import DebtorFilter, search_debtors

from ..support import load
from .conftest import Site
from .helpers import TODAY


def listed(site: Site, query: str) -> list[str]:
    page = site.staff("read-only").get(f"/dashboard/debtors?{query}")
    assert page.status_code == 200, page.text
    return re.findall(
        r'<td class="id"><a href="/dashboard/debtors/\d+">([^<]+)</a></td>', page.text
    )


def test_debtors_are_found_by_name_id_email_and_phone(site: Site) -> None:
    assert listed(site, "") == ["C1", "C2", "C3"]  # by name
    assert listed(site, "q=retail") == ["C2"]  # part of the name, any case
    assert listed(site, "q=c3") == ["C3"]  # the id
    assert listed(site, "q=carla%40example") == ["C3"]  # the email
    assert listed(site, "q=611+999") == ["C3"]  # digits of the phone
    assert listed(site, "q=100%25") == []  # % matches itself


def test_debtors_are_filtered_and_sorted(site: Site) -> None:
    assert listed(site, "policy=consumer") == ["C3"]
    assert listed(site, "phase=b2b%2F01") == ["C1", "C2"]  # the run sent them phase 01
    assert listed(site, "blocked=yes") == []
    # The oldest overdue item: C1's F-1 74 days, C2's F-4 124 days, C3's F-6 4 days.
    assert listed(site, "overdue=61-90") == ["C1"]
    assert listed(site, "overdue=90%2B") == ["C2"]
    assert listed(site, "overdue=1-30") == ["C3"]
    assert listed(site, "segment=overdue_30") == ["C1", "C2"]
    # Overdue: C1 1,100, C2 200, C3 150; the oldest overdue first: C2, C1, C3.
    assert listed(site, "sort=overdue") == ["C1", "C2", "C3"]
    assert listed(site, "sort=oldest") == ["C2", "C1", "C3"]
    assert listed(site, "sort=id&q=c") == ["C1", "C2", "C3"]


def test_pages_follow_one_another_by_their_keys(site: Site) -> None:
    ws = site.acme
    for sort, order in (
        ("name", ["C1", "C2", "C3"]),
        ("overdue", ["C1", "C2", "C3"]),
        ("oldest", ["C2", "C1", "C3"]),
    ):
        seen: list[str] = []
        cursor = None
        with ws.engine.connect() as conn:
            for _ in range(4):
                page = search_debtors(
                    conn, ws.company_id, "EUR", TODAY, DebtorFilter(sort=sort), cursor, limit=1
                )
                seen += [row.external_id for row in page.rows]
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert seen == order, sort
    # The page's link carries the cursor and the filters.
    browser = site.staff("read-only")
    first = browser.get("/dashboard/debtors?policy=b2b")
    assert "Página siguiente" not in first.text  # 2 debtors fit on one page


def test_a_search_finds_debtors_by_the_start_of_their_words_as_they_are_now(site: Site) -> None:
    ws = site.acme
    assert listed(site, "q=beta+ret") == ["C2"]  # every word starts a word of the name
    assert listed(site, "q=beta+acme") == []
    assert listed(site, "q=611+999+888") == ["C3"]  # the national number's digits
    assert listed(site, "q=%2B34+611") == ["C3"]  # with the country code
    assert listed(site, "q=industrial") == ["C1"]
    assert listed(site, "q=Beta%27s") == []  # the other company's debtor
    load(ws, "customers", {"external_id": "C1", "name": "Zeta Works", "kind": "business"})
    assert listed(site, "q=industrial") == []  # renamed: found by its new name only
    assert listed(site, "q=zeta+w") == ["C1"]
    # A word many debtors have is checked row by row: the same debtors are found.
    with ws.engine.connect() as conn:
        for text in ("c", "a", "zeta", "611 999", "carla@example.net", "nobody"):
            found = [
                [
                    r.external_id
                    for r in search_debtors(
                        conn, ws.company_id, "EUR", TODAY, DebtorFilter(text=text), dense=dense
                    ).rows
                ]
                for dense in (0, 1000)
            ]
            assert found[0] == found[1], text
