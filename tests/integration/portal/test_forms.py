"""What a debtor does on the page: confirm reading, dispute an item, promise to pay; each
recorded with its evidence, and refused (nothing recorded) without the page's form token or
with input that is not right."""

from __future__ import annotations

import hashlib
import zlib
from datetime import date, timedelta
from typing import Any

import pytest

import documents
from cobro.store import tables as t

from .conftest import MakePortal, Portal
from .helpers import evidence_kinds, outbox_id, receivable_id, rows

TODAY = date(2025, 3, 4)  # the portal's clock, company time


def nothing_recorded(portal: Portal, opened: int = 1) -> None:
    """No read, dispute, promise or task; only the ``opened`` views of the page."""
    views = rows(portal.ws, t.claim_views)
    assert [v.kind for v in views] == ["opened"] * opened
    assert rows(portal.ws, t.disputes) == [] and rows(portal.ws, t.promises) == []
    assert rows(portal.ws, t.promise_items) == [] and rows(portal.ws, t.tasks) == []
    kinds = evidence_kinds(portal.ws)
    assert not {"claim.read", "dispute.opened", "promise.made"} & set(kinds)


# --------------------------------------------------------------------------- reading


def test_confirming_reading_records_a_read_with_address_and_user_agent(portal: Portal) -> None:
    browser = portal.browser(ip="192.0.2.44", user_agent="Firefox/128.0 (debtor)")
    csrf = browser.csrf(portal.token)

    response = browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf})

    assert response.status_code == 303
    assert response.headers["location"] == f"/portal/{portal.token}?done=read"
    views = rows(portal.ws, t.claim_views)
    assert [(v.kind, v.ip, v.user_agent) for v in views] == [
        ("opened", "192.0.2.44", "Firefox/128.0 (debtor)"),
        ("read", "192.0.2.44", "Firefox/128.0 (debtor)"),
    ]
    assert views[1].outbox_id == outbox_id(portal.ws, "C1")
    assert views[1].at == portal.clock.now
    e = t.evidence.c
    with portal.ws.engine.connect() as conn:
        entry = conn.execute(t.evidence.select().where(e.kind == "claim.read")).one()
    assert entry.ref == f"outbox:{outbox_id(portal.ws, 'C1')}"
    assert '"ip": "192.0.2.44"' in entry.payload and "Firefox/128.0 (debtor)" in entry.payload


def test_after_confirming_the_page_says_so_and_records_no_further_opening(portal: Portal) -> None:
    browser = portal.browser()
    csrf = browser.csrf(portal.token)
    browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf})

    page = browser.get(f"/portal/{portal.token}?done=read")

    assert "Gracias: queda registrada su lectura de este mensaje." in page.text
    assert "Confirmó la lectura de este mensaje el 4 de marzo de 2025" in page.text
    assert "He leído este mensaje</button>" not in page.text
    assert [v.kind for v in rows(portal.ws, t.claim_views)] == ["opened", "read"]


# --------------------------------------------------------------------------- CSRF


def test_a_form_without_its_token_is_refused_with_403(portal: Portal) -> None:
    browser = portal.browser()
    browser.csrf(portal.token)  # has the cookie, not sending the token
    item = receivable_id(portal.ws, "F-1")
    for form, data in (
        ("read", {}),
        ("disputes", {"item": str(item), "reason": "Not ours"}),
        ("promises", {"item": str(item), "promised_on": "2025-03-20"}),
    ):
        response = browser.post(f"/portal/{portal.token}/{form}", data=data)
        assert response.status_code == 403, form
        assert "No se ha podido aceptar este formulario" in response.text
    nothing_recorded(portal)


def test_a_form_token_is_bound_to_its_browser_and_its_link(portal: Portal) -> None:
    browser = portal.browser()
    csrf = browser.csrf(portal.token)
    other_debtor = portal.browser()
    other_csrf = other_debtor.csrf(portal.tokens["C2"])

    stranger = portal.browser()  # no cookie: a forged cross-site POST
    assert stranger.post(f"/portal/{portal.token}/read", data={"csrf": csrf}).status_code == 403
    # the token of C2's page, sent from C2's browser to C1's link
    refused = other_debtor.post(f"/portal/{portal.token}/read", data={"csrf": other_csrf})
    assert refused.status_code == 403
    # C1's browser, another browser's cookie
    browser.cookies.set("cobro_browser", "A" * 32, domain="portal.test", path="/portal/")
    assert browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf}).status_code == 403
    assert [v.kind for v in rows(portal.ws, t.claim_views)] == ["opened", "opened"]


def test_the_browser_cookie_is_http_only_and_same_site_strict(portal: Portal) -> None:
    response = portal.browser().get(f"/portal/{portal.token}")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("cobro_browser=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/portal/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure


def test_over_https_the_browser_cookie_is_secure(portal: Portal) -> None:
    response = portal.browser().get(
        f"https://portal.test/portal/{portal.token}", headers={"host": "portal.test"}
    )
    assert "Secure" in response.headers["set-cookie"]


# --------------------------------------------------------------------------- disputes


def dispute(portal: Portal, browser: Any = None, **fields: Any) -> Any:
    browser = browser or portal.browser()
    csrf = browser.csrf(portal.token)
    files = fields.pop("files", None)
    data = {"csrf": csrf, **fields}
    return browser.post(f"/portal/{portal.token}/disputes", data=data, files=files)


def test_a_dispute_with_a_pdf_is_recorded_with_evidence_and_a_staff_task(portal: Portal) -> None:
    browser = portal.browser(ip="192.0.2.9", user_agent="Safari/17")
    item = receivable_id(portal.ws, "F-1")
    pdf = documents.pdf()

    response = dispute(
        portal,
        browser,
        item=str(item),
        reason="Delivery never arrived",
        files={"attachment": ("../../etc/albarán.PDF", pdf, "text/html")},
    )

    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=dispute")
    (row,) = rows(portal.ws, t.disputes)
    assert (row.receivable_id, row.reason, row.source, row.status) == (
        item,
        "Delivery never arrived",
        "portal",
        "open",
    )
    assert (row.outbox_id, row.ip, row.user_agent) == (
        outbox_id(portal.ws, "C1"),
        "192.0.2.9",
        "Safari/17",
    )
    assert (row.attachment_name, row.attachment_type) == ("albarán.pdf", "application/pdf")
    assert zlib.decompress(row.attachment_zlib) == pdf
    assert row.attachment_sha256 == hashlib.sha256(pdf).hexdigest()
    assert "dispute.opened" in evidence_kinds(portal.ws)
    (task,) = rows(portal.ws, t.tasks)
    assert task.action_key == f"dispute/{row.id}" and "F-1" in task.message
    page = browser.get(response.headers["location"]).text
    assert "Gracias: queda registrada su disputa." in page
    assert '<tr class="status-disputed">' in page and "En disputa" in page


@pytest.mark.parametrize("image", ["png", "jpeg"])
def test_a_dispute_may_carry_an_image(portal: Portal, image: str) -> None:
    data = getattr(documents, image)()
    response = dispute(
        portal,
        item=str(receivable_id(portal.ws, "F-2")),
        reason="Wrong price",
        files={"attachment": ("photo", data, "application/octet-stream")},
    )
    assert response.status_code == 303
    (row,) = rows(portal.ws, t.disputes)
    assert row.attachment_type == f"image/{image}"
    assert row.attachment_name == ("photo.png" if image == "png" else "photo.jpg")


def test_a_dispute_without_an_attachment_is_recorded(portal: Portal) -> None:
    response = dispute(
        portal,
        item=str(receivable_id(portal.ws, "F-3")),
        reason="Already paid by card",
        files={"attachment": ("", b"", "application/octet-stream")},  # no file chosen
    )
    assert response.status_code == 303
    (row,) = rows(portal.ws, t.disputes)
    assert row.attachment_name is None and row.attachment_zlib is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item": "F-1", "reason": "   "}, "Indique el motivo de la disputa."),
        ({"item": "999999", "reason": "Not ours"}, "Elija uno de sus documentos pendientes."),
        ({"item": "not-a-number", "reason": "Not ours"}, "Elija uno de sus documentos"),
        ({"item": "G-1", "reason": "Not ours"}, "Elija uno de sus documentos pendientes."),
        (
            {"item": "F-1", "reason": "x", "files": {"attachment": ("a.pdf", b"%PDF-1.4 <html>")}},
            "El adjunto debe ser un archivo PDF, PNG o JPEG",
        ),
        (
            {"item": "F-1", "reason": "x", "files": {"attachment": ("a.exe", b"MZ\x90\x00")}},
            "El adjunto debe ser un archivo PDF, PNG o JPEG: it is not a PDF, PNG or JPEG file",
        ),
        (
            {"item": "F-1", "reason": "x", "files": {"attachment": ("a.pdf", b"%PDF" * 17000)}},
            "El adjunto es demasiado grande: como máximo 64 KB.",
        ),
        (
            {"item": "F-1", "reason": "x", "files": {"attachment": ("a.pdf", b"0" * 200_000)}},
            "El adjunto es demasiado grande: como máximo 64 KB.",
        ),
    ],
    ids=["no-reason", "unknown", "malformed", "other-debtor", "fake-pdf", "exe", "big", "huge"],
)
def test_a_dispute_that_is_not_right_shows_the_form_again_and_records_nothing(
    portal: Portal, fields: dict[str, Any], message: str
) -> None:
    number = fields["item"]
    if number in ("F-1", "G-1"):
        fields = {**fields, "item": str(receivable_id(portal.ws, number))}

    response = dispute(portal, **fields)

    assert response.status_code == 422
    assert message in response.text
    assert "<details open>" in response.text  # the form is shown open, with what was typed
    nothing_recorded(portal)


def test_an_item_already_disputed_cannot_be_disputed_again(portal: Portal) -> None:
    item = str(receivable_id(portal.ws, "F-1"))
    assert dispute(portal, item=item, reason="Not ours").status_code == 303

    again = dispute(portal, item=item, reason="Still not ours")

    assert again.status_code == 422
    assert len(rows(portal.ws, t.disputes)) == 1


def test_with_disputes_off_the_form_is_hidden_and_a_post_refused(make_portal: MakePortal) -> None:
    limit = "  dispute_attachment_max_kb: 64\n"
    portal = make_portal(replace={limit: f"{limit}  disputes: false\n"})
    browser = portal.browser()
    page = browser.get(f"/portal/{portal.token}").text
    assert "/disputes" not in page and "Disputar un documento" not in page

    response = dispute(portal, browser, item=str(receivable_id(portal.ws, "F-1")), reason="x")

    assert response.status_code == 403
    assert "En esta página no se admiten disputas." in response.text
    assert rows(portal.ws, t.disputes) == [] and rows(portal.ws, t.tasks) == []


# --------------------------------------------------------------------------- promises


def promise(portal: Portal, items: list[str], on: str, browser: Any = None, **more: str) -> Any:
    browser = browser or portal.browser()
    csrf = browser.csrf(portal.token)
    ids = [str(receivable_id(portal.ws, n)) if n[:2] in ("F-", "G-") else n for n in items]
    data = {"csrf": csrf, "item": ids, "promised_on": on, **more}
    return browser.post(f"/portal/{portal.token}/promises", data=data)


def test_a_promise_to_pay_items_by_a_date_is_recorded_with_evidence(portal: Portal) -> None:
    browser = portal.browser(ip="192.0.2.50", user_agent="Edge/120")
    on = (TODAY + timedelta(days=10)).isoformat()

    response = promise(portal, ["F-1", "F-2"], on, browser, note="Paying on the 14th")

    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=promise")
    (row,) = rows(portal.ws, t.promises)
    assert (row.promised_on, row.grace_days, row.source, row.status) == (
        date(2025, 3, 14),
        3,
        "portal",
        "open",
    )
    assert (row.outbox_id, row.ip, row.user_agent, row.note) == (
        outbox_id(portal.ws, "C1"),
        "192.0.2.50",
        "Edge/120",
        "Paying on the 14th",
    )
    items = rows(portal.ws, t.promise_items)
    assert sorted((i.receivable_id, i.balance_minor) for i in items) == sorted(
        [(receivable_id(portal.ws, "F-1"), 10000), (receivable_id(portal.ws, "F-2"), 25050)]
    )
    assert "promise.made" in evidence_kinds(portal.ws)
    page = browser.get(response.headers["location"]).text
    assert "Gracias: queda registrada su promesa de pago." in page
    assert page.count("Pago prometido para el 14 mar 2025") == 2


def test_a_promise_may_be_for_today_or_the_last_day_allowed(portal: Portal) -> None:
    assert promise(portal, ["F-1"], TODAY.isoformat()).status_code == 303
    assert promise(portal, ["F-2"], (TODAY + timedelta(days=30)).isoformat()).status_code == 303
    assert len(rows(portal.ws, t.promises)) == 2


@pytest.mark.parametrize(
    ("items", "on", "message"),
    [
        (["F-1"], "2025-03-03", "La fecha de pago no puede haber pasado ya."),
        (["F-1"], "2025-04-04", "La fecha de pago puede ser como máximo dentro de 30 días."),
        (["F-1"], "14/03/2025", "Indique como fecha el día en que pagará."),
        (["F-1"], "", "Indique como fecha el día en que pagará."),
        ([], "2025-03-14", "Elija al menos uno de sus documentos pendientes."),
        (["F-1", "G-1"], "2025-03-14", "Elija uno de sus documentos pendientes."),
        (["999999"], "2025-03-14", "Elija uno de sus documentos pendientes."),
        (["x"], "2025-03-14", "Elija uno de sus documentos pendientes."),
    ],
    ids=["past", "too-far", "not-iso", "no-date", "no-items", "other-debtor", "unknown", "bad"],
)
def test_a_promise_that_is_not_right_shows_the_form_again_and_records_nothing(
    portal: Portal, items: list[str], on: str, message: str
) -> None:
    response = promise(portal, items, on)

    assert response.status_code == 422
    assert message in response.text
    nothing_recorded(portal)


def test_a_disputed_item_is_not_offered_for_a_promise(portal: Portal) -> None:
    item = str(receivable_id(portal.ws, "F-1"))
    dispute(portal, item=item, reason="Not ours")

    response = promise(portal, ["F-1"], "2025-03-14")

    assert response.status_code == 422
    assert rows(portal.ws, t.promises) == []


def test_the_pages_forms_work_in_english_too(portal: Portal) -> None:
    browser = portal.browser()
    page = browser.get(f"/portal/{portal.token}?lang=en").text
    assert f'action="/portal/{portal.token}/promises?lang=en"' in page
    csrf = browser.csrf(portal.token)

    response = browser.post(
        f"/portal/{portal.token}/promises?lang=en",
        data={"csrf": csrf, "item": [], "promised_on": "2025-03-14"},
    )

    assert response.status_code == 422
    assert "Please choose at least one of your open items." in response.text


# --------------------------------------------------------------------------- sizes


def test_a_form_larger_than_a_form_can_be_is_refused_unread(portal: Portal) -> None:
    browser = portal.browser()
    csrf = browser.csrf(portal.token)
    padding = "x" * 70_000

    read = browser.post(f"/portal/{portal.token}/read", data={"csrf": csrf, "pad": padding})
    promised = browser.post(
        f"/portal/{portal.token}/promises",
        data={"csrf": csrf, "item": str(receivable_id(portal.ws, "F-1")), "note": padding},
    )

    assert read.status_code == promised.status_code == 413
    assert "No se ha podido leer este formulario" in read.text
    nothing_recorded(portal)


def test_a_form_sent_without_its_length_is_refused(portal: Portal) -> None:
    browser = portal.browser()
    csrf = browser.csrf(portal.token)

    async def chunks() -> Any:
        yield f"csrf={csrf}".encode()

    response = browser.post(
        f"/portal/{portal.token}/read",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 411
    nothing_recorded(portal)
