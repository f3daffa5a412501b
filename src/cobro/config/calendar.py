"""``calendar:`` in ``cobro.yaml``: public holidays, business days for due dates, the hours
each channel may write to a debtor, and how often a debtor may be contacted."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cobro.config.types import ClockTime
from cobro.domain.calendar import NO_HOLIDAYS, WEEKDAYS, DueDates, Holidays, SendCalendar, Window

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# The channels a window or a cap may name (voice: calls).
WindowChannel = Literal["email", "sms", "push", "voice"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@cache
def supported_countries() -> dict[str, tuple[str, ...]]:
    """Country code -> its region (subdivision) codes, as the ``holidays`` library knows
    them."""
    import holidays

    return {k: tuple(v) for k, v in holidays.list_supported_countries().items()}


@cache
def _country_holidays(country: str, region: str | None) -> Any:
    import holidays

    return holidays.country_holidays(country, subdiv=region)


class HolidayCalendar(_Strict):
    """The company's public holidays: a country (ISO 3166 code, ``ES``) and optionally one
    of its regions (``MD`` for Madrid)."""

    country: str
    region: str | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        v = v.strip().upper()
        if v not in supported_countries():
            raise ValueError(f"{v!r} is not a country with known holidays (e.g. ES, FR, US, GB)")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if v is None or country is None:  # (an unknown country is its own problem)
            return v
        regions = supported_countries()[country]
        region = v.strip().upper().removeprefix(f"{country}-")
        if region not in regions:
            listed = ", ".join(regions) if regions else "none"
            raise ValueError(f"{v!r} is not a region of {country} (its regions: {listed})")
        return region

    def days(self) -> Holidays:
        found: Holidays = _country_holidays(self.country, self.region)
        return found


class ChannelWindow(_Strict):
    """The hours (debtor's local time) and days a channel may write to a debtor."""

    start: ClockTime
    end: ClockTime
    days: Annotated[list[Weekday], Field(min_length=1)] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]

    @model_validator(mode="after")
    def _order(self) -> ChannelWindow:
        if self.end <= self.start:
            raise ValueError(
                f"end: the window ends ({self.end:%H:%M}) before it starts ({self.start:%H:%M})"
            )
        if len(set(self.days)) != len(self.days):
            raise ValueError("days: a day is listed twice")
        return self

    def window(self) -> Window:
        return Window(self.start, self.end, frozenset(WEEKDAYS.index(d) for d in self.days))


class FrequencyCap(_Strict):
    """At most ``max`` messages to a debtor in ``days`` days (claims of every policy phase
    and scheduled action), on ``channels`` (none listed: every channel counts)."""

    max: Annotated[int, Field(ge=1, le=1000)]
    days: Annotated[int, Field(ge=1, le=365)]
    channels: list[WindowChannel] = []

    def describe(self) -> str:
        what = " or ".join(self.channels) + " " if self.channels else ""
        unit = "message" if self.max == 1 else "messages"
        span = "a day" if self.days == 1 else f"{self.days} days"
        return f"at most {self.max} {what}{unit} in {span}"


class CalendarConfig(_Strict):
    holidays: HolidayCalendar | None = Field(
        default=None, description="no message goes out on these public holidays"
    )
    due_dates: Literal["keep", "next_business_day"] = Field(
        default="keep",
        description="next_business_day: a due date on a holiday or a day that is not a "
        "business day counts as due on the next business day",
    )
    business_days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    windows: dict[WindowChannel, ChannelWindow] = {}
    caps: list[FrequencyCap] = []

    @field_validator("business_days")
    @classmethod
    def _business(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a day is listed twice")
        return v

    def send_calendar(self) -> SendCalendar:
        return SendCalendar(
            self.holidays.days() if self.holidays else NO_HOLIDAYS,
            {name: w.window() for name, w in self.windows.items()},
        )

    def due_calendar(self) -> DueDates:
        return DueDates(
            self.due_dates == "next_business_day",
            self.holidays.days() if self.holidays else NO_HOLIDAYS,
            frozenset(WEEKDAYS.index(d) for d in self.business_days),
        )
