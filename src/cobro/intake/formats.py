"""Reading amounts and dates as a file writes them: ISO and plain, the company's locale, or a
format the file declares. A value that two readings understand differently is refused."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from babel import Locale
from babel.numbers import get_decimal_symbol, get_group_symbol

_SPACES = (" ", "\u00a0", "\u202f")  # space, no-break space, narrow no-break space
_APOSTROPHES = ("'", "\u2019")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMERIC_DATE = re.compile(r"^(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})$")
_EXAMPLE_DAY = date(2026, 3, 30)


class FormatProblem(ValueError):
    """The text is not a value of the expected kind; the message says why."""


@dataclass(frozen=True)
class Reading:
    """How the cells of one file are read.

    ``decimal`` and ``date_format`` are declared by the file's mapping (or on the command
    line); ``locale`` is the company's, used when nothing is declared. With neither, only
    plain amounts (``1234.50``) and ISO dates (``2026-03-30``) are read.
    """

    locale: str | None = None
    decimal: str | None = None  # "," or "."
    date_format: str | None = None  # a strptime format such as "%d/%m/%Y"


PLAIN = Reading()


@dataclass(frozen=True)
class _Notation:
    decimal: str
    groups: tuple[str, ...]  # thousands separators allowed in the whole part
    name: str  # how a message names it


def _declared(decimal: str) -> _Notation:
    groups = (".", *_SPACES) if decimal == "," else (",", *_SPACES, *_APOSTROPHES)
    return _Notation(decimal, groups, f"with {decimal!r} as decimal separator")


@functools.cache
def _locale_notation(locale: str) -> _Notation:
    loc = Locale.parse(locale)
    decimal, group = get_decimal_symbol(loc), get_group_symbol(loc)
    groups = _SPACES if group.isspace() else (group,)
    return _Notation(decimal, groups, f"as written in {locale}")


def _notations(reading: Reading) -> list[_Notation]:
    if reading.decimal is not None:
        return [_declared(reading.decimal)]
    plain = _Notation(".", (), "as a plain number")
    if reading.locale is None:
        return [plain]
    return [plain, _locale_notation(reading.locale)]


def _read_with(text: str, n: _Notation) -> Decimal | None:
    """``text`` read in notation ``n``, or None when it is not a number written that way."""
    s = text
    sign = ""
    if s[:1] in "+-":
        sign, s = s[0], s[1:]
    elif s.endswith("-"):  # 1.234,50- as some accounting systems write a negative amount
        sign, s = "-", s[:-1].rstrip()
    whole, point, fraction = s.partition(n.decimal)
    if point and (not fraction.isdigit() or not fraction.isascii()):
        return None
    used = {g for g in n.groups if g in whole}
    if len(used) > 1:
        return None
    if used:
        parts = whole.split(used.pop())
        if not 1 <= len(parts[0]) <= 3 or any(len(p) != 3 for p in parts[1:]):
            return None
        whole = "".join(parts)
    if not whole or not whole.isdigit() or not whole.isascii():
        return None
    return Decimal(f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}")


def _example(n: _Notation) -> str:
    if n.decimal == "." and not n.groups:
        return "1234.50"
    group = n.groups[0] if n.groups else ""
    return f"1{group}234{n.decimal}50".replace("\u00a0", " ").replace("\u202f", " ")


def read_amount(text: str, reading: Reading = PLAIN) -> Decimal:
    """The amount written in ``text``; ``FormatProblem`` when it is not one or is ambiguous."""
    notations = _notations(reading)
    found = [(v, n) for n in notations if (v := _read_with(text, n)) is not None]
    if len({v for v, _ in found}) > 1:
        options = " or ".join(f"{v} ({n.name})" for v, n in found)
        raise FormatProblem(
            f"{text!r} is ambiguous: {options}; write it without thousands separators, "
            "or declare the decimal separator of the file (decimal: in the mapping, or --decimal)"
        )
    if found:
        return found[0][0]
    examples = " or ".join(dict.fromkeys(_example(n) for n in notations))
    raise FormatProblem(f"{text!r} is not an amount (e.g. {examples})")


@functools.cache
def _date_order(locale: str) -> tuple[str, str]:
    """The order of day, month and year in the locale's short dates (``"dMy"``) and its
    separator."""
    pattern = str(Locale.parse(locale).date_formats["short"].pattern)
    order = "".join(sorted("dMy", key=pattern.find))
    sep = next((ch for ch in pattern if ch in "./-"), "/")
    return order, sep


def _example_date(order: str, sep: str) -> str:
    parts = {"d": "30", "M": "03", "y": "2026"}
    return sep.join(parts[ch] for ch in order)


def read_date(text: str, reading: Reading = PLAIN) -> date:
    """The date written in ``text``; ``FormatProblem`` when it is not one or is ambiguous.

    ISO dates (``2026-03-30``) are always read. A declared ``date_format`` is read with
    ``strptime``; otherwise, with a locale, numeric dates in the locale's order
    (``30/03/2026`` for es_ES, ``3/30/2026`` for en_US). Two-digit years are refused unless
    a declared format says so.
    """
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise FormatProblem(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if reading.date_format is not None:
        try:
            return datetime.strptime(text, reading.date_format).date()
        except ValueError:
            example = _EXAMPLE_DAY.strftime(reading.date_format)
            raise FormatProblem(
                f"{text!r} is not a date in the format {reading.date_format} (e.g. {example})"
            ) from None
    if reading.locale is None:
        raise FormatProblem(f"{text!r} is not a date (YYYY-MM-DD)")
    order, sep = _date_order(reading.locale)
    hint = f"YYYY-MM-DD, or {_example_date(order, sep)} as written in {reading.locale}"
    m = _NUMERIC_DATE.match(text)
    if not m:
        raise FormatProblem(f"{text!r} is not a date ({hint})")
    parts = dict(zip(order, (m.group(1), m.group(3), m.group(4)), strict=True))
    if len(parts["y"]) != 4:
        raise FormatProblem(
            f"{text!r}: the year {parts['y']!r} is ambiguous; write it with four digits, "
            "or declare date_format (e.g. %d/%m/%y) in the mapping"
        )
    try:
        return date(int(parts["y"]), int(parts["M"]), int(parts["d"]))
    except ValueError:
        raise FormatProblem(f"{text!r} is not a date ({hint})") from None


def check_date_format(fmt: str) -> str:
    """``fmt`` if it is a strptime format naming a day, a month and a year exactly once."""
    directives = re.findall(r"%(.)", fmt.replace("%%", ""))
    allowed = {"d", "m", "b", "B", "y", "Y"}
    unknown = [d for d in directives if d not in allowed]
    if unknown:
        raise ValueError(
            f"{fmt!r}: %{unknown[0]} is not allowed; use %d, %m (or %b, %B), %Y (or %y)"
        )
    day = directives.count("d")
    month = sum(directives.count(d) for d in "mbB")
    year = sum(directives.count(d) for d in "yY")
    if (day, month, year) != (1, 1, 1):
        raise ValueError(f"{fmt!r} must name the day, the month and the year once each")
    written = _EXAMPLE_DAY.strftime(fmt)
    if datetime.strptime(written, fmt).date() != _EXAMPLE_DAY:
        raise ValueError(f"{fmt!r} does not read back the dates it writes")
    return fmt
