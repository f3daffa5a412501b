"""Templates are sandboxed and localised; email headers cannot be injected."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobro.domain.money import Money
from cobro.errors import PermanentFailure, TemplateError
from cobro.render.mime import Envelope, FilePart, InlinePart, build_email
from cobro.render.templates import TemplateSet


def context(locale: str, **over: Any) -> dict[str, Any]:
    item = {
        "number": "F-1",
        "kind": "invoice",
        "invoice_number": None,
        "description": None,
        "due_on": date(2026, 1, 5),
        "days_overdue": 3,
        "amount": Money.of("1234.50", "EUR"),
        "balance": Money.of("1234.50", "EUR"),
    }
    ctx: dict[str, Any] = {
        "locale": locale,
        "company": {"name": "ACME", "color": "#112233", "logo_url": None, "footer": None},
        "customer": {"name": "Cliente <b>uno</b>", "external_id": "C1"},
        "recipient": {"name": "Cliente <b>uno</b>", "internal": False, "staff_copy": False},
        "phase": {"key": "01", "name": "x"},
        "mode": "full",
        "items": [item],
        "totals": [item["balance"]],
        "pay_url": "https://pay.example/p/tok",
        "crm_url": None,
        "today": date(2026, 1, 8),
    }
    ctx.update(over)
    return ctx


def test_spanish_message_formats_amounts_and_dates_in_spanish() -> None:
    r = TemplateSet().render("b2b_01", "es", context("es_ES"))
    assert "1234,50\xa0€" in r.text.replace(".", "")  # 1.234,50 €
    assert "5 ene 2026" in r.text
    assert r.subject == "ACME: pago vencido"
    assert "Pagar ahora: https://pay.example/p/tok" in r.text


def test_english_message_formats_amounts_and_dates_in_english() -> None:
    r = TemplateSet().render("b2b_01", "en", context("en_US"))
    assert "€1,234.50" in r.text
    assert "Jan 5, 2026" in r.text
    assert r.subject == "ACME: overdue payment"


def test_data_is_escaped_in_html_but_not_in_text() -> None:
    r = TemplateSet().render("b2b_01", "en", context("en_US"))
    assert "Cliente &lt;b&gt;uno&lt;/b&gt;" in r.html
    assert "<b>uno</b>" not in r.html
    assert "Cliente <b>uno</b>" in r.text


def test_link_mode_shows_the_portal_link_and_no_table() -> None:
    r = TemplateSet().render("b2b_04", "en", context("en_US", mode="link"))
    assert "F-1" not in r.text
    assert "View your account: https://pay.example/p/tok" in r.text


def test_missing_language_falls_back_to_the_default() -> None:
    r = TemplateSet(default_language="es").render("b2b_01", "fr", context("fr_FR"))
    assert r.subject == "ACME: pago vencido"


def test_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil.en.j2").write_text(
        '{% extends "_layout.j2" %}{% block subject %}x{% endblock %}'
        "{% block claim %}{{ company.__class__.__mro__[1].__subclasses__() }}{% endblock %}",
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match=r"evil\.en\.j2"):
        TemplateSet(tmp_path).render("evil", "en", context("en_US"))


def test_undefined_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "typo.en.j2").write_text(
        '{% extends "_layout.j2" %}{% block subject %}{{ custmer.name }}{% endblock %}',
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match="custmer"):
        TemplateSet(tmp_path).render("typo", "en", context("en_US"))


def test_workspace_template_overrides_the_bundled_one(tmp_path: Path) -> None:
    (tmp_path / "b2b_01.en.j2").write_text(
        '{% extends "_layout.j2" %}{% block subject %}Custom {{ company.name }}{% endblock %}'
        "{% block claim %}Hello{% endblock %}",
        encoding="utf-8",
    )
    assert TemplateSet(tmp_path).render("b2b_01", "en", context("en_US")).subject == "Custom ACME"


def envelope(**over: Any) -> Envelope:
    values: dict[str, Any] = {
        "sender_email": "cobros@acme.example",
        "sender_name": "ACME Cobros",
        "to_email": "ana@example.com",
        "to_name": "Ana",
        "reply_to": None,
        "message_id": "<cobro.1@acme.example>",
        "date": datetime(2026, 1, 8, 8, tzinfo=UTC),
    }
    values.update(over)
    return Envelope(**values)


def test_email_is_multipart_alternative_with_ids_and_company_name() -> None:
    msg = message_from_bytes(build_email(envelope(), "Hola", "text", "<p>html</p>"), policy=default)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"] == "<cobro.1@acme.example>"
    assert msg["From"].addresses[0].display_name == "ACME Cobros"
    assert msg["Date"].datetime == datetime(2026, 1, 8, 8, tzinfo=UTC)


def test_line_breaks_in_names_and_subjects_cannot_add_headers() -> None:
    raw = build_email(
        envelope(to_name="Ana\r\nBcc: evil@example.com"),
        "Hola\nBcc: evil@example.com",
        "t",
        "h",
        headers={"X-Note": "a\r\nBcc: evil@example.com"},
    )
    msg = message_from_bytes(raw, policy=default)
    assert msg["Bcc"] is None
    assert b"\nBcc:" not in raw


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=300))
def test_any_subject_is_folded_into_short_lines_and_read_back_whole(subject: str) -> None:
    raw = build_email(
        envelope(), subject + "€", "t", "h", headers={"X-Cobro-Reference": subject + "ñ"}
    )  # never plain ASCII
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if b"=?utf-8?b?" in line)
    msg = message_from_bytes(raw, policy=default)
    assert msg["Subject"] == " ".join((subject + "€").split())
    assert msg["X-Cobro-Reference"] == " ".join((subject + "ñ").split())


def test_an_address_smuggling_a_second_recipient_is_refused() -> None:
    with pytest.raises(PermanentFailure):
        build_email(envelope(to_email="ana@example.com, evil@example.com"), "s", "t", "h")
    with pytest.raises(PermanentFailure):
        build_email(envelope(to_email="ana@example.com\r\nBcc: x@example.com"), "s", "t", "h")


def test_non_ascii_names_subjects_and_bodies_survive_the_round_trip() -> None:
    raw = build_email(
        envelope(sender_name="Cobros Peña & Cía", to_name="Íñigo Muñoz"),
        "Recordatorio: pago vencido — 1.234,50 €",
        "Estimado Íñigo:\n\nLínea muy larga " + "ñ" * 200 + "\n",
        "<p>Señor</p>",
        [FilePart("recibo año.pdf", "application/pdf", b"%PDF-1.4" + bytes(range(256)))],
    )
    assert raw.isascii()
    msg = message_from_bytes(raw, policy=default)
    assert msg["From"].addresses[0].display_name == "Cobros Peña & Cía"
    assert msg["To"].addresses[0].display_name == "Íñigo Muñoz"
    assert msg["Subject"] == "Recordatorio: pago vencido — 1.234,50 €"
    body = msg.get_body(("plain",))
    assert (
        body is not None
        and body.get_content().replace("\r\n", "\n")
        == "Estimado Íñigo:\n\nLínea muy larga " + "ñ" * 200 + "\n"
    )
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "recibo año.pdf"
    assert part.get_content() == b"%PDF-1.4" + bytes(range(256))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def unpaid(reason: str | None, locale: str) -> dict[str, Any]:
    from cobro.engine.notices import notice_context

    notice = notice_context(
        {
            "event": "unpaid",
            "charge": "CH2",
            "amount": "39.90",
            "currency": "EUR",
            "reason": reason,
            "subscription": {
                "subscription": "S1",
                "plan": "Oro",
                "kind": "plan",
                "price": "39.90",
                "currency": "EUR",
                "cycle": "monthly",
            },
        }
    )
    return context(locale, notice=notice, mode="message", items=[], totals=[])


@pytest.mark.parametrize(
    ("code", "es", "en"),
    [
        ("card_declined", "Su banco ha rechazado el pago.", "Your bank declined the payment."),
        ("insufficient_funds", "no tenía saldo suficiente", "did not have enough funds"),
        ("expired_card", "La tarjeta ha caducado.", "The card has expired."),
        ("incorrect_cvc", "código de seguridad (CVC)", "security code (CVC)"),
        ("processing_error", "Un problema temporal", "A temporary problem"),
        ("do_not_honor", "allí le pueden indicar el motivo", "it can tell you why"),
        ("stolen_card", "Su banco ha rechazado el pago.", "Your bank declined the payment."),
        ("lost_card", "Su banco ha rechazado el pago.", "Your bank declined the payment."),
        ("authentication_required", "pidió confirmar el pago", "asked you to confirm"),
        ("card_declined/insufficient_funds", "saldo suficiente", "enough funds"),
        ("Expired-Card", "La tarjeta ha caducado.", "The card has expired."),
        ("weird_gateway_code_42", "No se ha podido completar el pago.", "could not be completed"),
    ],
)
def test_a_member_reads_a_sentence_for_a_decline_code_never_the_code(
    code: str, es: str, en: str
) -> None:
    for lang, locale, sentence in (("es", "es_ES", es), ("en", "en_US", en)):
        r = TemplateSet().render("unpaid_subscription", lang, unpaid(code, locale))
        assert sentence in r.text and sentence.replace("'", "&#39;") in r.html
        assert code not in r.text and code not in r.html


def test_an_unpaid_notice_without_a_reason_gives_none() -> None:
    r = TemplateSet().render("unpaid_subscription", "en", unpaid(None, "en_US"))
    assert "for your subscription Oro.\n" in r.text


def test_a_workspace_template_showing_the_reason_shows_the_sentence_and_staff_the_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "unpaid_subscription.es.j2").write_text(  # as `cobro init` wrote it before
        '{% extends "_layout.j2" %}{% block subject %}Impago{% endblock %}'
        "{% block claim %}No pudimos cobrar ({{ notice.reason }}).{% endblock %}",
        encoding="utf-8",
    )
    (tmp_path / "staff.es.j2").write_text(
        '{% extends "_layout.j2" %}{% block subject %}Impago{% endblock %}'
        "{% block claim %}Código: {{ notice.reason_code }}{% endblock %}",
        encoding="utf-8",
    )
    member = TemplateSet(tmp_path).render("unpaid_subscription", "es", unpaid("lost_card", "es_ES"))
    assert "No pudimos cobrar (Su banco ha rechazado el pago.)." in member.text
    assert "lost_card" not in member.text
    staff = TemplateSet(tmp_path).render("staff", "es", unpaid("lost_card", "es_ES"))
    assert "Código: lost_card" in staff.text


def staff_copy(locale: str, **over: Any) -> dict[str, Any]:
    rep = {"name": "Rita Rep", "internal": True, "staff_copy": True}
    return context(locale, recipient=rep, pay_url=None, crm_url="https://crm.example/C1", **over)


def debtor_paragraph(name: str, lang: str, locale: str) -> str:
    """The first paragraph the debtor reads (after the greeting)."""
    return TemplateSet().render(name, lang, context(locale)).text.split("\n\n")[2]


@pytest.mark.parametrize("name", ["b2b_00", "b2b_01", "b2b_02", "b2b_03", "b2b_04", "b2b_05"])
@pytest.mark.parametrize(
    ("lang", "locale", "todo"), [("en", "en_US", "What to do:"), ("es", "es_ES", "Qué hacer:")]
)
def test_a_staff_copy_of_each_phase_says_what_the_debtor_was_told_and_what_to_do(
    name: str, lang: str, locale: str, todo: str
) -> None:
    r = TemplateSet().render(name, lang, staff_copy(locale))
    debtor = TemplateSet().render(name, lang, context(locale))
    assert r.subject.endswith(f"Cliente <b>uno</b>: {debtor.subject}")
    assert r.subject.startswith(("Staff copy · ", "Copia interna · "))
    assert todo in r.text and todo in r.html
    assert debtor_paragraph(name, lang, locale) not in r.text  # not written to the debtor
    assert "Dear" not in r.text and "Estimado" not in r.text
    assert "https://crm.example/C1" in r.text and "pay.example" not in r.text


def test_the_staff_copy_of_the_last_notice_reads_to_staff_not_to_the_debtor() -> None:
    r = TemplateSet().render("b2b_05", "en", staff_copy("en_US", mode="link"))
    assert r.subject == "Staff copy · Cliente <b>uno</b>: LAST NOTICE – ACME: account blocked"
    assert "Your account has been blocked" not in r.text
    assert "Sent to the customer on January 8, 2026 (x): “LAST NOTICE – ACME: account blocked”" in (
        r.text
    )
    assert "What to do: do not accept or ship new orders for this customer" in r.text
    r = TemplateSet().render("b2b_04", "es", staff_copy("es_ES", mode="link"))
    assert "pagarlos en el enlace siguiente" not in r.text
    assert "Se ha comunicado al cliente que su deuda vencida ha sido declarada" in r.text


def test_a_workspace_template_without_an_internal_block_quotes_what_the_debtor_was_told(
    tmp_path: Path,
) -> None:
    (tmp_path / "b2b_05.en.j2").write_text(  # as `cobro init` wrote it before staff copies
        '{% extends "_layout.j2" %}{% block subject %}Blocked{% endblock %}'
        "{% block claim %}Your account is blocked, on hold.\n\nPay now.{% endblock %}",
        encoding="utf-8",
    )
    r = TemplateSet(tmp_path).render("b2b_05", "en", staff_copy("en_US"))
    assert "What the customer was told:\n\n> Your account is blocked, on hold.\n>\n> Pay now." in (
        r.text
    )
    assert "<blockquote" in r.html and "Your account is blocked, on hold.<br>" in r.html
    debtor = TemplateSet(tmp_path).render("b2b_05", "en", context("en_US"))
    assert "Your account is blocked, on hold." in debtor.text and "\n> " not in debtor.text


def test_a_workspace_layout_that_knows_nothing_of_staff_copies_still_renders(
    tmp_path: Path,
) -> None:
    (tmp_path / "_layout.j2").write_text(  # an older layout: recipient.internal only
        '{% if part == "subject" %}{% block subject %}{% endblock %}'
        "{% else %}{% if recipient.internal %}Internal: {{ customer.name }}{% endif %}"
        "{% block claim %}{% endblock %}{% endif %}",
        encoding="utf-8",
    )
    r = TemplateSet(tmp_path).render("b2b_05", "en", staff_copy("en_US"))
    assert r.subject == "LAST NOTICE – ACME: account blocked"
    assert r.text.startswith("Internal: Cliente <b>uno</b>")


def test_an_inline_logo_makes_the_email_multipart_related_with_its_content_id() -> None:
    logo = InlinePart("logo@cobro", "logo.png", "image/png", b"\x89PNG\r\n\x1a\nfake")
    raw = build_email(envelope(), "Hola", "text", '<img src="cid:logo@cobro">', inline=[logo])
    msg = message_from_bytes(raw, policy=default)
    assert msg.get_content_type() == "multipart/related"
    alternative, image = msg.iter_parts()
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert image["Content-ID"] == "<logo@cobro>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == logo.data
    body = msg.get_body(("html",))
    assert body is not None and 'src="cid:logo@cobro"' in body.get_content()


def test_an_inline_logo_and_an_attachment_nest_related_inside_mixed() -> None:
    logo = InlinePart("logo@cobro", "logo.png", "image/png", b"\x89PNG\r\n\x1a\nfake")
    pdf = FilePart("recibo.pdf", "application/pdf", b"%PDF-1.7")
    msg = message_from_bytes(
        build_email(envelope(), "s", "t", "<p>h</p>", [pdf], inline=[logo]), policy=default
    )
    assert msg.get_content_type() == "multipart/mixed"
    related, attached = msg.iter_parts()
    assert related.get_content_type() == "multipart/related"
    assert [p.get_content_type() for p in related.iter_parts()] == [
        "multipart/alternative",
        "image/png",
    ]
    assert [a.get_filename() for a in msg.iter_attachments()] == ["recibo.pdf"]
    assert attached.get_content() == b"%PDF-1.7"
