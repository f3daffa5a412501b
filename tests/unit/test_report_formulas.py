"""The report formulas of docs/reports.md, on figures worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cobro.domain.reports import BUCKETS, bucket, cei, dso
from cobro.web.dashboard.charts import bar_chart, nice_ceiling


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (-5, "current"),
        (0, "current"),
        (1, "1-30"),
        (30, "1-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "90+"),
        (400, "90+"),
    ],
)
def test_an_item_falls_in_the_bucket_of_its_days_past_due(days: int, expected: str) -> None:
    assert bucket(days) == expected
    assert expected in BUCKETS


def test_dso_is_what_is_owed_over_the_periods_sales_times_its_days() -> None:
    # 2,250 owed after 950 of sales in 30 days: 2250 / 950 * 30 = 71.05... days.
    assert dso(Decimal("2250"), Decimal("950"), 30) == Decimal("71.1")
    assert dso(Decimal("2250"), Decimal("0"), 30) is None  # no sales: no figure


def test_cei_is_what_was_collected_over_what_could_have_been() -> None:
    # Began owing 2,000, sold 950, owes 2,250 of which 800 not due yet:
    # collected 2000 + 950 - 2250 = 700 of 2000 + 950 - 800 = 2150 -> 32.56 %.
    assert cei(Decimal("2000"), Decimal("950"), Decimal("2250"), Decimal("800")) == Decimal("32.6")
    assert cei(Decimal("0"), Decimal("0"), Decimal("0"), Decimal("0")) is None
    # Everything collected: 100 %.
    assert cei(Decimal("500"), Decimal("0"), Decimal("0"), Decimal("0")) == Decimal("100.0")


def test_chart_bars_are_as_tall_as_their_share_of_a_round_top() -> None:
    assert nice_ceiling(Decimal("800")) == Decimal("1000")
    assert nice_ceiling(Decimal("1850")) == Decimal("2000")
    assert nice_ceiling(Decimal("2100")) == Decimal("2500")
    chart = bar_chart(
        "t",
        [
            ("a", Decimal("800"), "800", "k", None),
            ("b", Decimal("0"), "0", "k", None),
            ("c", Decimal("250"), "250", "k", None),
        ],
    )
    tallest = chart.baseline - 28  # the top margin
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == pytest.approx(tallest * 0.8, abs=0.1)
    assert heights[1] == 0
    assert heights[2] == pytest.approx(tallest * 0.25, abs=0.1)
    assert all(bar.y + bar.height == pytest.approx(chart.baseline) for bar in chart.bars)
