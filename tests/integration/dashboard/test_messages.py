"""The message log: every message of the company newest first, each linked to its debtor's
account; filtered by day, phase, channel, state and recipient; keyset pages; a collector
resends a message and it goes out again."""

from __future__ import annotations

import re

from sqlalchemy import select

from cobro.engine.message_log import MessageFilter, message_log
from cobro.store import tables as t

from ..support import captured
from .conftest import Site
from .helpers import customer_id


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def listed(site: Site, query: str = "", role: str = "read-only") -> list[str]:
    """The recipients of the log's rows, in order."""
    page = site.staff(role).get(f"/dashboard/messages{query}")
    assert page.status_code == 200, page.text
    return re.findall(r'<td class="small">([^<\s]+)', page.text)


def test_the_log_lists_every_message_newest_first_linked_to_its_debtor(site: Site) -> None:
    page = site.staff("read-only").get("/dashboard/messages")
    assert page.status_code == 200
    text = text_of(page.text)
    # The run of 2025-03-03 sent C1's and C2's claims (b2b 01), at 09:00 Madrid.
    assert "Acme Industrial C1" in text and "Beta Retail C2" in text
    assert "ap@acme-industrial.example" in text and "pay@beta-retail.example" in text
    table = text_of(page.text.partition('id="messages"')[2])
    assert table.count("Vencida e impagada desde hace 7 días") == 2
    assert re.search(r"3/3/25, 9:00 #\d+ Beta Retail C2", table)  # company time, claim number
    c1, c2 = customer_id(site.acme, "C1"), customer_id(site.acme, "C2")
    assert f'href="/dashboard/debtors/{c1}"' in page.text
    assert f'href="/dashboard/debtors/{c2}"' in page.text
    assert "Beta&#39;s Own Debtor" not in page.text and "owner@beta-debtor" not in page.text
    # Newest first: the same instant, the later delivery first.
    d = t.deliveries.c
    with site.acme.engine.connect() as conn:
        ids = list(
            conn.execute(
                select(d.recipient).where(d.company_id == site.acme.company_id).order_by(d.id)
            ).scalars()
        )
    assert listed(site) == list(reversed(ids))
    # A read-only user sees no resend button.
    assert 'action="/dashboard/messages/resend"' not in page.text


def test_the_log_is_filtered_by_day_phase_channel_state_and_recipient(site: Site) -> None:
    both = ["pay@beta-retail.example", "ap@acme-industrial.example"]
    assert listed(site, "?from=2025-03-03&to=2025-03-03") == both
    assert listed(site, "?from=2025-03-04") == []
    assert listed(site, "?to=2025-03-02") == []
    assert listed(site, "?phase=b2b/01") == both
    assert listed(site, "?phase=b2b/02") == []
    assert listed(site, "?phase=resend") == []
    assert listed(site, "?channel=email") == both
    assert listed(site, "?channel=sms") == []
    assert listed(site, "?state=sent") == both
    assert listed(site, "?state=failed") == []
    assert listed(site, "?recipient=AP@Acme") == ["ap@acme-industrial.example"]
    assert listed(site, "?recipient=acme-industrial") == []  # the start of the address
    # A complete address: the messages to it (found by the index), or, when none went to
    # it, to the addresses starting with it.
    assert listed(site, "?recipient=AP@acme-industrial.example") == ["ap@acme-industrial.example"]
    assert listed(site, "?recipient=ap@acme-industrial.exa") == ["ap@acme-industrial.example"]
    assert listed(site, "?recipient=ap@acme-industrial.example.org") == []
    assert listed(site, "?recipient=%25") == []  # a wildcard is a character like any other
    # Filters the page does not know are left out; a date it cannot read is said.
    assert listed(site, "?channel=fax&state=lost&phase=nope") == both
    page = site.staff("read-only").get("/dashboard/messages?from=2025-13-01")
    assert page.status_code == 200
    assert "Desde: indique una fecha (AAAA-MM-DD)." in page.text
    # The form keeps what was chosen.
    kept = site.staff("read-only").get("/dashboard/messages?channel=email&recipient=ap")
    assert '<option value="email" selected>' in kept.text and 'value="ap"' in kept.text


def test_pages_follow_one_another_by_their_keys(site: Site) -> None:
    ws = site.acme
    seen: list[str] = []
    cursor = None
    with ws.engine.connect() as conn:
        for _ in range(4):
            page = message_log(conn, ws.company_id, MessageFilter(channel="email"), cursor, 1)
            seen += [m.recipient for m in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break
        first = message_log(conn, ws.company_id, MessageFilter(channel="email"), None, 1)
    assert seen == ["pay@beta-retail.example", "ap@acme-industrial.example"]
    # The page after the first, as a link carries it, with its filters.
    assert first.next_cursor is not None
    after = listed(site, f"?channel=email&cursor={first.next_cursor}")
    assert after == ["ap@acme-industrial.example"]
    # A cursor that is not one is the first page.
    assert listed(site, "?cursor=garbage") == seen


def test_a_collector_resends_a_message_to_its_recipient_from_the_log(site: Site) -> None:
    collector = site.staff("collector")
    page = collector.get("/dashboard/messages?recipient=ap")
    assert 'action="/dashboard/messages/resend"' in page.text
    claim = int(re.findall(r'name="claim" value="(\d+)"', page.text)[0])
    before = len(captured(site.acme))
    done = collector.form(
        "/dashboard/messages/resend",
        {
            "claim": claim,
            "to": "ap@acme-industrial.example",
            "back": "/dashboard/messages?recipient=ap",
        },
        "/dashboard/messages",
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(
        "/dashboard/messages?recipient=ap&done=resend&resend="
    )
    mails = captured(site.acme)
    assert len(mails) == before + 1 and "ap@acme-industrial.example" in str(mails[-1]["To"])
    after = collector.get(done.headers["location"])
    assert "La reclamación se ha reenviado." in after.text
    text = text_of(after.text)
    # The resend is logged, newest first, named in the page's language.
    assert f"Reenvío de la reclamación {claim}" in text and "Resend of" not in text
    assert collector.get("/dashboard/language/en").status_code == 303
    english = text_of(collector.get("/dashboard/messages").text)
    assert f"Resend of claim {claim}" in english and "Reenvío de" not in english
    assert collector.get("/dashboard/language/es").status_code == 303
    assert listed(site, "?phase=resend") == ["ap@acme-industrial.example"]
    # A place to go back to outside the log is not followed.
    away = collector.form(
        "/dashboard/messages/resend",
        {"claim": claim, "to": "ap@acme-industrial.example", "back": "https://evil.example/"},
        "/dashboard/messages",
    )
    assert away.headers["location"].startswith("/dashboard/messages?done=resend&resend=")
    # A bad address is refused with the reason; nothing is planned.
    o = t.outbox.c
    with site.acme.engine.connect() as conn:
        rows = conn.execute(select(o.id)).all()
    bad = {"claim": claim, "to": "not an address"}
    refused = collector.form("/dashboard/messages/resend", bad, "/dashboard/messages")
    assert refused.status_code == 422
    assert "neither an email address nor a phone number" in refused.text
    with site.acme.engine.connect() as conn:
        assert conn.execute(select(o.id)).all() == rows
