"""A debtor's account and what a collector records on it: a claim resent, a promise to pay
and a dispute taken by phone, a note, a task; a refused form shows why."""

from __future__ import annotations

import re

from sqlalchemy import select

from cobro.engine.tasks import list_tasks
from cobro.store import tables as t

from ..support import captured
from .conftest import Site
from .helpers import customer_id


def item(site: Site, number: str) -> int:
    r = t.receivables.c
    with site.acme.engine.connect() as conn:
        return int(conn.execute(select(r.id).where(r.number == number)).scalar_one())


def claim(site: Site, customer: str) -> int:
    o = t.outbox.c
    with site.acme.engine.connect() as conn:
        return int(
            conn.execute(
                select(o.id).where(
                    o.customer_id == customer_id(site.acme, customer), ~o.step.like("resend/%")
                )
            ).scalar_one()
        )


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_account_shows_statement_claims_and_payments(site: Site) -> None:
    page = site.staff("read-only").get(f"/dashboard/debtors/{customer_id(site.acme, 'C1')}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Acme Industrial" in text and "C1" in text
    assert "F-1 Factura 20 dic 2024 1.000,00 € 600,00 € Vencido 74 d" in text
    assert "Total 1.100,00 €" in text and "50,00 US$" in text
    assert "Vencida e impagada desde hace 7 días" in text  # the claim the run sent
    # Statuses and channels in the page's language, not the stored codes.
    assert "Correo → ap@acme-industrial.example · Enviado" in text
    assert "Vencida e impagada desde hace 7 días 3 mar 2025 · Enviada" in text
    assert "P1 10 feb 2025 300,00 €" in text
    assert not re.search(r"\d{4}-\d\d-\d\d", text)  # every date as the page writes dates


def test_a_collector_resends_a_claim_and_it_goes_out_again(site: Site) -> None:
    collector = site.staff("collector")
    c1 = customer_id(site.acme, "C1")
    before = len(captured(site.acme))
    done = collector.form(
        f"/dashboard/debtors/{c1}/resend", {"claim": claim(site, "C1")}, f"/dashboard/debtors/{c1}"
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/dashboard/debtors/{c1}?done=resend&resend=")
    mails = captured(site.acme)
    assert len(mails) == before + 1
    assert "ap@acme-industrial.example" in str(mails[-1]["To"])
    page = collector.get(done.headers["location"])
    assert "La reclamación se ha reenviado." in page.text
    assert "Reenviar #" in text_of(page.text)  # the resend, shown as one
    # A bad address is refused with the reason, nothing planned.
    refused = collector.form(
        f"/dashboard/debtors/{c1}/resend", {"claim": claim(site, "C1"), "to": "not an address"}
    )
    assert (
        refused.status_code == 422 and "neither an email address nor a phone number" in refused.text
    )


def test_a_collector_records_a_promise_a_dispute_a_note_and_a_task(site: Site) -> None:
    collector = site.staff("collector")
    c1 = customer_id(site.acme, "C1")
    page = f"/dashboard/debtors/{c1}"
    promised = collector.form(
        f"{page}/promises",
        {"item": str(item(site, "F-1")), "promised_on": "2025-03-10", "note": "By transfer"},
        page,
    )
    assert promised.status_code == 303 and promised.headers["location"].endswith("done=promise")
    disputed = collector.form(
        f"{page}/disputes", {"item": str(item(site, "F-2")), "reason": "Goods returned"}, page
    )
    assert disputed.status_code == 303
    noted = collector.form(f"{page}/notes", {"text": "Spoke to Ana in accounts"}, page)
    assert noted.status_code == 303
    tasked = collector.form(
        f"{page}/tasks", {"message": "Call back", "due_on": "2025-03-06", "due_time": "16:30"}, page
    )
    assert tasked.status_code == 303
    text = text_of(collector.get(page).text)
    assert "F-1 Factura 20 dic 2024 1.000,00 € 600,00 € Pago prometido 10 mar 2025" in text
    assert "F-2 Factura 14 feb 2025 500,00 € 500,00 € En disputa" in text
    assert "2025-03-10" not in text  # the promise's date as the page writes dates, everywhere
    assert "Goods returned Personal Abierta" in text
    assert "Call back Abierta" in text
    assert "Spoke to Ana in accounts collector@acme.example" in text
    with site.acme.engine.connect() as conn:
        tasks = {x.message: x for x in list_tasks(conn, site.acme.company_id, customer="C1")}
        promise = conn.execute(select(t.promises)).one()
    assert promise.source == "staff" and promise.note == "By transfer"
    # 16:30 in Madrid is 15:30 UTC; the dispute opened a task of its own.
    assert tasks["Call back"].due_at.isoformat() == "2025-03-06T15:30:00+00:00"
    assert "Item F-2 disputed: Goods returned" in tasks


def test_a_refused_form_says_why_and_records_nothing(site: Site) -> None:
    collector = site.staff("collector")
    c1 = customer_id(site.acme, "C1")
    page = f"/dashboard/debtors/{c1}"
    past = collector.form(
        f"{page}/promises", {"item": str(item(site, "F-1")), "promised_on": "2025-03-01"}, page
    )
    assert past.status_code == 422 and "La fecha ya ha pasado." in past.text
    other = collector.form(
        f"{page}/promises", {"item": str(item(site, "F-3")), "promised_on": "2025-03-10"}, page
    )  # F-3 is Beta Retail's
    assert other.status_code == 422 and "Elija un documento pendiente." in other.text
    empty = collector.form(f"{page}/notes", {"text": "   "}, page)
    assert empty.status_code == 422 and "Escriba algo." in empty.text
    when = collector.form(f"{page}/tasks", {"message": "x", "due_on": "tomorrow"}, page)
    assert when.status_code == 422 and "Indique una fecha" in when.text
    with site.acme.engine.connect() as conn:
        assert conn.execute(select(t.promises)).first() is None
        assert conn.execute(select(t.debtor_notes)).first() is None
