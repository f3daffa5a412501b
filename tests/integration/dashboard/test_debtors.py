"""The debtors list: found by name, id, email and phone; filtered; sorted; keyset pages."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from sqlalchemy import update

from cobro.engine.debtor_search import (
    DebtorFilter,
    bounded,
    search_debtors,
    search_debtors_sqlite,
)
from cobro.store import tables as t

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


def test_a_search_read_on_the_event_loop_lists_what_the_general_search_lists(
    site: Site, is_postgres: bool
) -> None:
    """On SQLite a bounded search (words typed, sorted by name or id, filtered by policy or
    blocked at most) is read on the reading engine's driver connection with statements
    written once: page after page, the same debtors and cursors as ``search_debtors``,
    also when words are ones many debtors have (``dense``: checked on those the other
    words found). On PostgreSQL there is no such connection: every list is read in a
    worker thread by ``search_debtors``."""
    state = site.app.state.cobro.companies["acme"]
    with state.loop_reads.connection(state.reader) as raw:
        if is_postgres:
            assert raw is None
            return
        assert raw is not None
        ws = site.acme
        load(
            ws,
            "customers",
            *(
                {
                    "external_id": f"N{i}",
                    "name": name,
                    "kind": "business",
                    "email": f"acme{i}@norte.example",
                    "phone": f"+34 611 99{i} 000",
                }
                for i, name in enumerate(
                    ["Acme Norte", "Acme Sur", "Carla Acme", "Norte Retail", "Beta Norte"]
                )
            ),
        )
        c = t.customers.c
        with ws.engine.begin() as conn:
            conn.execute(update(t.customers).where(c.external_id == "C3").values(blocked=True))
        texts = ["", "acme", "a", "c", "norte a", "acme n", "611 99", "+34 611", "acme0@"]
        texts += ["retail beta", "c n1", "zzz", "acme zzz", "ca ru", "n1", "100%"]
        compared = 0
        with ws.engine.connect() as conn:
            for text in texts:
                for sort in ("name", "id"):
                    for more in ({}, {"policy": "b2b"}, {"blocked": True}, {"blocked": False}):
                        wanted = DebtorFilter(text=text, sort=sort, **more)  # type: ignore[arg-type]
                        if not bounded(wanted):
                            assert not text and more
                            continue
                        for dense in (0, 1, 2, 1000):
                            cursor = None
                            while True:
                                fast = search_debtors_sqlite(
                                    raw, ws.company_id, "EUR", TODAY, wanted, cursor, 2, dense
                                )
                                if fast is None:  # every word of an alternative dense
                                    assert dense < 1000 and text
                                    break
                                general = search_debtors(
                                    conn, ws.company_id, "EUR", TODAY, wanted, cursor, 2, dense
                                )
                                assert fast == general, (text, sort, more, dense, cursor)
                                compared += 1
                                cursor = fast.next_cursor
                                if cursor is None:
                                    break
        assert compared > 300
        acme = search_debtors_sqlite(raw, ws.company_id, "EUR", TODAY, DebtorFilter(text="acme"))
        assert acme is not None
        # by name or email
        assert [r.external_id for r in acme.rows] == ["C1", "N0", "N1", "N4", "N2", "N3"]
    # The page, read so, as the general search shows it.
    assert listed(site, "q=norte") == ["N0", "N4", "N3"]
    assert listed(site, "q=norte&sort=id&blocked=no") == ["N0", "N3", "N4"]
    assert listed(site, "q=carla&blocked=yes") == ["C3"]


def test_a_search_never_lists_another_companys_debtor(site: Site) -> None:
    """Whatever is typed, a company's staff find their company's debtors only."""
    for text in ("beta", "beta's own", "owner", "owner@beta-debtor.example", "b1", "debtor"):
        query = urlencode({"q": text})
        assert "B1" not in listed(site, query), text
        assert (
            "Beta's Own Debtor" not in site.staff("admin").get(f"/dashboard/debtors?{query}").text
        )
    beta = site.staff("read-only", "beta")
    page = beta.get("/dashboard/debtors?q=beta")
    assert page.status_code == 200
    assert "Beta&#39;s Own Debtor" in page.text and "Beta Retail" not in page.text
    for text in ("acme", "c1", "carla", "611 999", "ap@"):
        found = beta.get(f"/dashboard/debtors?{urlencode({'q': text})}")
        assert found.status_code == 200 and 'class="id"' not in found.text, text
