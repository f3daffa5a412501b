"""Sandboxed Jinja2 templates: one file per template and language, rendered in three parts.

A template ``NAME.LANG.j2`` extends ``_layout.j2`` and fills the blocks
``subject`` and ``claim``, and may fill ``short``: the one line an SMS or a
push notification carries (by default the subject and the total), and ``voice``: what an
automated call says (by default who calls, the overdue amount and since when, spoken
with the ``spoken`` filter: ``1234 euros con 50 céntimos``). The
workspace's ``templates/`` directory overrides the bundled templates file by
file (a file added there is used from then on, also by a running server; one
removed falls back to the bundled one). A failed charge's ``notice.reason`` reaches
templates as a sentence in the message's language (``notice.reason_code`` keeps the
provider's code, for staff templates). Templates run in Jinja's immutable
sandbox with strict undefined variables; HTML output is autoescaped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import (
    format_currency,
    format_decimal,
    get_currency_name,
    get_currency_precision,
)
from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    pass_context,
)
from jinja2 import (
    TemplateError as JinjaTemplateError,
)
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cobro.domain.money import Money
from cobro.errors import TemplateError
from cobro.render.labels import LABELS, VOICE_LABELS, decline_reason
from cobro.render.limits import (
    MAX_SECONDS,
    LimitedSandbox,
    LimitExceeded,
    render_within,
    time_limit,
)


@lru_cache(maxsize=65536)
def _format_money(amount: Decimal, currency: str, locale: str) -> str:
    return str(format_currency(amount, currency, locale=locale))


@lru_cache(maxsize=8192)
def _format_date(value: date, fmt: str, locale: str) -> str:
    return str(format_date(value, format=fmt, locale=locale))


@pass_context
def _money(ctx: Context, value: Money) -> str:
    return _format_money(value.amount, value.currency, ctx["locale"])


@pass_context
def _date(ctx: Context, value: date, fmt: str = "medium") -> str:
    return _format_date(value, fmt, ctx["locale"])


@lru_cache(maxsize=8192)
def spoken_money(amount: Decimal, currency: str, locale: str) -> str:
    """``amount`` as text-to-speech reads it right: ``1234 euros con 50 céntimos``,
    ``1234 euros and 50 cents`` (digits without group separators, which voices misread,
    and the currency's name in words); other languages get the written amount."""
    language = Locale.parse(locale).language
    words = VOICE_LABELS.get(language)
    if words is None:
        return _format_money(amount, currency, locale)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    digits = get_currency_precision(currency)
    units = int(amount)
    cents = int((amount - units) * 10**digits) if digits else 0
    name = str(get_currency_name(currency, count=units, locale=language))
    text = f"{sign}{units} {name}"
    if cents:
        cent = words["cent" if cents == 1 else "cents"]
        if language == "es" and currency != "EUR":
            cent = "centavo" if cents == 1 else "centavos"
        text += f" {words['and']} {cents} {cent}"
    return text


@pass_context
def _spoken(ctx: Context, value: Money) -> str:
    return spoken_money(value.amount, value.currency, ctx["locale"])


@pass_context
def _number(ctx: Context, value: Decimal | int) -> str:
    return str(format_decimal(value, locale=ctx["locale"]))


class _Loader(BaseLoader):
    """Sources in order: ``overrides`` (a text not saved yet: a preview, an edit being
    checked), the workspace's ``templates/``, Cobro's own. A bundled template stays
    loaded only while the workspace has no file of that name: one added later is used."""

    def __init__(self, user_dir: Path | None, overrides: Mapping[str, str] | None) -> None:
        self.user_dir = user_dir
        self.overrides = dict(overrides or {})
        self.user = FileSystemLoader(str(user_dir)) if user_dir is not None else None
        self.package = PackageLoader("cobro.render", "templates")

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template in self.overrides:
            source = self.overrides[template]
            return source, None, lambda: True
        if self.user is not None:
            try:
                return self.user.get_source(environment, template)
            except TemplateNotFound:
                pass
        source, filename, uptodate = self.package.get_source(environment, template)
        if self.user_dir is None:
            return source, filename, uptodate
        shadow = os.path.join(self.user_dir, *split_template_path(template))

        def still(uptodate: Callable[[], bool] | None = uptodate) -> bool:
            return (uptodate is None or uptodate()) and not os.path.exists(shadow)

        return source, filename, still


def _env(
    autoescape: bool, user_dir: Path | None, overrides: Mapping[str, str] | None = None
) -> ImmutableSandboxedEnvironment:
    env = LimitedSandbox(
        loader=_Loader(user_dir, overrides),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=False,
        auto_reload=user_dir is not None,  # a workspace template edited on disk
    )
    env.filters["money"] = _money
    env.filters["date"] = _date
    env.filters["number"] = _number
    env.filters["spoken"] = _spoken
    return env


def page_environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed, autoescaping environment for bundled HTML pages (PDF receipts)."""
    return _env(True, None)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateSet:
    """The templates of one workspace, compiled once and cached."""

    def __init__(
        self,
        user_dir: Path | None = None,
        default_language: str = "en",
        max_seconds: float = MAX_SECONDS,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        """``overrides``: template sources by file name (``b2b_01.es.j2``) used instead
        of the files (a text being previewed or checked before it is saved)."""
        self._html = _env(True, user_dir, overrides)
        self._text = _env(False, user_dir, overrides)
        self.default_language = default_language
        self.max_seconds = max_seconds  # per message rendered, all its parts

    def page(self, filename: str) -> Template:
        """The HTML page template ``filename`` (a PDF's), the workspace's if it has one."""
        try:
            return self._html.get_template(filename)
        except JinjaTemplateError as exc:
            raise TemplateError(f"template {filename}: {exc}") from exc

    def resolve(self, name: str, language: str) -> tuple[str, str]:
        """The file to use for ``name`` in ``language``, falling back to the default language."""
        for lang in dict.fromkeys((language, self.default_language, "en")):
            candidate = f"{name}.{lang}.j2"
            try:
                self._text.get_template(candidate)
            except TemplateNotFound:
                continue
            except JinjaTemplateError as exc:
                raise TemplateError(f"template {candidate}: {exc}") from exc
            return candidate, lang
        raise TemplateError(f"template {name!r} not found (looked for {name}.{language}.j2)")

    def _parts(
        self, name: str, language: str, context: dict[str, Any], parts: tuple[str, ...]
    ) -> tuple[str, list[str]]:
        """The file used and each part of ``parts`` rendered (``html`` autoescaped)."""
        filename, lang = self.resolve(name, language)
        ctx = dict(
            context,
            language=lang,
            L=LABELS.get(lang, LABELS["en"]),
            VOICE=VOICE_LABELS.get(lang, VOICE_LABELS["en"]),
        )
        notice = context.get("notice")
        if isinstance(notice, dict) and notice.get("reason"):
            # A member reads a sentence, never a provider's code (it stays in reason_code).
            ctx["notice"] = {
                **notice,
                "reason": decline_reason(str(notice["reason"]), lang),
                "reason_code": notice.get("reason_code", notice["reason"]),
            }
        try:
            with time_limit(self.max_seconds):
                out = [
                    render_within(
                        (self._html if part == "html" else self._text).get_template(filename),
                        ctx,
                        part=part,
                    )
                    for part in parts
                ]
        except LimitExceeded as exc:
            raise TemplateError(f"template {filename}: {exc}") from exc
        except SecurityError as exc:
            raise TemplateError(f"template {filename}: unsafe operation refused: {exc}") from exc
        except JinjaTemplateError as exc:
            raise TemplateError(f"template {filename}: {exc}") from exc
        except Exception as exc:  # e.g. a filter given None, a division by zero
            raise TemplateError(f"template {filename}: {type(exc).__name__}: {exc}") from exc
        if not " ".join(out[0].split()):
            raise TemplateError(f"template {filename}: the subject is empty")
        return filename, out

    def render(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        """Render the subject, plain text and HTML of template ``name``."""
        _, (subject, text, html) = self._parts(name, language, context, ("subject", "text", "html"))
        return Rendered(" ".join(subject.split()), _tidy(text), html)

    def render_short(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        """The subject and the one-line ``short`` part (SMS, push) of template ``name``."""
        filename, (subject, short) = self._parts(name, language, context, ("subject", "short"))
        short = " ".join(short.split())
        if not short:
            raise TemplateError(f"template {filename}: the short text (SMS, push) is empty")
        return Rendered(" ".join(subject.split()), short, "")

    def render_voice(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        """The subject and the ``voice`` part (the text an automated call speaks) of
        template ``name``."""
        filename, (subject, spoken) = self._parts(name, language, context, ("subject", "voice"))
        spoken = " ".join(spoken.split())
        if _HTML.search(spoken):  # a layout without the voice part renders the email's HTML
            raise TemplateError(
                f"template {filename}: the layout has no voice part (a workspace _layout.j2 "
                'older than calls): add the bundled _layout.j2\'s {%- elif part == "voice" -%} '
                "branch to it"
            )
        if not spoken:
            raise TemplateError(f"template {filename}: the voice text (calls) is empty")
        return Rendered(" ".join(subject.split()), spoken, "")


_HTML = re.compile(r"<(!DOCTYPE|html|body|table)\b", re.IGNORECASE)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue
        out.append(line)
    return "\n".join(out) + "\n"
