"""``calendar:`` in cobro.yaml: a bad country, region, window or weekday is one problem
naming its field; a good section gives the calendars dispatch and planning use."""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib import resources

import pytest

from cobro.config import parse_config
from cobro.errors import ConfigError

STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")


def with_calendar(block: str) -> str:
    return STARTER + "\ncalendar:\n" + block


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cobro.yaml")
    return [(p.field, p.problem) for p in exc.value.problems]


@pytest.mark.parametrize(
    ("block", "field", "says"),
    [
        ("  holidays: {country: XX}\n", "calendar.holidays.country", "'XX' is not a country"),
        (
            "  holidays: {country: ES, region: ZZ}\n",
            "calendar.holidays.region",
            "'ZZ' is not a region of ES",
        ),
        (
            '  windows:\n    sms: {start: "21:00", end: "09:00"}\n',
            "calendar.windows.sms",
            "end: the window ends (09:00) before it starts (21:00)",
        ),
        (
            '  windows:\n    voice: {start: "10:00", end: "20:00", days: [mon, sunday]}\n',
            "calendar.windows.voice.days.1",
            "'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'",
        ),
        ("  business_days: [mon, fryday]\n", "calendar.business_days.1", "'fri'"),
        ('  windows:\n    fax: {start: "09:00", end: "21:00"}\n', "calendar.windows.fax", ""),
        ("  due_dates: monday\n", "calendar.due_dates", "'next_business_day'"),
    ],
)
def test_a_bad_calendar_is_one_problem_naming_its_field(block: str, field: str, says: str) -> None:
    found = problems(with_calendar(block))
    assert len(found) == 1, found
    assert found[0][0] == field
    assert says in found[0][1]


def test_a_region_is_accepted_with_or_without_its_country_prefix() -> None:
    for region in ("MD", "ES-MD", "md"):
        cfg = parse_config(with_calendar(f"  holidays: {{country: es, region: {region}}}\n"))
        assert cfg.calendar.holidays is not None
        assert (cfg.calendar.holidays.country, cfg.calendar.holidays.region) == ("ES", "MD")
        days = cfg.calendar.holidays.days()
        assert date(2026, 5, 2) in days  # Madrid's own holiday
        assert date(2026, 1, 6) in days and date(2026, 12, 25) in days
        assert date(2026, 5, 4) not in days


def test_a_channel_without_a_window_is_closed_only_on_holidays() -> None:
    cfg = parse_config(
        with_calendar(
            "  holidays: {country: ES}\n"
            "  windows:\n"
            '    sms: {start: "09:00", end: "21:00", days: [mon, tue, wed, thu, fri, sat]}\n'
        )
    )
    cal = cfg.calendar.send_calendar()
    # Wednesday 2026-01-07 at 23:00 UTC = 00:00 in Madrid on Thursday
    late = datetime(2026, 1, 7, 21, 30, tzinfo=UTC)  # 22:30 in Madrid
    assert cal.opening("email", late, "Europe/Madrid") is None
    assert cal.opening("sms", late, "Europe/Madrid") == datetime(2026, 1, 8, 8, 0, tzinfo=UTC)
    # the same instant is 17:30 in Bogotá: inside the debtor's window
    assert cal.opening("sms", late, "America/Bogota") is None
    holiday = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # Epiphany, a Tuesday
    assert cal.opening("email", holiday, "Europe/Madrid") == datetime(2026, 1, 6, 23, 0, tzinfo=UTC)
    # Saturday 21:30 in Madrid: Sunday is closed for SMS, so Monday 09:00
    saturday = datetime(2026, 1, 10, 20, 30, tzinfo=UTC)
    assert cal.opening("sms", saturday, "Europe/Madrid") == datetime(2026, 1, 12, 8, 0, tzinfo=UTC)


def test_due_dates_on_days_off_count_from_the_next_business_day() -> None:
    cfg = parse_config(with_calendar("  holidays: {country: ES}\n  due_dates: next_business_day\n"))
    due = cfg.calendar.due_calendar()
    saturday, monday = date(2026, 3, 7), date(2026, 3, 9)
    assert due.effective(saturday) == monday
    assert due.effective(date(2026, 3, 8)) == monday
    assert due.effective(monday) == monday
    # 6 January 2026 is a Tuesday and a holiday: Wednesday
    assert due.effective(date(2026, 1, 6)) == date(2026, 1, 7)
    # the stored due dates that count as due on Monday: Saturday to Monday
    assert due.due_exactly(monday) == (saturday, monday)
    assert due.due_exactly(saturday) is None
    assert due.due_by(date(2026, 3, 8)) == date(2026, 3, 6)  # Sunday: up to Friday's
    kept = parse_config(with_calendar("  holidays: {country: ES}\n")).calendar.due_calendar()
    assert kept.effective(saturday) == saturday
    assert kept.due_exactly(saturday) == (saturday, saturday)
