"""The overview's figures on the fixed data set (helpers.acme_data), against values worked
out by hand with the formulas of docs/reports.md; and the page that shows them."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cobro.domain.money import Money
from cobro.engine.reports import overview, trend
from cobro.engine.responses import Client, record_view
from cobro.engine.tasks import open_task
from cobro.store import tables as t
from cobro.web.dashboard import overview as overview_page
from cobro.workspace import Workspace, open_workspace

from ..conftest import SmtpServer
from ..support import load
from .conftest import Site
from .helpers import TODAY, customer_id


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def loaded(
    make_site: Callable[..., Site], smtp_server: SmtpServer, replace: dict[str, str] | None = None
) -> Site:
    """The data set, its run of 2025-03-03 (C1's claim sent, C2's refused by the mail
    server), then C1 paying 200 of F-2 on 2025-03-04, opening and confirming the claim.
    ``replace``: more changes to the companies' cobro.yaml."""
    smtp_server.handler.refuse("pay@beta-retail.example", "550 5.1.1 no such user")
    site = make_site(replace={**smtp_server.replace, **(replace or {})})
    ws = site.acme
    load(
        ws,
        "payments",
        {
            "external_id": "P3",
            "customer": "C1",
            "amount": "200.00",
            "paid_on": "2025-03-04",
            "receivable": "F-2",
        },
        now=datetime(2025, 3, 4, 9, 0, tzinfo=UTC),
    )
    o = t.outbox.c
    c1, c3 = customer_id(ws, "C1"), customer_id(ws, "C3")
    with ws.engine.begin() as conn:
        claim = conn.execute(
            select(o.id).where(o.customer_id == c1, o.status == "sent")
        ).scalar_one()
        for kind in ("opened", "opened", "read"):  # opened twice: one claim opened
            record_view(
                conn,
                ws.company_id,
                c1,
                claim,
                kind,
                datetime(2025, 3, 3, 15, 0, tzinfo=UTC),
                Client("198.51.100.1", "Mail app"),
            )
        madrid = ZoneInfo("Europe/Madrid")
        open_task(
            conn,
            ws.company_id,
            c3,
            "Call Carla",
            datetime(2025, 3, 4, 15, 0, tzinfo=madrid),
            datetime(2025, 3, 4, 9, 0, tzinfo=UTC),
            TODAY,
        )
    return site


def test_the_overview_figures_match_those_worked_out_by_hand(
    make_site: Callable[..., Site], smtp_server: SmtpServer
) -> None:
    # An email costs 0.35 here (the starter's 0.0005 is less than a cent).
    site = loaded(make_site, smtp_server, {"    cost: 0.0005 ": "    cost: 0.35 "})
    ws = site.acme
    with ws.engine.connect() as conn:
        found = overview(conn, ws.company_id, "EUR", TODAY, "Europe/Madrid")
    # Aging: F-3 not due; F-2 (300 left, 18 days) and F-6 (4 days); F-1 (600 left, 74
    # days); F-4 (124 days). F-5 is paid. F-7 is in USD.
    assert found.aging == {
        "current": eur("800"),
        "1-30": eur("450"),
        "31-60": eur("0"),
        "61-90": eur("600"),
        "90+": eur("200"),
    }
    assert found.other_currencies["USD"]["1-30"] == Money.of("50", "USD")
    assert found.outstanding == eur("2050") and found.current == eur("800")
    assert found.debtors_overdue == 3
    by_days = {p.days: p for p in found.periods}
    last30, last90 = by_days[30], by_days[90]
    # Sales: issued from 2025-02-03 (F-3, F-6) and from 2024-12-05 (F-2, F-3, F-5, F-6).
    assert last30.sales == eur("950") and last90.sales == eur("1850")
    # Owed when each period began: F-1 900 + F-2 500 + F-4 200 + F-5 400 on 2025-02-02;
    # F-1 1000 + F-4 200 on 2024-12-04.
    assert last30.beginning == eur("2000") and last90.beginning == eur("1200")
    # DSO = 2050 / 950 * 30 = 64.74; 2050 / 1850 * 90 = 99.73.
    assert last30.dso == Decimal("64.7") and last90.dso == Decimal("99.7")
    # CEI = (2000 + 950 - 2050) / (2000 + 950 - 800) = 900 / 2150 = 41.86 %;
    # (1200 + 1850 - 2050) / (1200 + 1850 - 800) = 1000 / 2250 = 44.44 %.
    assert last30.cei == Decimal("41.9") and last90.cei == Decimal("44.4")
    # Messages: C1's claim sent and C2's refused; C1's link opened twice and read once.
    assert (last30.sent, last30.delivered, last30.failed) == (2, 1, 1)
    assert (last30.opened, last30.read) == (1, 1)
    # Recovered: P1 300 and P2 400 with no claim before them; P3 200 after C1's claim
    # b2b/01 of 2025-03-03 (sent by email) that listed F-2. P0 100 is older than 30 days.
    assert last30.recovered == eur("900") and last90.recovered == eur("1000")
    assert dict(last30.by_phase) == {"b2b/01": eur("200"), None: eur("700")}
    assert dict(last90.by_phase) == {"b2b/01": eur("200"), None: eur("800")}
    channels = {ch: (amount, cost) for ch, amount, cost in last30.by_channel}
    assert channels["email"][0] == eur("200") and channels[None][0] == eur("700")
    # Against what each channel cost: C1's email delivered, 0.35; C2's, refused by the mail
    # server, nothing. Payments with no claim before them: no channel, no cost.
    assert channels["email"][1] == eur("0.35") and channels[None][1] == eur("0")
    assert set(channels) == {"email", None}
    assert [x.message for x in found.tasks_today] == ["Call Carla"]


def test_the_overview_page_shows_the_figures_and_draws_the_aging_chart(
    make_site: Callable[..., Site], smtp_server: SmtpServer
) -> None:
    site = loaded(make_site, smtp_server)
    page = site.staff("read-only").get("/dashboard/")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'id="aging-chart"' in html
    aging = html.partition('id="aging-chart"')[2].partition("</svg>")[0]
    heights = [
        float(h)
        for h in re.findall(
            r'<rect class="bar [^"]+" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', aging
        )
    ]
    # Five bars, as tall as their share: 800, 450, 0, 600 and 200 of a top of 1,000.
    assert len(heights) == 5 and heights[2] == 0
    assert heights[0] / heights[3] == 800 / 600 and heights[1] / heights[4] == 450 / 200
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "2.050,00 €" in text  # outstanding, in the company's Spanish
    assert "64,7" in text and "99,7" in text and "41,9 %" in text and "44,4 %" in text
    assert "Pagado sin reclamación enviada 700,00 €" in text
    assert "Vencida e impagada desde hace 7 días 200,00 €" in text
    assert "Call Carla" in text
    # The bars link to the debtors of their bucket.
    assert 'href="/dashboard/debtors?overdue=90+"' in html


def test_the_90_day_trend_by_week_matches_the_data_set(
    make_site: Callable[..., Site], smtp_server: SmtpServer
) -> None:
    site = loaded(make_site, smtp_server)
    ws = site.acme
    with ws.engine.connect() as conn:
        weeks = trend(conn, ws.company_id, "EUR", TODAY, "Europe/Madrid")
        found = overview(conn, ws.company_id, "EUR", TODAY, "Europe/Madrid")
    # 2024-12-05 (a Thursday, 89 days before) to 2025-03-04 (a Tuesday): a first week cut
    # to Thursday-Sunday, twelve whole weeks, and Monday-Tuesday of this one.
    assert (weeks[0].first, weeks[0].last) == (date(2024, 12, 5), date(2024, 12, 8))
    assert (weeks[-1].first, weeks[-1].last) == (date(2025, 3, 3), date(2025, 3, 4))
    assert len(weeks) == 14
    assert all(w.first.weekday() == 0 for w in weeks[1:])
    assert all((b.first - a.last).days == 1 for a, b in itertools.pairwise(weeks))
    by_week = {w.first: w for w in weeks}
    # Both messages of the run of 2025-03-03 (one delivered, one refused) this week.
    assert [w.messages for w in weeks] == [0] * 13 + [2]
    # P0 100 on 01-20, P1 300 on 02-10, P2 400 on 02-25, P3 200 on 03-04.
    assert by_week[date(2025, 1, 20)].recovered == eur("100")
    assert by_week[date(2025, 2, 10)].recovered == eur("300")
    assert by_week[date(2025, 2, 24)].recovered == eur("400")
    assert by_week[date(2025, 3, 3)].recovered == eur("200")
    assert sum(w.recovered.minor for w in weeks) == 100000
    # Over the trend they add up to the overview's 90 days.
    last90 = {p.days: p for p in found.periods}[90]
    assert sum(w.messages for w in weeks) == last90.sent
    assert sum(w.recovered.minor for w in weeks) == last90.recovered.minor
    # The page draws them: one bar per week, as tall as its share.
    html = site.staff("read-only").get("/dashboard/").text
    chart = html.partition('id="trend-recovered-chart"')[2].partition("</svg>")[0]
    heights = [
        float(h) for h in re.findall(r'class="bar trend-recovered"[^>]* height="([^"]+)"', chart)
    ]
    assert len(heights) == 14
    assert heights[-1] / heights[list(by_week).index(date(2025, 2, 24))] == 200 / 400
    messages = html.partition('id="trend-messages-chart"')[2].partition("</svg>")[0]
    assert re.findall(r'class="bar trend-messages"[^>]* height="([^"]+)"', messages)[-1] != "0.0"
    assert '<tr data-week="2025-02-24"><th scope="row">24 feb 2025 – 2 mar 2025</th>' in html


def test_the_next_overview_shows_a_change_made_by_another_process(
    make_site: Callable[..., Site], smtp_server: SmtpServer
) -> None:
    """The figures are kept between requests while the data stays as it was: a payment
    written through another engine (as ``cobro import`` in its own process would) and
    the next day both show on the next page."""
    site = loaded(make_site, smtp_server)
    browser = site.staff("read-only")

    def outstanding() -> str:
        page = browser.get("/dashboard/")
        assert page.status_code == 200, page.text
        return kpi(page.text, "outstanding")

    assert outstanding() == outstanding() == "2.050,00 €"
    pay(site.acme, "150.00")
    assert outstanding() == "1.900,00 €"
    # The next day (logged in again): the figures as of that day, where Carla's call of
    # the 4th is overdue and no longer among today's tasks.
    site.clock.now = site.clock.now + timedelta(days=1)
    page = site.staff("read-only").get("/dashboard/")
    assert "5 de marzo de 2025" in page.text
    assert "Call Carla" not in page.text.partition('id="tasks-today"')[2]


class HeldRefresh(overview_page._Refresh):
    """A computation of the figures that starts when the test says so (``go``)."""

    def __init__(self, go: threading.Event, *args: Any) -> None:
        super().__init__(*args)
        self.go = go

    def run(self) -> None:
        assert self.go.wait(60)
        super().run()


def test_while_new_figures_are_computed_the_overview_shows_the_last_ones_and_says_so(
    make_site: Callable[..., Site], smtp_server: SmtpServer
) -> None:
    """A company of 200,000 debtors takes seconds to compute its figures: after a change,
    the page waits for them a moment, then shows the figures it has, saying when they
    were computed; the next page, once they are computed, shows the new ones."""
    site = loaded(make_site, smtp_server)
    browser = site.staff("read-only")
    page = browser.get("/dashboard/")
    assert kpi(page.text, "outstanding") == "2.050,00 €"
    assert 'id="figures-updating"' not in page.text
    pay(site.acme, "150.00")

    state = site.app.state.cobro.companies["acme"]
    company = state.ws.config.company
    key = (site.acme.company_id, company.currency, state.today(), company.timezone)
    go = threading.Event()
    held = HeldRefresh(go, state, key, site.acme.company_id, state.today())
    with state.computing:
        state.refreshing[key] = held
    held.start()
    try:
        page = browser.get("/dashboard/")  # waits FRESH_WITHIN_S, then shows what it has
        assert kpi(page.text, "outstanding") == "2.050,00 €"
        notice = re.search(r'id="figures-updating"[^>]*>([^<]*)<', page.text)
        assert notice, page.text
        shown = site.clock.now.astimezone(ZoneInfo(company.timezone))
        assert f"se calcularon a las {shown:%-d/%-m/%y, %-H:%M}" in notice[1], notice[1]
    finally:
        go.set()
        held.join(60)
    assert held.error is None
    page = browser.get("/dashboard/")
    assert kpi(page.text, "outstanding") == "1.900,00 €"
    assert 'id="figures-updating"' not in page.text


def kpi(html: str, name: str) -> str:
    found = re.search(rf'id="kpi-{name}".*?<span class="value">([^<]*)<', html)
    assert found, html
    return re.sub(r"\s+", " ", found[1])


def pay(ws: Workspace, amount: str) -> None:
    """C2 pays ``amount`` of F-4, written through another engine (another process)."""
    other = open_workspace(ws.root, ws.engine.url.render_as_string(hide_password=False))
    try:
        load(
            other,
            "payments",
            {
                "external_id": "P9",
                "customer": "C2",
                "amount": amount,
                "paid_on": "2025-03-04",
                "receivable": "F-4",
            },
            now=datetime(2025, 3, 4, 11, 0, tzinfo=UTC),
        )
    finally:
        other.close()
