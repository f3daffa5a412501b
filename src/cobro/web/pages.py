"""Server-rendered pages: the bundled Jinja templates, money and dates in the reader's locale."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from starlette.responses import HTMLResponse

from cobro.domain.money import Money


@lru_cache(maxsize=16384)
def _money_text(amount: Decimal, currency: str, locale: str) -> str:
    return str(format_currency(amount, currency, locale=locale))


@lru_cache(maxsize=4096)
def _date_text(value: date, fmt: str, locale: str) -> str:
    return str(format_date(value, format=fmt, locale=locale))


def money_text(value: Money, locale: str) -> str:
    """``value`` as a reader of ``locale`` writes it (``1.234,50 €``)."""
    return _money_text(value.amount, value.currency, locale)


@pass_context
def _money(ctx: Context, value: Money) -> str:
    return _money_text(value.amount, value.currency, ctx["locale"])


@pass_context
def _number(ctx: Context, value: Decimal | int) -> str:
    return str(format_decimal(value, locale=ctx["locale"]))


@pass_context
def _date(ctx: Context, value: date | str | None, fmt: str = "medium") -> str:
    """``value`` (a date, or one written ISO 8601 as a history entry keeps it) as the
    page's readers write dates."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return _date_text(value, fmt, ctx["locale"])


@pass_context
def _datetime(ctx: Context, value: datetime, fmt: str = "medium") -> str:
    return str(format_datetime(value, format=fmt, tzinfo=ctx["tz"], locale=ctx["locale"]))


def reader_language(
    company_locale: str, supported: tuple[str, ...], *codes: str | None
) -> tuple[str, str]:
    """(language, formatting locale) for the first of ``codes`` (``es``, ``en_GB``...) in a
    ``supported`` language, else the company's language, else the first supported. The
    company's own language is formatted as its locale (``es`` -> ``es_ES``)."""
    company = Locale.parse(company_locale)
    for code in (*codes, company_locale, supported[0]):
        if not code:
            continue
        try:
            loc = Locale.parse(code)
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        if loc.language not in supported:
            continue
        if loc.language == company.language and not loc.territory:
            return loc.language, company_locale
        return loc.language, str(loc)
    raise AssertionError("unreachable: the supported languages parse")


class Pages:
    """The web templates (``cobro/web/templates``), compiled once, autoescaped. They are
    Cobro's own files, not a user's (those are rendered sandboxed, ``cobro.render``), so
    they are neither sandboxed nor checked for changes on disk."""

    def __init__(self) -> None:
        env = Environment(
            loader=PackageLoader("cobro.web", "templates"),
            autoescape=True,
            auto_reload=False,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["money"] = _money
        env.filters["number"] = _number
        env.filters["date"] = _date
        env.filters["datetime"] = _datetime
        self.env = env

    def html(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(name).render(context)

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        return HTMLResponse(self.html(name, context), status_code=status)
