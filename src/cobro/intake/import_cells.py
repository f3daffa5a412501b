"""Reading the cells of one import row: text, choices, dates, amounts, currencies, phone
numbers, email addresses, time zones and languages, each checked, every problem of the
row collected with its field."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import String, Table

from cobro.domain.money import Money, currency_exponent
from cobro.intake.formats import PLAIN, FormatProblem, Reading, read_amount, read_date
from cobro.store import tables as t

_LIST_SEP = re.compile(r"[|,]")
_MAX_DIGITS = 15  # digits before the point: amounts stay well inside a 64-bit integer


@functools.cache
def column_max_len(table: Table, column: str) -> int:
    typ = table.c[column].type
    assert isinstance(typ, String) and typ.length is not None
    return int(typ.length)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class Fields:
    """Reads and checks the cells of one row, collecting every problem found."""

    def __init__(self, line: int, data: Mapping[str, object], reading: Reading = PLAIN) -> None:
        self.line = line
        self.data = data
        self.reading = reading
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []  # values left out; the row is kept

    def fail(self, col: str, problem: str) -> None:
        self.problems.append((col, problem))

    def has(self, col: str) -> bool:
        return col in self.data

    def _scalar(self, col: str, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, int | Decimal):
            text = str(value)
        elif isinstance(value, float):
            self.fail(col, "floating-point numbers are not exact: give the value as text")
            return None
        else:
            self.fail(col, f"expected a single value, got {_describe(value)}")
            return None
        text = text.strip()
        if "\x00" in text:
            self.fail(col, "contains a NUL character")
            return None
        return text or None

    def raw(self, col: str) -> str | None:
        """The cell's trimmed text; None when the column is absent or the cell empty."""
        return self._scalar(col, self.data.get(col))

    def required(self, col: str) -> str | None:
        """Like ``raw``, reporting "is required" when the cell is empty or absent."""
        before = len(self.problems)
        value = self.raw(col)
        if value is None and len(self.problems) == before:
            self.fail(col, "is required")
        return value

    def items(self, col: str) -> list[str]:
        """A list cell: a JSON list, or text separated by ``|`` or ``,``."""
        value = self.data.get(col)
        if isinstance(value, list | tuple):
            parts = [self._scalar(col, v) for v in value]
        else:
            text = self._scalar(col, value)
            parts = _LIST_SEP.split(text) if text else []
        out: list[str] = []
        for part in parts:
            item = (part or "").strip().lower()
            if item and item not in out:
                out.append(item)
        return out

    def text(self, col: str, max_len: int, *, required: bool = False) -> str | None:
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        if len(value) > max_len:
            self.fail(col, f"is longer than {max_len} characters")
            return None
        return value

    def choice(self, col: str, allowed: Sequence[str], default: str) -> str:
        value = self.raw(col)
        if value is None:
            return default
        if value.lower() not in allowed:
            self.fail(col, f"{value!r} is not one of: {', '.join(allowed)}")
            return default
        return value.lower()

    def date(self, col: str, *, required: bool = False) -> date | None:
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        try:
            return read_date(value, self.reading)
        except FormatProblem as exc:
            self.fail(col, str(exc))
            return None

    def decimal(
        self, col: str, *, required: bool = False, positive: bool = False, signed: bool = False
    ) -> Decimal | None:
        """An amount; ``signed`` lets it be negative (the caller decides what that means)."""
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        try:
            amount = read_amount(value, self.reading)
        except FormatProblem as exc:
            self.fail(col, str(exc))
            return None
        if amount.adjusted() >= _MAX_DIGITS:
            self.fail(col, f"{value} is too large")
            return None
        if signed and positive and amount == 0:
            self.fail(col, f"{value} must not be 0")
            return None
        if signed:
            return amount
        if positive and amount <= 0:
            self.fail(col, f"{value} must be greater than 0")
            return None
        if amount < 0:
            self.fail(col, f"{value} must not be negative")
            return None
        return amount

    def currency(self, col: str, default: str) -> str:
        value = self.raw(col)
        if value is None:
            return default
        code = value.upper()
        try:
            Money.of("0", code)
            if not is_currency(code):
                raise ValueError(code)
        except ValueError:
            self.fail(col, f"{value!r} is not a currency code (ISO 4217, e.g. EUR)")
            return default
        return code

    def phone(self, col: str, region: str | None) -> str | None:
        """A phone number in E.164 (+34600111222); national numbers are read in ``region``."""
        value = self.raw(col)
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException as exc:
            self.fail(col, f"{value!r} is not a phone number: {exc}")
            return None
        if not phonenumbers.is_valid_number(number):
            national = region and not value.startswith(("+", "00"))
            where = f" (national numbers are read as {region})" if national else ""
            self.fail(col, f"{value!r} is not a valid phone number{where}")
            return None
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    def email(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            normalized = str(
                validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
            )
        except EmailNotValidError as exc:
            self.fail(col, f"{value!r} is not an email address: {exc}")
            return None
        if len(normalized) > column_max_len(t.customers, "email"):
            self.fail(col, "is too long for an email address")
            return None
        return str(normalized)

    def address(
        self, col: str, read: Callable[[str], str | None], whose: str, v: dict[str, Any]
    ) -> None:
        """Read an email or phone cell into ``v``; an unusable one does not reject the row.

        The address is then stored empty, the cell's text kept as ``invalid_<col>`` for
        staff, and a warning names the row and field: the other channels still work.
        """
        v[f"invalid_{col}"] = None
        raw = self.data.get(col)
        before = len(self.problems)
        v[col] = read(col)
        if len(self.problems) == before or not isinstance(raw, str) or "\x00" in raw:
            return  # valid, or not plain text (a list, a float, a NUL): the row is rejected
        _, problem = self.problems.pop()
        v[f"invalid_{col}"] = raw.strip()[: column_max_len(t.customers, f"invalid_{col}")]
        self.warnings.append((col, f"{problem}; {whose} is stored without it"))

    def timezone(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(col, f"{value!r} is not a time zone (e.g. Europe/Madrid, America/Bogota)")
            return None
        if len(value) > column_max_len(t.customers, "timezone"):
            self.fail(col, f"{value!r} is too long for a time zone")
            return None
        return value

    def language(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            code = str(Locale.parse(value.replace("-", "_")))
        except (UnknownLocaleError, ValueError, TypeError):
            self.fail(col, f"{value!r} is not a language code (e.g. es, en, es_ES)")
            return None
        if len(code) > column_max_len(t.customers, "language"):
            self.fail(col, f"{value!r} is too long for a language code")
            return None
        return code


def to_minor(f: Fields, col: str, amount: Decimal | None, currency: str) -> int | None:
    """``amount`` in minor units of ``currency``; refuses more decimals than it has."""
    if amount is None:
        return None
    money = Money.of(amount, currency)
    if money.amount != amount:
        f.fail(
            col,
            f"{amount} has more decimal places than {currency} allows "
            f"({currency_exponent(currency)})",
        )
        return None
    return money.minor


def fmt(minor: int, currency: str) -> str:
    return str(Money.from_minor(minor, currency))


def same_amount(a: int, a_cur: str, b: int, b_cur: str) -> bool:
    return Money.from_minor(a, a_cur).amount == Money.from_minor(b, b_cur).amount
