"""PDF receipts: a sandboxed HTML template rendered to PDF by WeasyPrint.

Receipts are rendered with WeasyPrint's own HTML user-agent stylesheet less what a
receipt never uses: form fields, page-margin boxes and WeasyPrint's side notes
(``position: note()``), whose rules WeasyPrint weighs for every element. Every element
still gets its usual defaults, footnotes included; a receipt takes about a tenth less CPU (see
``bench/README.md``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError

from cobro.config.schema import Company
from cobro.errors import TemplateError
from cobro.render.labels import RECEIPT_LABELS, cycle_label
from cobro.render.templates import page_environment


@lru_cache(maxsize=1)
def _fonts() -> Any:
    """One font configuration for the process: a new one per PDF leaks and is slower."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


#: Sections of WeasyPrint's ``html5_ua.css`` (by their ``/* Title */`` comment) left out.
UNUSED_UA_SECTIONS = ("Form fields", "Pages")
#: Rules left out wherever they are, by how their line starts.
UNUSED_UA_RULES = ("::note-",)


def receipt_ua_css(full: str) -> str:
    """``full`` (a user-agent stylesheet) without the sections :data:`UNUSED_UA_SECTIONS`
    and the rules :data:`UNUSED_UA_RULES`.

    A section runs from its title comment to the next one. The page margin the dropped
    ``Pages`` section sets, and its footnote area's, are kept. What is not found is
    simply not left out.
    """
    parts = re.split(r"(?m)^(?=/\* [^\n]*\*/[ \t]*$)", full)
    kept = "".join(
        p for p in parts if not any(p.startswith(f"/* {n} */") for n in UNUSED_UA_SECTIONS)
    )
    lines = [ln for ln in kept.split("\n") if not ln.startswith(UNUSED_UA_RULES)]
    return "\n".join(lines) + "\n@page { margin: 75px; @footnote { margin-top: 1em } }\n"


@lru_cache(maxsize=1)
def _html_class() -> Any:
    """``weasyprint.HTML`` with the receipt user-agent stylesheet, parsed once."""
    from weasyprint import CSS, HTML

    full = (files("weasyprint") / "css" / "html5_ua.css").read_text(encoding="utf-8")
    ua = CSS(string=receipt_ua_css(full), font_config=_fonts())

    class ReceiptHTML(HTML):  # type: ignore[misc]
        def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
            return [ua]

    return ReceiptHTML


@lru_cache(maxsize=1)
def _template() -> Template:
    return page_environment().get_template("receipt_pdf.j2")


def receipt_html(
    company: Company,
    customer_name: str,
    customer_id: str,
    notice: dict[str, Any],
    language: str,
    locale: str,
) -> str:
    try:
        return _template().render(
            locale=locale,
            language=language,
            L=RECEIPT_LABELS.get(language, RECEIPT_LABELS["en"]),
            company={
                "name": company.name,
                "color": company.branding.color,
                # Rendering fetches nothing from the network: only an inline logo is drawn.
                "logo_url": logo
                if (logo := company.branding.logo_url or "").startswith("data:image/")
                else None,
                "footer": company.branding.footer,
            },
            customer={"name": customer_name, "external_id": customer_id},
            notice=notice,
            cycle=cycle_label(notice["cycle"], language) if notice.get("cycle") else None,
        )
    except JinjaTemplateError as exc:
        raise TemplateError(f"receipt_pdf.j2: {exc}") from exc


def receipt_pdf(
    company: Company,
    customer_name: str,
    customer_id: str,
    notice: dict[str, Any],
    language: str,
    locale: str,
) -> bytes:
    """The PDF receipt of a successful charge."""
    html = receipt_html(company, customer_name, customer_id, notice, language, locale)
    data: bytes = _html_class()(string=html).write_pdf(font_config=_fonts())
    return data
