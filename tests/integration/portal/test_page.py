"""What the page of a claim's link shows, in the debtor's language, and what opening it records."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy import text as sa_text

import documents
from cobro.engine.runs import run_day
from cobro.store import tables as t

from ..support import business, captured, d, invoice, money, plain
from .conftest import MakePortal, Portal
from .helpers import IBAN, LINK, evidence_kinds, outbox_id, rows

# The starter has no logo; these tests give the company one hosted elsewhere.
HOSTED_LOGO = {"  branding:\n": "  branding:\n    logo_url: https://demo.example/logo.png\n"}


def text_of(page: str) -> str:
    """The page's text, tags removed, entities decoded, white space (not the no-break spaces
    of amounts) collapsed."""
    return re.sub(r"[ \t\r\n]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def test_the_link_in_a_real_runs_email_opens_the_debtors_page(make_portal: MakePortal) -> None:
    portal = make_portal(replace=HOSTED_LOGO)
    page = portal.browser().get(f"/portal/{portal.token}")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = text_of(page.text)
    assert "Acme Industrial" in text and "(C1)" in text
    assert "Distribuciones Demo S.L." in text  # the company's name and footer
    assert 'src="https://demo.example/logo.png"' in page.text  # branding.logo_url


def test_the_page_lists_every_open_item_with_its_status_and_totals_per_currency(
    portal: Portal,
) -> None:
    page = portal.browser().get(f"/portal/{portal.token}").text
    text = text_of(page)

    # es_ES (the company's locale; the debtor has no language of their own)
    for number in ("F-1", "F-2", "F-3"):
        assert number in text
    assert "20 feb 2025" in text and "10 mar 2025" in text
    assert money("100.00") in text and money("250.50") in text and money("50.00", "USD") in text
    assert "Vencido" in text and "Por vencer" in text
    overdue = re.findall(r'data-label="Días vencido" class="num">([^<]*)<', page)
    assert overdue == ["12", "—", "—"]  # F-1: due 20 Feb, today 4 Mar
    assert f"Total pendiente {money('350.50')}" in text
    assert f"Total pendiente {money('50.00', 'USD')}" in text
    assert money("400.50") not in text  # currencies are never added together
    assert "G-1" not in text and "Other Co" not in text  # one debtor's data only


def test_the_page_shows_the_claim_that_brought_the_debtor_with_its_text_as_sent(
    portal: Portal,
) -> None:
    text = text_of(portal.browser().get(f"/portal/{portal.token}").text)

    # The phase's name in the page's language (cobro.yaml's `names`), else its `name`.
    assert "Deuda que vence en los próximos 7 días" in text
    assert "Debt due in the next 7 days" not in text
    english = text_of(portal.browser().get(f"/portal/{portal.token}?lang=en").text)
    assert "Debt due in the next 7 days" in english
    assert "3 de marzo de 2025" in text  # the day it went out, company time
    assert "Estimado/a Acme Industrial" in text  # the text/plain part of the email sent
    assert "Le recordamos que los siguientes documentos vencen" in text


def test_the_page_speaks_the_debtors_language_and_switches_on_request(portal: Portal) -> None:
    browser = portal.browser()
    es = text_of(browser.get(f"/portal/{portal.token}").text)
    en = text_of(browser.get(f"/portal/{portal.token}?lang=en").text)

    assert "Sus documentos pendientes" in es and "Your open items" not in es
    assert "Your open items" in en and "Total outstanding" in en and "Not yet due" in en
    assert "Mar 10, 2025" in en and "€350.50" in en  # English formats
    with portal.ws.engine.begin() as conn:
        conn.execute(t.customers.update().values(language="en"))
    own = text_of(browser.get(f"/portal/{portal.token}").text)
    assert "Your open items" in own and "I have read this message" in own
    back = text_of(browser.get(f"/portal/{portal.token}?lang=es").text)
    assert "He leído este mensaje" in back


def test_opening_the_page_records_an_opened_view_once_an_hour_per_browser_and_never_a_read(
    portal: Portal,
) -> None:
    scanner = portal.browser(ip="198.51.100.20", user_agent="MailScanner/2.0")
    scanner.get(f"/portal/{portal.token}")
    scanner.get(f"/portal/{portal.token}")  # reloaded: not opened again
    phone = portal.browser(ip="198.51.100.21", user_agent="Phone/1.0")
    phone.get(f"/portal/{portal.token}")  # another browser
    portal.clock.now += timedelta(minutes=61)
    scanner.get(f"/portal/{portal.token}")  # an hour later

    views = rows(portal.ws, t.claim_views)
    assert [(v.kind, v.ip, v.user_agent) for v in views] == [
        ("opened", "198.51.100.20", "MailScanner/2.0"),
        ("opened", "198.51.100.21", "Phone/1.0"),
        ("opened", "198.51.100.20", "MailScanner/2.0"),
    ]
    assert all(v.outbox_id == outbox_id(portal.ws, "C1") for v in views)
    assert evidence_kinds(portal.ws).count("claim.opened") == 3
    assert "claim.read" not in evidence_kinds(portal.ws)


def test_pay_buttons_one_per_currency_carry_the_encoded_reference_and_open_balance(
    portal: Portal,
) -> None:
    page = portal.browser().get(f"/portal/{portal.token}").text
    claim = outbox_id(portal.ws, "C1")

    urls = [html.unescape(u) for u in re.findall(r'href="(https://pay\.example\.com[^"]+)"', page)]
    queries = sorted((parse_qs(urlsplit(u).query) for u in urls), key=lambda q: q["cur"])
    assert queries == [
        {"ref": [f"C1-{claim}"], "amount": ["350.50"], "cur": ["EUR"], "c": ["C1"]},
        {"ref": [f"C1-{claim}"], "amount": ["50.00"], "cur": ["USD"], "c": ["C1"]},
    ]
    text = text_of(page)
    assert f"Pagar {money('350.50')}" in text and f"Pagar {money('50.00', 'USD')}" in text
    assert IBAN in text and "CAIXESBBXXX" in text and "CaixaBank" in text
    assert f"Concepto a indicar C1-{claim}" in text


def test_values_in_the_payment_page_pattern_are_url_encoded(make_portal: MakePortal) -> None:
    portal = make_portal()
    business(portal.ws, "ACME & Co/7", "ap@acme-co.example", "Acme & Co")
    invoice(portal.ws, "H-1", "ACME & Co/7", d("2025-04-01"), "1234.5")
    run_day(portal.ws, d("2025-03-25"))  # phase 00 of H-1
    (mail,) = [m for m in captured(portal.ws) if "acme-co" in str(m["To"])]
    token = LINK.search(plain(mail)).group(1)  # type: ignore[union-attr]

    page = portal.browser().get(f"/portal/{token}").text

    claim = outbox_id(portal.ws, "ACME & Co/7")
    (url,) = re.findall(r'href="(https://pay\.example\.com[^"]+)"', page)
    assert html.unescape(url) == (
        f"https://pay.example.com/checkout?ref=ACME%20%26%20Co%2F7-{claim}"
        "&amount=1234.50&cur=EUR&c=ACME%20%26%20Co%2F7"
    )


def test_without_a_payment_page_or_bank_details_neither_is_shown(make_portal: MakePortal) -> None:
    portal = make_portal(portal_yaml=False)

    page = portal.browser().get(f"/portal/{portal.token}")

    assert page.status_code == 200
    assert "pay.example.com" not in page.text and "IBAN" not in page.text
    assert 'id="pay"' not in page.text


def test_the_page_of_a_later_claim_lists_the_dates_of_the_earlier_ones(portal: Portal) -> None:
    run_day(portal.ws, d("2025-03-17"))  # phase 01: F-2 and F-3 7 days overdue
    later = [m for m in captured(portal.ws) if "acme" in str(m["To"])][-1]
    token = LINK.search(plain(later)).group(1)  # type: ignore[union-attr]
    assert token != portal.token
    portal.clock.now = portal.clock.now.replace(day=18)

    newer = text_of(portal.browser().get(f"/portal/{token}").text)
    older = text_of(portal.browser().get(f"/portal/{portal.token}").text)

    assert (
        "Mensajes anteriores 3 de marzo de 2025 · Deuda que vence en los próximos 7 días" in newer
    )
    assert "17 de marzo de 2025" in newer  # the claim of this link
    assert "Mensajes anteriores Ninguno." in older  # a later claim is not an earlier one


def test_every_response_carries_the_security_headers(make_portal: MakePortal) -> None:
    plain = make_portal().browser().get("/healthz").headers["content-security-policy"]
    assert "img-src 'self';" in plain  # no logo hosted elsewhere: no other host
    portal = make_portal(replace=HOSTED_LOGO)
    browser = portal.browser()
    for url in (f"/portal/{portal.token}", "/portal/not-a-token", "/healthz", "/static/portal.css"):
        response = browser.get(url)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert "img-src 'self' https://demo.example" in csp  # the logo's host
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
    for url in (f"/portal/{portal.token}", "/portal/not-a-token"):
        assert browser.get(url).headers["cache-control"] == "no-store"


def test_the_pages_need_no_script_and_fit_a_phone(portal: Portal) -> None:
    browser = portal.browser()
    page = browser.get(f"/portal/{portal.token}").text
    css = browser.get("/static/portal.css")

    assert "<script" not in page and " style=" not in page  # nothing the CSP would block
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media (max-width: 700px)" in css.text
    assert 'data-label="Vencimiento"' in page  # what each cell is called on a phone


def test_the_company_colour_and_logo_file_are_served(make_portal: MakePortal) -> None:
    portal = make_portal(
        replace={
            "    # logo_file: logo.png": "    logo_file: logo.png",
            'color: "#0b5394"': 'color: "#aa3300"',
        }
    )
    (portal.ws.root / "logo.png").write_bytes(documents.png())
    browser = portal.browser()

    page = browser.get(f"/portal/{portal.token}").text
    logo = browser.get("/brand/demo/logo")
    style = browser.get("/brand/demo/style.css")

    assert 'src="/brand/demo/logo"' in page
    assert logo.status_code == 200 and logo.headers["content-type"] == "image/png"
    assert logo.content == documents.png()
    assert style.text.strip() == ":root { --brand: #aa3300; }"


def test_healthz_answers_ok(portal: Portal) -> None:
    response = portal.browser().get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_a_fault_is_a_plain_500_with_the_security_headers_and_no_traceback(
    portal: Portal,
) -> None:
    import anyio
    import httpx

    with portal.ws.engine.begin() as conn:
        conn.execute(sa_text("DROP TABLE claim_views"))  # every page open now fails

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=portal.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
            return await c.get(f"/portal/{portal.token}")

    response = anyio.run(get)

    assert response.status_code == 500
    assert response.text == "Internal Server Error\n"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def pdf_text(data: bytes) -> str:
    from io import BytesIO

    from pypdf import PdfReader

    return " ".join(page.extract_text() for page in PdfReader(BytesIO(data)).pages)


def test_the_statement_pdf_lists_the_debtors_open_items_in_the_pages_language(
    portal: Portal,
) -> None:
    browser = portal.browser()
    page = browser.get(f"/portal/{portal.token}").text
    assert f'href="/portal/{portal.token}/statement.pdf"' in page

    spanish = browser.get(f"/portal/{portal.token}/statement.pdf")
    assert spanish.status_code == 200
    assert spanish.headers["content-type"] == "application/pdf"
    assert (
        spanish.headers["content-disposition"]
        == 'attachment; filename="estado-de-cuenta-C1-2025-03-04.pdf"'
    )
    text = pdf_text(spanish.content)
    assert "Estado de cuenta" in text and "Acme Industrial" in text
    assert all(number in text for number in ("F-1", "F-2", "F-3"))
    assert "G-1" not in text and "Other Co" not in text  # another debtor's item

    english_page = browser.get(f"/portal/{portal.token}?lang=en").text
    assert f'href="/portal/{portal.token}/statement.pdf?lang=en"' in english_page
    english = browser.get(f"/portal/{portal.token}/statement.pdf?lang=en")
    assert "Statement of account" in pdf_text(english.content)
    assert "statement-C1-2025-03-04.pdf" in english.headers["content-disposition"]


def test_a_page_shown_before_shows_every_change_made_since_by_anyone(portal: Portal) -> None:
    """The page is rendered once per version of its data: a payment imported, a dispute
    opened by staff and resolved, a promise taken by phone (all written by other processes
    than the server's, at the same instant) each show on the next request."""
    from cobro.engine.responses import add_promise, open_dispute, resolve_dispute

    from ..support import LOADED, pay
    from .helpers import receivable_id

    ws, browser, url = portal.ws, portal.browser(), f"/portal/{portal.token}"
    customer, f2 = rows(ws, t.customers)[0].id, receivable_id(ws, "F-2")
    first = browser.get(url).text
    again = browser.get(url).text
    pay(ws, "P-1", "C1", "100.00", d("2025-03-04"), receivable="F-1", now=LOADED)
    paid = browser.get(url).text
    with ws.engine.begin() as conn:
        dispute = open_dispute(conn, ws.company_id, customer, f2, "wrong", LOADED, source="staff")
    disputed = browser.get(url).text
    with ws.engine.begin() as conn:
        resolve_dispute(conn, ws.company_id, dispute, False, None, LOADED)
    resolved = browser.get(url).text
    with ws.engine.begin() as conn:
        add_promise(
            conn,
            ws.company_id,
            customer,
            [f2],
            d("2025-03-20"),
            3,
            LOADED,
            today=d("2025-03-04"),
            max_days=30,
            source="staff",
        )
    promised = browser.get(url).text

    assert again == first
    assert first.count("F-1") > 1 and paid.count("F-1") == 1  # only the claim's text keeps it
    assert "En disputa" not in text_of(paid) and "En disputa" in text_of(disputed)
    assert "En disputa" not in text_of(resolved)  # rejected: claimed again
    assert "Pago prometido" not in text_of(resolved) and "Pago prometido" in text_of(promised)


def test_two_browsers_get_one_page_each_with_its_own_form_token(portal: Portal) -> None:
    from .helpers import CSRF

    first, second = portal.browser(), portal.browser(ip="198.51.100.9")
    token_one = CSRF.findall(first.get(f"/portal/{portal.token}").text)
    token_two = CSRF.findall(second.get(f"/portal/{portal.token}").text)

    assert token_one and token_two and set(token_one).isdisjoint(token_two)
    read = second.post(f"/portal/{portal.token}/read", data={"csrf": token_two[0]})
    foreign = first.post(f"/portal/{portal.token}/read", data={"csrf": token_two[0]})
    assert read.status_code == 303 and foreign.status_code == 403


def test_a_page_shown_before_is_refused_once_its_claim_is_no_longer_the_debtors(
    portal: Portal,
) -> None:
    """The server keeps which debtor a link named; the next request still proves it (the
    claim's row, of that debtor and company), so a claim removed or moved by another
    process shows no data."""
    ws, browser, url = portal.ws, portal.browser(), f"/portal/{portal.token}"
    shown, claim = browser.get(url), outbox_id(ws, "C1")
    with ws.engine.begin() as conn:
        first = conn.execute(select(t.customers).where(t.customers.c.external_id == "C1")).one()
        other = conn.execute(
            insert(t.customers).values(
                company_id=ws.company_id,
                external_id="C-other",
                name="Otro",
                created_at=first.created_at,
                updated_at=first.updated_at,
            )
        ).inserted_primary_key[0]
        conn.execute(update(t.outbox).where(t.outbox.c.id == claim).values(customer_id=other))
    moved = browser.get(url)

    assert shown.status_code == 200 and "Acme Industrial" in shown.text
    assert moved.status_code == 404 and "Acme Industrial" not in moved.text


def test_a_visit_recorded_meanwhile_by_another_server_process_is_not_recorded_again(
    portal: Portal,
) -> None:
    # Two processes of one server (``cobro serve --workers``), each with a browser it has
    # not seen: both look, find no visit recorded, and record one. The database decides:
    # checked again under the company's write lock, the second finds the first's.
    from cobro.engine.links import read_token
    from cobro.engine.responses import Client
    from cobro.web.portal.queries import find_debtor
    from cobro.web.portal.routes import record_opened

    state = portal.app.state.cobro.default
    company = state.ws.config.company
    link = read_token(
        state.ws.secret, portal.token, company.id, state.now(), company.link_max_age_days
    )
    client = Client("198.51.100.30", "Phone/1.0")
    with state.ws.engine.connect() as conn:
        debtor = find_debtor(conn, state.ws.company_id, link)
    assert debtor is not None
    first_at = portal.clock.now
    later = first_at + timedelta(seconds=2)

    with state.ws.engine.begin() as conn:
        first = record_opened(conn, state, debtor, client, first_at)
    with state.ws.engine.begin() as conn:
        second = record_opened(conn, state, debtor, client, later)
    with state.ws.engine.begin() as conn:  # another browser: its own visit
        other = record_opened(conn, state, debtor, Client("198.51.100.30", "Laptop/2.0"), later)

    assert first == first_at and second == first_at and other == later
    views = rows(portal.ws, t.claim_views)
    assert [(v.kind, v.user_agent) for v in views] == [
        ("opened", "Phone/1.0"),
        ("opened", "Laptop/2.0"),
    ]
    assert evidence_kinds(portal.ws).count("claim.opened") == 2
