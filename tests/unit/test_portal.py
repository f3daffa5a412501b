"""The portal's pure parts: the payment page's URL, the reader's language, attachments."""

from __future__ import annotations

from datetime import date

import pytest
from starlette.datastructures import FormData

import documents
from cobro.domain.money import Money
from cobro.web.pages import reader_language
from cobro.web.portal.forms import Upload, attachment_problem, read_dispute, read_promise
from cobro.web.portal.labels import LANGUAGES, PORTAL_LABELS, words
from cobro.web.portal.payment import pay_buttons, pay_url, reference

PATTERN = "https://pay.example.com/c?ref={reference}&amount={amount}&cur={currency}&who={customer}"


def test_the_pay_url_fills_every_field_url_encoded() -> None:
    url = pay_url(PATTERN, reference("A&B/7 ñ", 42), Money.of("1234.5", "EUR"), "A&B/7 ñ")
    assert url == (
        "https://pay.example.com/c?ref=A%26B%2F7%20%C3%B1-42&amount=1234.50&cur=EUR"
        "&who=A%26B%2F7%20%C3%B1"
    )


def test_the_amount_is_a_plain_decimal_in_the_currencys_precision() -> None:
    assert "amount=1500&" in pay_url(PATTERN, "R", Money.of("1500", "JPY"), "C")
    assert "amount=0.10&" in pay_url(PATTERN, "R", Money.of("0.1", "USD"), "C")


def test_one_button_per_currency_with_a_balance_and_none_without_a_pattern() -> None:
    due = [Money.of("10", "EUR"), Money.of("0", "GBP"), Money.of("5", "USD")]
    assert [b.amount.currency for b in pay_buttons(PATTERN, "R", "C", due)] == ["EUR", "USD"]
    assert pay_buttons(None, "R", "C", due) == []


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((None, None), ("es", "es_ES")),  # the company's language and locale
        ((None, "en"), ("en", "en")),
        ((None, "en_GB"), ("en", "en_GB")),
        ((None, "es"), ("es", "es_ES")),
        ((None, "fr"), ("es", "es_ES")),  # a language the portal does not speak
        (("en", "es"), ("en", "en")),  # ?lang= wins over the debtor's language
        ((None, "not a locale"), ("es", "es_ES")),
    ],
)
def test_the_page_language_is_the_asked_then_the_debtors_then_the_companys(
    codes: tuple[str | None, str | None], expected: tuple[str, str]
) -> None:
    assert reader_language("es_ES", LANGUAGES, *codes) == expected


def test_a_company_in_a_language_the_portal_does_not_speak_gets_english() -> None:
    assert reader_language("fr_FR", LANGUAGES, None) == ("en", "en")


def test_the_portal_has_every_word_in_every_language() -> None:
    assert set(PORTAL_LABELS["es"]) == set(PORTAL_LABELS["en"])
    assert words("de") == PORTAL_LABELS["en"]


def test_attachments_are_told_by_their_content() -> None:
    assert attachment_problem(documents.pdf()) == ("application/pdf", ".pdf")
    assert attachment_problem(documents.png()) == ("image/png", ".png")
    assert attachment_problem(documents.jpeg()) == ("image/jpeg", ".jpg")
    assert "cross-reference" in str(attachment_problem(b"%PDF-1.4\n<html>"))
    assert "PNG" in str(attachment_problem(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40))
    assert attachment_problem(b"<html>") == "it is not a PDF, PNG or JPEG file"
    assert attachment_problem(documents.docx()) == "it is not a PDF, PNG or JPEG file"


def test_an_attachments_name_loses_its_folders_and_takes_its_contents_suffix() -> None:
    form = FormData([("item", "1"), ("reason", "x")])
    for given, expected in (
        ("../../etc/passwd", "passwd.png"),
        ("C:\\Users\\me\\scan.jpeg", "scan.png"),
        ("", "attachment.png"),
        ("photo.exe", "photo.png"),
    ):
        found = read_dispute(form, Upload(given, documents.png()), {1}, 64, words("en"))
        assert found.attachment is not None and found.attachment.name == expected, given


def test_a_promise_form_reads_its_items_date_and_note() -> None:
    form = FormData([("item", "2"), ("item", "1"), ("item", "2"), ("promised_on", "2025-03-10")])
    found = read_promise(form, {1, 2, 3}, date(2025, 3, 4), 30, words("en"))
    assert (found.items, found.promised_on, found.note, found.problems) == (
        [1, 2],
        date(2025, 3, 10),
        None,
        [],
    )
