"""Send times: when a message planned for a date is due, as an aware UTC instant."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def send_instant(on: date, send_time: time, timezone: str) -> datetime:
    """The UTC instant of ``send_time`` on ``on`` in the company's ``timezone``."""
    local = datetime.combine(on, send_time, tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date of ``instant`` in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone)).date()
