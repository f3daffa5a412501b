"""The overview: open balance by days past due (a chart), DSO and CEI over the last 30 and
90 days, messages to debtors and what followed, amounts recovered by phase and channel,
the 90-day trend (messages and amount recovered per week, two charts), tasks due today."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from starlette.responses import Response

from cobro.domain.money import Money
from cobro.domain.reports import BUCKETS
from cobro.engine.reports import Overview, Week
from cobro.engine.reports import overview as read_overview
from cobro.engine.reports import trend as read_trend
from cobro.evidence.history import step_name
from cobro.store.db import data_version
from cobro.web.dashboard.charts import bar_chart
from cobro.web.dashboard.labels import words
from cobro.web.dashboard.session import PREFIX, StaffDep
from cobro.web.dashboard.view import render
from cobro.web.deps import WebState
from cobro.web.pages import money_text

router = APIRouter(prefix=PREFIX)


def figures(state: WebState, company_id: int, today: date) -> tuple[Overview, list[Week]]:
    """The overview's figures as of ``today``: computed once per ``data_version`` (every
    transaction that writes moves it on, in any process) and kept; while they are
    computed, other requests for them wait rather than compute them too."""
    company = state.ws.config.company
    key = (company_id, company.currency, today, company.timezone)
    with state.reader.connect() as conn:
        kept: tuple[Overview, list[Week]] | None = state.figures.get(key, data_version(conn))
    if kept is not None:
        return kept
    with state.computing, state.reader.connect() as conn:
        version = data_version(conn)  # read first: the figures are at least this new
        kept = state.figures.get(key, version)
        if kept is None:
            kept = (
                read_overview(conn, company_id, company.currency, today, company.timezone),
                read_trend(conn, company_id, company.currency, today, company.timezone),
            )
            state.figures.put(key, version, kept)
    return kept


@router.get("/", name="dashboard_overview")
def overview(request: Request, who: StaffDep) -> Response:
    state = who.state
    config = state.ws.config
    company = config.company
    today = state.today()
    found, weeks = figures(state, who.company_id, today)
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
            (step_name(config, step) if step else said["no_claim"], amount)
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
            "phases": phases,
            "overdue_total": sum(
                (found.aging[name] for name in BUCKETS if name != "current"),
                Money.from_minor(0, company.currency),
            ),
        },
        screen="overview",
    )
