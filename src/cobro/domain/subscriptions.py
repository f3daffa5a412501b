"""Subscription rules of seed 003: billing cycles, pauses and when a reminder may go."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta

_CYCLE = re.compile(r"^(weekly|monthly|quarterly|yearly|(\d{1,3}) days)$")


def valid_cycle(cycle: str) -> bool:
    return bool(_CYCLE.match(cycle))


def next_charge_after(charged_on: date, cycle: str) -> date:
    """The charge date after ``charged_on`` for a billing ``cycle``."""
    m = _CYCLE.match(cycle)
    if not m:
        raise ValueError(f"unknown billing cycle {cycle!r}")
    if m.group(2):
        return charged_on + timedelta(days=int(m.group(2)))
    step = {
        "weekly": relativedelta(weeks=1),
        "monthly": relativedelta(months=1),
        "quarterly": relativedelta(months=3),
        "yearly": relativedelta(years=1),
    }[cycle]
    result: date = charged_on + step
    return result


def in_pause(charge_on: date, pause_from: date | None, pause_until: date | None) -> bool:
    """Whether a charge date falls inside a pause (bounds included)."""
    if pause_from is None:
        return False
    return pause_from <= charge_on and (pause_until is None or charge_on <= pause_until)


def reminder_may_go(moment: datetime, known_at: datetime, settings_since: datetime | None) -> bool:
    """Not retroactive: a reminder whose moment passed before it became known is not sent."""
    return known_at <= moment and (settings_since is None or settings_since <= moment)
