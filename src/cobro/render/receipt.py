"""PDF receipts: a sandboxed HTML template rendered to PDF by WeasyPrint."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError

from cobro.config.schema import Company
from cobro.errors import TemplateError
from cobro.render.labels import RECEIPT_LABELS
from cobro.render.templates import page_environment


@lru_cache(maxsize=1)
def _fonts() -> Any:
    """One font configuration for the process: a new one per PDF leaks and is slower."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


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
    from weasyprint import HTML

    html = receipt_html(company, customer_name, customer_id, notice, language, locale)
    data: bytes = HTML(string=html).write_pdf(font_config=_fonts())
    return data
