"""PDF receipts: localised wording, and the user-agent stylesheet they are rendered with."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from cobro.config import parse_config
from cobro.engine.notices import notice_context
from cobro.errors import TemplateError
from cobro.render.labels import cycle_label
from cobro.render.logo import load_logo
from cobro.render.receipt import _fonts, _html_class, receipt_html, receipt_pdf, receipt_ua_css
from cobro.render.templates import TemplateSet

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")
UA = (resources.files("weasyprint") / "css" / "html5_ua.css").read_text(encoding="utf-8")


def charge(cycle: str | None) -> dict[str, Any]:
    return notice_context(
        {
            "event": "receipt",
            "charge": "CH-9",
            "amount": "1250.50",
            "currency": "EUR",
            "charged_at": "2026-03-05T09:30:00+01:00",
            "subscription": {
                "subscription": "S1",
                "plan": "Plan Oro",
                "kind": "plan",
                "price": "1250.50",
                "currency": "EUR",
                "cycle": cycle,
                "next_charge_on": None,
                "ends_on": None,
            },
        }
    )


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_billing_cycles_are_named_in_the_receipt_language() -> None:
    assert cycle_label("monthly", "es") == "mensual"
    assert cycle_label("yearly", "en") == "yearly"
    assert cycle_label("30 days", "es") == "cada 30 días"
    assert cycle_label("7 days", "en") == "every 7 days"
    assert cycle_label("1 days", "en") == "daily" and cycle_label("1 days", "es") == "diario"
    assert cycle_label("monthly", "fr") == "monthly"  # unknown language: English


def test_spanish_receipt_shows_plan_cycle_amount_date_and_total_in_spanish() -> None:
    company = parse_config(STARTER).company
    text = pdf_text(receipt_pdf(company, "Ana Pérez", "C1", charge("monthly"), "es", "es_ES"))
    assert "Recibo de pago" in text and "CH-9" in text
    assert "Plan Oro (mensual)" in text
    assert "5 de marzo de 2026" in text
    assert text.count("1.250,50\xa0€") == 2  # the line and the total
    assert "Ana Pérez (C1)" in text
    assert company.name in text


def test_receipt_without_a_cycle_shows_just_the_plan() -> None:
    company = parse_config(STARTER).company
    text = pdf_text(receipt_pdf(company, "Ana", "C1", charge(None), "en", "en_US"))
    assert "Plan Oro\n" in text or "Plan Oro €" in text
    assert "(" not in text.split("Plan Oro", 1)[1].split("\n", 1)[0]


def test_receipt_stylesheet_leaves_out_form_fields_margin_boxes_and_side_notes_only() -> None:
    css = receipt_ua_css(UA)
    for gone in (
        "/* Form fields */",
        "@top-left-corner",
        "@note-area",
        "textarea { height",
        "::note-call",
        "::note-marker",
        "::note-callback",
    ):
        assert gone in UA and gone not in css
    for kept in (
        "table { display: table }",
        "b, strong, th { font-weight: bold }",
        "td, th { padding: 1px }",
        "@counter-style decimal",
        "ol { list-style-type: decimal }",
        "::footnote-call",
    ):
        assert kept in UA and kept in css
    assert css.rstrip().endswith("@page { margin: 75px; @footnote { margin-top: 1em } }")
    # Everything outside the two sections is kept, rule for rule, but the side notes'.
    outside = [ln for ln in UA.split("\n") if ln.startswith(("b, strong", "h1 {", "::marker"))]
    assert len(outside) >= 3 and all(ln in css for ln in outside)


def test_side_note_selectors_go_from_multi_line_and_shared_rules_alone() -> None:
    css = receipt_ua_css(
        "::note-call, ::footnote-call { content: counter(x) }\n"
        "::note-marker {\n  content: '*';\n  color: red\n}\n"
        ":is(ol, ul) ul { list-style-type: circle }\n"
    )
    assert "::footnote-call { content: counter(x) }" in css
    assert "::note-call" not in css and "::note-marker" not in css and "color: red" not in css
    assert ":is(ol, ul) ul { list-style-type: circle }" in css


def test_receipt_stylesheet_keeps_every_rule_when_no_section_title_matches() -> None:
    css = "p { margin: 1em 0 }\n/* Elsewhere */\nh1 { font-size: 2em }\n"
    assert receipt_ua_css(css).startswith("p { margin: 1em 0 }\nh1 { font-size: 2em }\n")


def test_receipts_are_rendered_with_the_receipt_stylesheet_not_the_whole_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # receipt_pdf never asks plain weasyprint.HTML for its user-agent stylesheets.
    from weasyprint import HTML

    def whole_stylesheet(self: Any, forms: bool = False) -> list[Any]:
        raise AssertionError("receipt rendered with WeasyPrint's whole stylesheet")

    company = parse_config(STARTER).company
    with monkeypatch.context() as m:
        m.setattr(HTML, "_ua_stylesheets", whole_stylesheet)  # fails if WeasyPrint renames it
        with pytest.raises(AssertionError, match="whole stylesheet"):
            HTML(string="<p>x</p>").write_pdf(font_config=_fonts())
        pdf = receipt_pdf(company, "Ana", "C1", charge("monthly"), "en", "en_US")
    assert "Plan Oro (monthly)" in pdf_text(pdf)


def test_receipt_stylesheet_drops_form_fields_and_keeps_footnotes() -> None:
    # The dropped "Form fields" section is what draws an input's value; footnotes (the
    # "Notes" section) are still numbered as usual.
    from weasyprint import HTML

    html = '<p>Paid<span style="float: footnote">by card</span> <input value="ref-7"></p>'
    stock = pdf_text(HTML(string=html).write_pdf(font_config=_fonts()))
    ours = pdf_text(_html_class()(string=html).write_pdf(font_config=_fonts()))
    assert "ref-7" in stock and "ref-7" not in ours
    for text in (stock, ours):
        assert "Paid1" in text and "1. by card" in text


def png(width: int = 6, height: int = 3) -> bytes:
    """A real PNG image, red, ``width`` x ``height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xc8\x1e\x1e" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def images(data: bytes) -> int:
    return sum(len(page.images) for page in PdfReader(io.BytesIO(data)).pages)


def test_an_edited_workspace_receipt_template_is_the_one_used(tmp_path: Path) -> None:
    bundled = (resources.files("cobro") / "render" / "templates" / "receipt_pdf.j2").read_text(
        encoding="utf-8"
    )
    (tmp_path / "receipt_pdf.j2").write_text(
        bundled.replace("<p>{{ L.paid }}</p>", "<p>Gracias por entrenar con nosotros</p>"),
        encoding="utf-8",
    )
    company = parse_config(STARTER).company
    edited = receipt_pdf(
        company, "Ana", "C1", charge("monthly"), "es", "es_ES", templates=TemplateSet(tmp_path)
    )
    assert "Gracias por entrenar con nosotros" in pdf_text(edited)
    assert "Pago recibido" not in pdf_text(edited)
    plain = receipt_pdf(company, "Ana", "C1", charge("monthly"), "es", "es_ES")
    assert "Pago recibido. Gracias." in pdf_text(plain)  # without a workspace: the bundled one


def test_a_failing_workspace_receipt_template_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "receipt_pdf.j2").write_text("<p>{{ notice.charge.upper() / 2 }}</p>")
    with pytest.raises(TemplateError, match=r"receipt_pdf\.j2: TypeError"):
        receipt_html(
            parse_config(STARTER).company,
            "Ana",
            "C1",
            charge(None),
            "en",
            "en_US",
            templates=TemplateSet(tmp_path),
        )


def test_the_workspace_logo_file_is_drawn_in_the_receipt_without_any_fetch(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(png())
    starter = parse_config(STARTER).company
    remote = starter.branding.model_copy(update={"logo_url": "https://demo.example/logo.png"})
    company = starter.model_copy(update={"branding": remote})  # never drawn in a PDF
    logo = load_logo(tmp_path, "logo.png")
    with_logo = receipt_pdf(company, "Ana", "C1", charge("monthly"), "en", "en_US", logo=logo)
    assert images(with_logo) == 1
    assert images(receipt_pdf(company, "Ana", "C1", charge("monthly"), "en", "en_US")) == 0


def test_a_receipt_template_naming_a_file_or_remote_url_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(png())
    (tmp_path / "receipt_pdf.j2").write_text(
        f'<p>{{{{ notice.charge }}}}</p><img src="{(tmp_path / "logo.png").as_uri()}">'
        '<img src="http://127.0.0.1:9/logo.png">',
        encoding="utf-8",
    )
    company = parse_config(STARTER).company
    data = receipt_pdf(
        company, "Ana", "C1", charge(None), "en", "en_US", templates=TemplateSet(tmp_path)
    )
    assert "CH-9" in pdf_text(data) and images(data) == 0
