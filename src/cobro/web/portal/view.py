"""The portal's pages put together: the debtor's page (with a form's problems when one was
refused) and the plain page shown for a link that cannot be opened."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse

from cobro.web.csrf import form_token
from cobro.web.deps import WebState
from cobro.web.pages import reader_language
from cobro.web.portal.forms import DisputeForm, PromiseForm
from cobro.web.portal.labels import LANGUAGES, words
from cobro.web.portal.payment import pay_buttons, reference
from cobro.web.portal.queries import DebtorPage

DONE = ("read", "dispute", "promise")


@dataclass
class Outcome:
    """What the page says about the last thing the debtor did, or the form to show again."""

    done: str | None = None
    dispute: DisputeForm | None = None
    promise: PromiseForm | None = None
    problems: list[str] = field(default_factory=list)


def portal_path(request: Request, token: str) -> str:
    return f"{request.scope.get('root_path', '')}/portal/{token}"


def brand_path(state: WebState) -> str:
    """Where the company's brand files (style sheet, logo) are served."""
    return f"/brand/{state.ws.config.company.id}"


def _company(state: WebState) -> dict[str, Any]:
    company = state.ws.config.company
    branding = company.branding
    logo = f"{brand_path(state)}/logo" if branding.logo_file else branding.logo_url
    return {"name": company.name, "logo": logo, "footer": branding.footer}


def _asked(lang: str | None) -> str | None:
    return lang if lang in LANGUAGES else None


def page_language(state: WebState, debtor_language: str | None, lang: str | None) -> str:
    """The language a debtor's page is shown in: the one ``lang`` asks for, else the
    debtor's, else the company's."""
    language, _ = reader_language(
        state.ws.config.company.locale, LANGUAGES, _asked(lang), debtor_language
    )
    return language


def page_words(state: WebState, page: DebtorPage, lang: str | None) -> dict[str, str]:
    """The portal's words in the language ``page`` is shown in."""
    return words(page_language(state, page.debtor.language, lang))


# Where a cached page's form token goes: rendered once per data version, the page gets
# each browser's own token by replacing this (it is plain text, unchanged by escaping).
FORM_TOKEN_SLOT = "cobro-form-token-slot-7f3a9c"


def debtor_page(
    state: WebState,
    request: Request,
    token: str,
    page: DebtorPage,
    browser: str,
    lang: str | None,
    outcome: Outcome,
    status: int = 200,
) -> HTMLResponse:
    """The page of ``token``'s debtor in their language (or the one ``lang`` asks for)."""
    html = page_html(state, request, token, page, lang, outcome, FORM_TOKEN_SLOT)
    return HTMLResponse(with_form_token(state, html, browser, token), status_code=status)


def with_form_token(state: WebState, html: str, browser: str, token: str) -> str:
    """A rendered page with the form token of ``browser`` in its forms."""
    return html.replace(FORM_TOKEN_SLOT, form_token(state.ws.secret, browser, token))


def page_html(
    state: WebState,
    request: Request,
    token: str,
    page: DebtorPage,
    lang: str | None,
    outcome: Outcome,
    csrf: str,
) -> str:
    """The page's HTML, its forms carrying ``csrf``."""
    config = state.ws.config
    portal = config.portal
    language, locale = reader_language(
        config.company.locale, LANGUAGES, _asked(lang), page.debtor.language
    )
    today = state.today()
    ref = reference(page.debtor.external_id, page.debtor.outbox_id)
    path = portal_path(request, token)
    context = {
        "L": words(language),
        "language": language,
        "languages": [code for code in LANGUAGES if code != language],
        "asked": _asked(lang),
        "locale": locale,
        "tz": ZoneInfo(config.company.timezone),
        "company": _company(state),
        "brand": brand_path(state),
        "page": page,
        "path": path,
        "csrf": csrf,
        "reference": ref,
        "buttons": pay_buttons(portal.pay_url, ref, page.debtor.external_id, page.payable),
        "bank": portal.bank,
        "disputes": portal.disputes,
        "max_kb": portal.dispute_attachment_max_kb,
        "min_date": today.isoformat(),
        "max_date": (today + timedelta(days=portal.promise_max_days)).isoformat(),
        "max_days": portal.promise_max_days,
        "outcome": outcome,
        "statement_url": f"{path}/statement.pdf" + (f"?lang={lang}" if _asked(lang) else ""),
    }
    return state.pages.html("portal/page.j2", context)


def refused_page(
    state: WebState, reason: str, lang: str | None, status: int, path: str | None = None
) -> HTMLResponse:
    """A plain page with no debtor's data: why the link or form cannot be honoured."""
    company = state.ws.config.company
    language, locale = reader_language(company.locale, LANGUAGES, _asked(lang))
    contact = company.reply_to or (company.sender.email if company.sender else None)
    context = {
        "L": words(language),
        "language": language,
        "locale": locale,
        "reason": reason,
        # An expired link was ours: who to ask for a new one may be said.
        "company": company.name if reason == "expired" else None,
        "brand": brand_path(state) if reason == "expired" else None,
        "contact": contact if reason == "expired" else None,
        "back": path,
    }
    return state.pages.render("portal/refused.j2", context, status)
