"""Charts drawn on the server as SVG: no script, nothing to load, allowed by the pages'
content security policy (the bars' colours come from the style sheet, by class)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 16, 16, 28, 48  # room for the values above, labels below


@dataclass(frozen=True)
class Bar:
    label: str
    value: str  # as the reader reads it (the amount in their locale)
    x: float
    y: float
    width: float
    height: float
    kind: str  # a class name: what the bar is (``bucket-current``, ...)
    href: str | None = None


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    baseline: float
    grid: list[float]  # the y of each grid line
    bars: list[Bar]
    top: Decimal = Decimal(0)  # the value of the top grid line


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** (value.adjusted())
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= power * step:
            return power * step
    return power * 10  # pragma: no cover - the loop ends at 10


def bar_chart(title: str, values: list[tuple[str, Decimal, str, str, str | None]]) -> BarChart:
    """Vertical bars of ``values``: (label, amount, amount as text, kind, link)."""
    top = nice_ceiling(max((v for _, v, _, _, _ in values), default=Decimal(0)))
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = HEIGHT - TOP - BOTTOM
    slot = inner_w / max(len(values), 1)
    bar_w = slot * 0.62
    baseline = TOP + inner_h
    bars = []
    for i, (label, value, text, kind, href) in enumerate(values):
        h = float(max(value, Decimal(0)) / top) * inner_h
        x = LEFT + i * slot + (slot - bar_w) / 2
        bars.append(
            Bar(
                label,
                text,
                round(x, 1),
                round(baseline - h, 1),
                round(bar_w, 1),
                round(h, 1),
                kind,
                href,
            )
        )
    grid = [round(TOP + inner_h * i / 4, 1) for i in range(4)]
    return BarChart(title, WIDTH, HEIGHT, baseline, grid, bars, top)
