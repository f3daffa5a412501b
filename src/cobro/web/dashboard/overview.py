"""The overview: open balance by days past due (a chart), DSO and CEI over the last 30 and
90 days, messages to debtors and what followed, amounts recovered by phase and channel,
the 90-day trend (messages and amount recovered per week, two charts), tasks due today."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from starlette.responses import Response

from cobro.domain.money import Money
from cobro.domain.reports import BUCKETS
from cobro.engine.reports import Overview, Week
from cobro.engine.reports import overview as read_overview
from cobro.engine.reports import trend as read_trend
from cobro.store.db import data_version
from cobro.web.dashboard.charts import bar_chart
from cobro.web.dashboard.helpers import step_label
from cobro.web.dashboard.labels import words
from cobro.web.dashboard.session import PREFIX, StaffDep
from cobro.web.dashboard.view import render
from cobro.web.deps import WebState
from cobro.web.pages import money_text

router = APIRouter(prefix=PREFIX)


# How long a request waits for figures being computed before it shows the last ones,
# saying when they were computed: a company of thousands of debtors gets them well
# within it; one of 200,000 sees the previous figures at once rather than wait seconds.
FRESH_WITHIN_S = 1.0


@dataclass(frozen=True)
class Figures:
    """The overview's figures, the ``data_version`` they were computed at, and when."""

    overview: Overview
    weeks: list[Week]
    version: int
    computed_at: datetime


class _Refresh(threading.Thread):
    """Computes one key's figures and keeps them; an error is kept for the request."""

    def __init__(self, state: WebState, key: tuple[Any, ...], company_id: int, today: date):
        super().__init__(name="cobro-overview", daemon=True)
        self.state, self.key, self.company_id, self.today = state, key, company_id, today
        self.error: Exception | None = None

    def run(self) -> None:
        state, company = self.state, self.state.ws.config.company
        currency, tz = company.currency, company.timezone
        try:
            with state.reader.connect() as conn:
                version = data_version(conn)  # read first: the figures are at least this new
                found = Figures(
                    read_overview(conn, self.company_id, currency, self.today, tz),
                    read_trend(conn, self.company_id, currency, self.today, tz),
                    version,
                    state.now(),
                )
            state.figures.put(self.key, version, found)
        except Exception as exc:  # shown by the request that waits for it
            self.error = exc


def refresh_of(state: WebState, key: tuple[Any, ...], company_id: int, today: date) -> _Refresh:
    """The computation of ``key``'s figures under way, started if none is."""
    with state.computing:
        running = state.refreshing.get(key)
        if isinstance(running, _Refresh) and running.is_alive():
            return running
        started = _Refresh(state, key, company_id, today)
        state.refreshing[key] = started
        started.start()
        return started


def figures(
    state: WebState, company_id: int, today: date, wait_s: float = FRESH_WITHIN_S
) -> tuple[Figures, bool]:
    """The overview's figures as of ``today``, and whether they are those of the data as
    it is now. Figures are kept while ``data_version`` stays (every transaction that
    writes moves it on, in any process). Once it moves, they are computed again in a
    thread; a request waits for them at most ``wait_s`` when earlier figures are kept
    (then it shows those, saying when they were computed), else until they are ready.
    Concurrent requests share one computation."""
    company = state.ws.config.company
    key = (company_id, company.currency, today, company.timezone)
    with state.reader.connect() as conn:
        version = data_version(conn)
    kept: Figures | None = state.figures.latest(key)
    if kept is not None and kept.version >= version:
        return kept, True
    refresh = refresh_of(state, key, company_id, today)
    refresh.join(None if kept is None else wait_s)
    newest: Figures | None = state.figures.latest(key)
    if newest is None:
        if refresh.error is not None:
            raise refresh.error
        raise RuntimeError("the overview's figures could not be computed")
    return newest, newest.version >= version


@router.get("/", name="dashboard_overview")
def overview(request: Request, who: StaffDep) -> Response:
    state = who.state
    config = state.ws.config
    company = config.company
    today = state.today()
    computed, current = figures(state, who.company_id, today)
    found, weeks = computed.overview, computed.weeks
    said = words(who.language)

    def text(value: Money) -> str:
        return money_text(value, who.locale)

    chart = bar_chart(
        said["aging_chart"].format(currency=company.currency),
        [
            (
                said[f"bucket_{name}"],
                found.aging[name].amount,
                text(found.aging[name]),
                f"bucket-{name.replace('+', 'plus')}",
                f"{PREFIX}/debtors?overdue={name}",
            )
            for name in BUCKETS
        ],
    )
    week_labels = [format_date(w.first, "d MMM", locale=who.locale) for w in weeks]
    trend_messages = bar_chart(
        said["trend_messages_chart"],
        [
            (label, Decimal(w.messages), str(w.messages), "trend-messages", None)
            for label, w in zip(week_labels, weeks, strict=True)
        ],
    )
    trend_recovered = bar_chart(
        said["trend_recovered_chart"].format(currency=company.currency),
        [
            (label, w.recovered.amount, text(w.recovered), "trend-recovered", None)
            for label, w in zip(week_labels, weeks, strict=True)
        ],
    )
    phases = {
        p.days: [
            (step_label(config, step, said, who.language) if step else said["no_claim"], amount)
            for step, amount in p.by_phase
        ]
        for p in found.periods
    }
    return render(
        who,
        request,
        "overview.j2",
        {
            "found": found,
            "chart": chart,
            "weeks": weeks,
            "trend_charts": [
                (
                    "trend-messages",
                    trend_messages,
                    format_decimal(trend_messages.top, locale=who.locale),
                ),
                (
                    "trend-recovered",
                    trend_recovered,
                    text(Money.of(trend_recovered.top, company.currency)),
                ),
            ],
            "buckets": BUCKETS,
            "computed_at": None if current else computed.computed_at,
            "phases": phases,
            "overdue_total": sum(
                (found.aging[name] for name in BUCKETS if name != "current"),
                Money.from_minor(0, company.currency),
            ),
        },
        screen="overview",
    )
