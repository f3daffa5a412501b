"""PDF receipts: a sandboxed HTML template rendered to PDF by WeasyPrint.

The template is ``receipt_pdf.j2``, the workspace's own when it has one. Rendering
fetches nothing: the workspace logo is embedded as a ``data:`` URI and any other URL a
template names is refused.

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
from cobro.render.logo import Logo
from cobro.render.templates import TemplateSet, page_environment


@lru_cache(maxsize=1)
def _fonts() -> Any:
    """One font configuration for the process: a new one per PDF leaks and is slower."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


#: Sections of WeasyPrint's ``html5_ua.css`` (by their ``/* Title */`` comment) left out.
UNUSED_UA_SECTIONS = ("Form fields", "Pages")
#: Pseudo-elements whose rules are left out wherever they are (selector prefixes).
UNUSED_UA_PSEUDO = ("::note-",)
#: What the dropped ``Pages`` section sets that a page still needs.
PAGE_DEFAULTS = "@page { margin: 75px; @footnote { margin-top: 1em } }"


def receipt_ua_css(full: str) -> str:
    """``full`` (a user-agent stylesheet) without the sections :data:`UNUSED_UA_SECTIONS`
    and the selectors :data:`UNUSED_UA_PSEUDO`, plus :data:`PAGE_DEFAULTS`.

    A section runs from its title comment to the next one-line comment at the start of
    a line. A rule loses the selectors that name an unused pseudo-element and is left
    out only when none remains. What is not found is simply not left out.
    """
    import tinycss2

    parts = re.split(r"(?m)^(?=/\* [^\n]*\*/[ \t]*$)", full)
    kept = "".join(
        p for p in parts if not any(p.startswith(f"/* {n} */") for n in UNUSED_UA_SECTIONS)
    )
    out: list[str] = []
    for rule in tinycss2.parse_stylesheet(kept, skip_comments=True, skip_whitespace=True):
        if rule.type == "qualified-rule":
            selectors = [x.strip() for x in tinycss2.serialize(rule.prelude).split(",")]
            used = [x for x in selectors if not x.startswith(UNUSED_UA_PSEUDO)]
            if not used:
                continue
            if len(used) < len(selectors):
                out.append(f"{', '.join(used)} {{{tinycss2.serialize(rule.content)}}}")
                continue
        out.append(tinycss2.serialize([rule]))
    out.append(PAGE_DEFAULTS)
    return "\n".join(out) + "\n"


@lru_cache(maxsize=1)
def _html_class() -> type[Any]:
    """``weasyprint.HTML`` with the receipt user-agent stylesheet, parsed once (form
    fields, when ``pdf_forms`` asks for them, keep WeasyPrint's form stylesheet)."""
    from weasyprint import CSS, HTML, UA_FORM_STYLESHEET

    full = (files("weasyprint") / "css" / "html5_ua.css").read_text(encoding="utf-8")
    ua = CSS(string=receipt_ua_css(full), font_config=_fonts())

    class ReceiptHTML(HTML):  # type: ignore[misc]
        def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
            return [ua, UA_FORM_STYLESHEET] if forms else [ua]

    return ReceiptHTML


RECEIPT_TEMPLATE = "receipt_pdf.j2"


@lru_cache(maxsize=1)
def _bundled_template() -> Template:
    return page_environment().get_template(RECEIPT_TEMPLATE)


def receipt_html(
    company: Company,
    customer_name: str,
    customer_id: str,
    notice: dict[str, Any],
    language: str,
    locale: str,
    *,
    templates: TemplateSet | None = None,
    logo: Logo | None = None,
) -> str:
    """The receipt as HTML, from the workspace's ``receipt_pdf.j2`` when ``templates``
    has one (else the bundled one), with ``logo`` (the workspace's logo file) drawn."""
    if logo is not None:
        logo_url: str | None = logo.src_pdf
    else:  # only an inline logo is drawn: rendering fetches nothing from the network
        url = company.branding.logo_url or ""
        logo_url = url if url.startswith("data:image/") else None
    try:
        template = templates.page(RECEIPT_TEMPLATE) if templates else _bundled_template()
        return template.render(
            locale=locale,
            language=language,
            L=RECEIPT_LABELS.get(language, RECEIPT_LABELS["en"]),
            company={
                "name": company.name,
                "color": company.branding.color,
                "logo_url": logo_url,
                "footer": company.branding.footer,
            },
            customer={"name": customer_name, "external_id": customer_id},
            notice=notice,
            cycle=cycle_label(notice["cycle"], language) if notice.get("cycle") else None,
        )
    except JinjaTemplateError as exc:
        raise TemplateError(f"{RECEIPT_TEMPLATE}: {exc}") from exc
    except TemplateError:
        raise
    except Exception as exc:  # e.g. a filter given None in an edited template
        raise TemplateError(f"{RECEIPT_TEMPLATE}: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=1)
def data_only_fetcher() -> Any:
    """WeasyPrint's URL fetcher for receipts: ``data:`` URIs only. Anything else a
    template names (``https:``, ``file:``) is refused, so rendering never fetches."""
    from weasyprint.urls import URLFetcher

    return URLFetcher(allowed_protocols=("data",))


def receipt_pdf(
    company: Company,
    customer_name: str,
    customer_id: str,
    notice: dict[str, Any],
    language: str,
    locale: str,
    *,
    templates: TemplateSet | None = None,
    logo: Logo | None = None,
) -> bytes:
    """The PDF receipt of a successful charge (see :func:`receipt_html`)."""
    html = receipt_html(
        company,
        customer_name,
        customer_id,
        notice,
        language,
        locale,
        templates=templates,
        logo=logo,
    )
    return html_pdf(html)


def html_pdf(html: str) -> bytes:
    """``html`` (a Cobro PDF page: a receipt, a statement) as PDF bytes, with the trimmed
    user-agent stylesheet, the process's font configuration and nothing fetched but
    ``data:`` URIs."""
    data: bytes = _html_class()(string=html, url_fetcher=data_only_fetcher()).write_pdf(
        font_config=_fonts()
    )
    return data
