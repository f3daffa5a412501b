"""The report formulas of the dashboard (docs/reports.md): aging buckets, days sales
outstanding and the collection effectiveness index. Pure functions of amounts and days."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

#: Aging buckets by days past due: not yet overdue, then 1-30, 31-60, 61-90, over 90.
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
#: The days past due each bucket holds (inclusive; None: no upper bound).
BUCKET_DAYS: dict[str, tuple[int | None, int | None]] = {
    "current": (None, 0),
    "1-30": (1, 30),
    "31-60": (31, 60),
    "61-90": (61, 90),
    "90+": (91, None),
}


def bucket(days_past_due: int) -> str:
    """The aging bucket of an item ``days_past_due`` days after its due date (0 or less:
    not overdue, ``current``)."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "90+"


_TENTH = Decimal("0.1")


def dso(outstanding: Decimal, sales: Decimal, days: int) -> Decimal | None:
    """Days sales outstanding over a period of ``days``: what is owed at its end over the
    sales of the period, times its days; None when the period had no sales."""
    if sales <= 0:
        return None
    return (outstanding / sales * days).quantize(_TENTH, ROUND_HALF_EVEN)


def cei(
    beginning: Decimal, sales: Decimal, ending_total: Decimal, ending_current: Decimal
) -> Decimal | None:
    """Collection effectiveness index, in percent: what was collected in the period
    (``beginning + sales - ending_total``) over what could have been
    (``beginning + sales - ending_current``); None when nothing could have been."""
    collectible = beginning + sales - ending_current
    if collectible <= 0:
        return None
    collected = beginning + sales - ending_total
    return (collected / collectible * 100).quantize(_TENTH, ROUND_HALF_EVEN)
