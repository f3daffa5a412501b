"""The sending calendar over simulated days, on each database: channel hours in the debtor's
time zone, public holidays, due dates on days off, and contact frequency caps.

Twilio is a local HTTP server speaking its API (``tests/fakes``); email goes to a real SMTP
server. Time is an input: each run and dispatch is given its instant.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cobro.engine.dispatch import Dispatcher, DispatchReport
from cobro.engine.runs import (
    default_channels,
    dispatch_due,
    dispatch_rows,
    run_day,
    templates_for,
)
from cobro.engine.simulate import simulate
from cobro.store import tables as t
from cobro.workspace import Workspace
from e2e.cli import run_cobro
from fakes.twilio import FakeTwilio

from .conftest import SmtpServer
from .support import deliveries, invoice, load, rendezvous

MADRID = ZoneInfo("Europe/Madrid")
EMAIL_COST = "    cost: 0.0005                 # per message, in the company currency\n"
POLICIES = "# Policies: ordered phases"
BEFORE = "        template: reminder_before\n        mode: full\n"


def at(day: date | str, hhmm: str = "09:00") -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(d, time(h, m), MADRID).astimezone(UTC)


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", tw.auth_token)
        yield tw


def outbox(ws: Workspace, customer: str) -> list[Any]:
    o, c = t.outbox.c, t.customers.c
    with ws.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.step, o.occurrence_on, o.status, o.reason, o.next_attempt_at, o.id)
                .join(t.customers, c.id == o.customer_id)
                .where(c.external_id == customer)
                .order_by(o.id)
            ).all()
        )


def sent_at(ws: Workspace, customer: str) -> list[tuple[str, datetime]]:
    """(step, instant) of each delivery to the debtor ``customer``."""
    o, c, d = t.outbox.c, t.customers.c, t.deliveries.c
    with ws.engine.connect() as conn:
        return [
            (r.step, r.at)
            for r in conn.execute(
                select(o.step, d.at)
                .join(t.outbox, o.id == d.outbox_id)
                .join(t.customers, c.id == o.customer_id)
                .where(c.external_id == customer, d.status == "sent")
                .order_by(d.id)
            )
        ]


def test_an_sms_planned_at_22_00_goes_at_the_next_opening_once_in_the_debtor_s_time_zone(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = make_ws(
        replace={
            **smtp_server.replace,
            '  send_time: "09:00"': '  send_time: "22:00"',
            EMAIL_COST: EMAIL_COST + f"  sms:\n    account_sid: {twilio.account_sid}\n"
            f'    sender: "+34910000000"\n    api_url: {twilio.url}\n',
            BEFORE: BEFORE + "        channels: [sms]\n",
            POLICIES: 'calendar:\n  windows:\n    sms: {start: "09:00", end: "21:00"}\n\n'
            + POLICIES,
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "M", "name": "Madrid", "phone": "+34612345678"},
        {
            "external_id": "B",
            "name": "Bogotá",
            "phone": "+573001234567",
            "timezone": "America/Bogota",
        },
    )
    invoice(ws, "I-M", "M", date(2026, 3, 13), "100")
    invoice(ws, "I-B", "B", date(2026, 3, 13), "100")

    run_day(ws, date(2026, 3, 10), as_of=at("2026-03-10", "22:00"))  # 3 days before due
    # 22:00 in Madrid is 16:00 in Bogotá: inside that debtor's hours
    assert [m["to"] for m in twilio.messages] == ["+573001234567"]
    [row] = outbox(ws, "M")
    assert (row.status, row.next_attempt_at) == ("planned", at("2026-03-11", "09:00"))

    dispatch_due(ws, at("2026-03-11", "08:59"))
    assert len(twilio.messages) == 1
    dispatch_due(ws, at("2026-03-11", "09:00"))
    dispatch_due(ws, at("2026-03-11", "09:30"))
    assert [m["to"] for m in twilio.messages] == ["+573001234567", "+34612345678"]
    assert sent_at(ws, "M") == [("consumer/before", at("2026-03-11", "09:00"))]
    [row] = outbox(ws, "M")
    assert row.status == "sent"


def test_nothing_goes_out_on_national_and_regional_holidays(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_ws(
        replace={
            **smtp_server.replace,
            POLICIES: "calendar:\n  holidays: {country: ES, region: MD}\n\n" + POLICIES,
        }
    )
    holidays = {"P1": date(2026, 5, 2), "P2": date(2026, 12, 25), "P3": date(2027, 1, 6)}
    for who, day in holidays.items():
        load(ws, "customers", {"external_id": who, "name": who, "email": f"{who}@example.com"})
        invoice(ws, f"I-{who}", who, day, "100")  # "Payment due today" falls on the holiday
    for who, day in holidays.items():
        before = len(smtp_server.received)
        run_day(ws, day)
        assert len(smtp_server.received) == before, f"mail sent on {day}"
        assert ("consumer/due", day, "planned") in [r[:3] for r in outbox(ws, who)]
        run_day(ws, day + timedelta(days=1))
        assert ("consumer/due", at(day + timedelta(days=1))) in sent_at(ws, who)
    # each due notice was sent once, the day after its holiday
    for who in holidays:
        assert [s for s, _ in sent_at(ws, who)].count("consumer/due") == 1


@pytest.mark.parametrize("due_dates", ["keep", "next_business_day"])
def test_a_due_date_on_a_weekend_or_holiday_moves_to_the_next_business_day_if_configured(
    make_ws: Callable[..., Workspace], due_dates: str
) -> None:
    ws = make_ws(
        replace={
            POLICIES: f"calendar:\n  holidays: {{country: ES}}\n  due_dates: {due_dates}\n\n"
            + POLICIES
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "W", "name": "Weekend", "email": "w@example.com"},
        {"external_id": "H", "name": "Holiday", "email": "h@example.com"},
    )
    invoice(ws, "I-W", "W", date(2026, 3, 7), "100")  # a Saturday
    invoice(ws, "I-H", "H", date(2026, 5, 1), "100")  # Labour Day, a Friday
    days = [date(2026, 3, d) for d in (7, 8, 9)] + [date(2026, 5, d) for d in (1, 2, 3, 4)]
    for day in days:
        run_day(ws, day)
    due = {
        who: [r.occurrence_on for r in outbox(ws, who) if r.step == "consumer/due"] for who in "WH"
    }
    if due_dates == "keep":
        assert due == {"W": [date(2026, 3, 7)], "H": [date(2026, 5, 1)]}
    else:
        assert due == {"W": [date(2026, 3, 9)], "H": [date(2026, 5, 4)]}


def test_a_frequency_cap_holds_back_phases_and_actions_and_the_simulation_shows_it(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, db_url: str
) -> None:
    ws = make_ws(
        replace={
            **smtp_server.replace,
            POLICIES: "calendar:\n  caps:\n    - {max: 1, days: 7}\n\n"
            "actions:\n  - key: news\n    description: Monthly news\n    type: message\n"
            "    days: [16]\n    segment: card_holders\n    title: News\n"
            "    text: Our new opening hours.\n\n" + POLICIES,
        }
    )
    load(ws, "customers", {"external_id": "C", "name": "Carla", "email": "c@example.com"})
    invoice(ws, "I-C", "C", date(2026, 3, 10), "100")
    first, last = date(2026, 3, 7), date(2026, 3, 16)
    cap = "at most 1 message in 7 days (calendar.caps[0])"

    with ws.engine.connect() as conn, conn.begin() as trans:
        shown = [m for day in simulate(conn, ws.config, ws.company_id, first, last) for m in day]
        trans.rollback()
    assert [(m.date.day, m.step, m.channel, m.held_back) for m in shown] == [
        (7, "consumer/before", "email", None),
        (10, "consumer/due", "held", cap),
        (15, "consumer/after", "email", None),
        (16, "action/news", "held", cap),
    ]
    proc = run_cobro(
        ws.root, "--db", db_url, "simulate", "--from", "2026-03-07", "--to", "2026-03-16", "--json"
    )
    report = json.loads(proc.stdout)
    assert (report["messages"], report["held_back"]) == (2, 2)
    held = [(d["date"], m["phase"], m["held_back"]) for d in report["days"] for m in d["held_back"]]
    assert held == [("2026-03-10", "consumer/due", cap), ("2026-03-16", "action/news", cap)]

    day = first
    while day <= last:
        run_day(ws, day)
        day += timedelta(days=1)
    rows = [(r.step, r.occurrence_on.day, r.status, r.reason) for r in outbox(ws, "C")]
    assert rows == [
        ("consumer/before", 7, "sent", None),
        ("consumer/due", 10, "cancelled", f"held back: {cap}"),
        ("consumer/after", 15, "sent", None),
        ("action/news", 16, "cancelled", f"held back: {cap}"),
    ]
    assert len(smtp_server.received) == 2


def test_a_cap_on_sms_sends_the_next_claim_by_the_phase_s_next_channel(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer, twilio: FakeTwilio
) -> None:
    ws = make_ws(
        replace={
            **smtp_server.replace,
            EMAIL_COST: EMAIL_COST + f"  sms:\n    account_sid: {twilio.account_sid}\n"
            f'    sender: "+34910000000"\n    api_url: {twilio.url}\n',
            BEFORE: BEFORE + "        channels: [sms, email]\n",
            "        template: reminder_due\n        mode: full\n": (
                "        template: reminder_due\n        mode: full\n"
                "        channels: [sms, email]\n"
            ),
            POLICIES: "calendar:\n  caps:\n    - {max: 1, days: 7, channels: [sms]}\n\n" + POLICIES,
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "C", "name": "Carla", "email": "c@example.com", "phone": "+34612345678"},
    )
    invoice(ws, "I-C", "C", date(2026, 3, 10), "100")
    run_day(ws, date(2026, 3, 7))  # 3 days before due: by SMS
    run_day(ws, date(2026, 3, 10))  # due: the SMS cap is full, so by email
    assert [m["to"] for m in twilio.messages] == ["+34612345678"]
    assert [r.message["To"].addresses[0].addr_spec for r in smtp_server.received] == [
        "c@example.com"
    ]
    assert [(r.step, r.status) for r in outbox(ws, "C")] == [
        ("consumer/before", "sent"),
        ("consumer/due", "sent"),
    ]


def capped_debtor_and_another(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> Workspace:
    """A workspace capped at one message in 7 days where, on 16 March, the debtor C has
    three claims ready and then D one."""
    ws = make_ws(
        replace={
            **smtp_server.replace,
            POLICIES: "calendar:\n  caps:\n    - {max: 1, days: 7}\n\n" + POLICIES,
        }
    )
    load(
        ws,
        "customers",
        {"external_id": "C", "name": "Carla", "email": "c@example.com"},
        {"external_id": "D", "name": "Dario", "email": "d@example.com"},
    )
    invoice(ws, "I-C", "C", date(2026, 3, 10), "100")
    invoice(ws, "I-D", "D", date(2026, 3, 19), "100")
    for day in (7, 10, 15, 16):  # planned only
        run_day(ws, date(2026, 3, day), as_of=at(date(2026, 3, day), "07:00"))
    assert [(r.step, r.status) for r in outbox(ws, "C")] == [
        ("consumer/before", "planned"),
        ("consumer/due", "planned"),
        ("consumer/after", "planned"),
    ]
    return ws


def dispatch_at_once(workspaces: list[Workspace], as_of: datetime) -> list[DispatchReport]:
    """Run a dispatcher of each workspace (engines and connections of its own), one row a
    batch, in threads at the same time; their reports."""
    reports: list[DispatchReport] = []
    errors: list[BaseException] = []

    def dispatch(w: Workspace) -> None:
        dispatcher = Dispatcher(
            w.engine,
            w.config,
            w.company_id,
            w.secret,
            templates_for(w),
            default_channels(w, as_of),
            as_of,
            batch_size=1,
        )
        try:
            reports.append(asyncio.run(dispatcher.run()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatch, args=(w,)) for w in workspaces]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert [repr(e) for e in errors] == []
    assert len(reports) == len(workspaces)
    return reports


def assert_capped_once(
    ws: Workspace, smtp_server: SmtpServer, reports: list[DispatchReport]
) -> None:
    """C got one message, its two other claims are held back by the cap; D got its own;
    no claim was sent twice and none is left to send."""
    cap = "at most 1 message in 7 days (calendar.caps[0])"
    to = [r.rcpt_tos for r in smtp_server.received]
    assert sorted(to) == [("c@example.com",), ("d@example.com",)]
    assert sorted((r.status, r.reason) for r in outbox(ws, "C")) == [
        ("cancelled", f"held back: {cap}"),
        ("cancelled", f"held back: {cap}"),
        ("sent", None),
    ]
    assert [(r.step, r.status) for r in outbox(ws, "D")] == [("consumer/before", "sent")]
    assert sum(r.sent for r in reports) == 2
    assert sum(r.held_back for r in reports) == 2
    per_row = [x.outbox_id for x in deliveries(ws)]
    assert len(per_row) == len(set(per_row)) == 2


def test_a_cap_holds_when_two_dispatchers_send_to_one_debtor_at_the_same_time(
    make_ws: Callable[..., Workspace],
    smtp_server: SmtpServer,
    reopen: Callable[[Workspace], Workspace],
) -> None:
    ws = capped_debtor_and_another(make_ws, smtp_server)
    # Each dispatcher hands its first message over before either hears the answer and
    # records it: the second claims while the first holds a row of C.
    smtp_server.handler.hold(2)
    reports = dispatch_at_once([ws, reopen(ws)], at("2026-03-16"))
    assert_capped_once(ws, smtp_server, reports)


def test_a_cap_holds_when_two_dispatchers_claim_rows_of_one_debtor_at_the_same_instant(
    make_ws: Callable[..., Workspace],
    smtp_server: SmtpServer,
    reopen: Callable[[Workspace], Workspace],
    is_postgres: bool,
) -> None:
    ws = capped_debtor_and_another(make_ws, smtp_server)
    workspaces = [ws, reopen(ws)]
    smtp_server.handler.hold(2)
    # Both dispatchers have chosen their first row (one of C each) before either claim
    # commits: PostgreSQL, whose claims run side by side (SQLite's take turns).
    with rendezvous(
        [w.engine for w in workspaces] if is_postgres else [],
        2,
        lambda sql: sql.startswith("SELECT outbox.id, outbox.customer_id") and "FOR UPDATE" in sql,
        after=True,
    ):
        reports = dispatch_at_once(workspaces, at("2026-03-16"))
    assert_capped_once(ws, smtp_server, reports)


def test_a_cap_counts_what_a_dispatcher_that_began_later_has_already_sent(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = capped_debtor_and_another(make_ws, smtp_server)
    first = min(r.id for r in outbox(ws, "C"))
    # A pass begun at 09:05 sends C's first claim while a pass begun at 09:00 goes on
    # with the other rows: the message stamped 09:05 counts for it too.
    later = dispatch_rows(ws, frozenset({first}), at("2026-03-16", "09:05"))
    assert later.sent == 1
    earlier = dispatch_due(ws, at("2026-03-16", "09:00"))
    assert (earlier.sent, earlier.held_back) == (1, 2)  # D's claim; C's other two
    assert_capped_once(ws, smtp_server, [later, earlier])
