"""What the work screens share: reading a form's fields, a transaction for a form's work,
where to go back to after one, a day's bounds in company time, list filters read from the
query string."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from sqlalchemy import Connection
from starlette.datastructures import FormData

from cobro.config import CobroConfig
from cobro.engine.messages import NOTICE_NAMES, RESEND_PREFIX, notice_spec
from cobro.evidence.history import step_name
from cobro.web.dashboard.session import PREFIX, Staff

T = TypeVar("T")


def field(form: FormData, name: str) -> str:
    """A form field's text, stripped; empty when missing or a file."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def write(who: Staff, work: Callable[[Connection], T]) -> T:
    """``work`` in one transaction on the company's database."""
    with who.state.ws.engine.begin() as conn:
        return work(conn)


def read(who: Staff, work: Callable[[Connection], T]) -> T:
    """``work`` on a connection of the reader (beside the writers on SQLite)."""
    with who.state.reader.connect() as conn:
        return work(conn)


def back_to(value: str, screen: str) -> str:
    """Where a form goes back to: ``value`` when it is a page of ``screen`` (a path under
    ``/dashboard/<screen>`` of this site), else that screen's first page."""
    base = f"{PREFIX}/{screen}"
    if (
        value
        and (value == base or value.startswith((base + "?", base + "/")))
        and "\\" not in value
        and "//" not in value
        and all(32 < ord(ch) < 127 for ch in value)
    ):
        return value
    return base


def with_query(url: str, **more: str | int) -> str:
    """``url`` with ``more`` added to its query string (replacing what it had of them)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in more]
    query = urlencode([*kept, *((k, str(v)) for k, v in more.items())])
    return f"{parts.path}?{query}" if query else parts.path


def day_start(day: date, timezone: str) -> datetime:
    """The UTC instant a company-local day begins."""
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a company-local day, as UTC instants."""
    return day_start(day, timezone), day_start(day + timedelta(days=1), timezone)


def one_of(value: str | None, allowed: Sequence[str]) -> str | None:
    return value if value in allowed else None


def read_day(value: str | None) -> tuple[date | None, bool]:
    """(the day, whether it was readable): an empty value is no day and no problem."""
    if not value:
        return None, True
    try:
        return date.fromisoformat(value.strip()), True
    except ValueError:
        return None, False


def cost_text(amount: Decimal, currency: str, locale: str) -> str:
    """A cost as the reader writes it, to its last significant digit (an email costs
    fractions of a cent)."""
    return str(
        format_currency(amount.normalize(), currency, locale=locale, decimal_quantization=False)
    )


def step_label(config: CobroConfig, step: str, said: dict[str, str], language: str) -> str:
    """What staff read for an outbox step in the page's language (``language``, its words
    ``said``): a resend and an event's notice in the dashboard's words; a policy's phase or
    a scheduled action by the name ``cobro.yaml`` gives it (in that language if given)."""
    if step.startswith(RESEND_PREFIX):
        claim = step.removeprefix(RESEND_PREFIX).partition("/")[0]
        return said["step_resend"].format(claim=claim)
    kind = step.partition("/")[0]
    if kind in NOTICE_NAMES and notice_spec(config, step) is not None:
        return said[f"step_{kind}"]
    return step_name(config, step, language)
