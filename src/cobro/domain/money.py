"""Money: a Decimal amount with its currency, stored as integer minor units."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, is_currency

from cobro.errors import CurrencyMismatch

MAX_AMOUNT = Decimal(10) ** 15  # minor units must fit a 64-bit integer


@lru_cache(maxsize=256)
def currency_exponent(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (EUR 2, JPY 0)."""
    return int(get_currency_precision(currency))


@lru_cache(maxsize=256)
def known_currency(code: str) -> bool:
    """Whether ``code`` is an ISO 4217 currency that Babel knows."""
    return len(code) == 3 and code.isalpha() and bool(is_currency(code))


@dataclass(frozen=True, order=False)
class Money:
    """An exact amount in one currency. Mixing currencies raises ``CurrencyMismatch``."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str, *, exact: bool = False) -> Money:
        """Parse ``amount``; floats are refused because they are not exact.

        Extra decimals are rounded half-even, or refused with ``exact=True``.
        """
        if isinstance(amount, float):  # pragma: no cover - guarded by type hints
            raise TypeError("Money refuses float amounts; pass a string or Decimal")
        try:
            value = Decimal(str(amount).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {amount!r}") from exc
        if not value.is_finite():
            raise ValueError(f"not an amount: {amount!r}")
        cur = currency.strip().upper()
        if not known_currency(cur):
            raise ValueError(f"not a currency code: {currency!r}")
        if abs(value) >= MAX_AMOUNT:
            raise ValueError(f"{str(amount).strip()} is too large an amount")
        quantum = Decimal(1).scaleb(-currency_exponent(cur))
        rounded = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
        if exact and rounded != value:
            raise ValueError(f"{str(amount).strip()} has more decimals than {cur} allows")
        return cls(rounded, cur)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-currency_exponent(currency)), currency)

    @property
    def minor(self) -> int:
        """The amount in integer minor units (cents)."""
        return int(self.amount.scaleb(currency_exponent(self.currency)))

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount < other.amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def totals_by_currency(amounts: list[Money]) -> dict[str, Money]:
    """Sum amounts per currency; different currencies are never added together."""
    out: dict[str, Money] = {}
    for m in amounts:
        out[m.currency] = out[m.currency] + m if m.currency in out else m
    return dict(sorted(out.items()))
