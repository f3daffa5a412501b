"""Money is exact and never mixes currencies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cobro.domain.money import Money, totals_by_currency
from cobro.errors import CurrencyMismatch


def test_amounts_are_exact_decimals() -> None:
    assert Money.of("0.10", "EUR") + Money.of("0.20", "EUR") == Money.of("0.30", "EUR")


def test_adding_two_currencies_raises() -> None:
    with pytest.raises(CurrencyMismatch):
        _ = Money.of("1", "EUR") + Money.of("1", "USD")


def test_minor_units_follow_the_currency() -> None:
    assert Money.of("12.34", "EUR").minor == 1234
    assert Money.of("1234", "JPY").minor == 1234
    assert Money.from_minor(1234, "EUR").amount == Decimal("12.34")


def test_totals_are_kept_per_currency() -> None:
    totals = totals_by_currency(
        [Money.of("1.50", "EUR"), Money.of("2", "USD"), Money.of("3", "EUR")]
    )
    assert totals == {"EUR": Money.of("4.50", "EUR"), "USD": Money.of("2", "USD")}


def test_not_an_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="not an amount"):
        Money.of("12,5x", "EUR")
    with pytest.raises(ValueError, match="not a currency"):
        Money.of("1", "EURO")
