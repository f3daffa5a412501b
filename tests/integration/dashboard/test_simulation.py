"""The simulation screen: a collector simulates the next days in the background; the page
shows per day and channel the counts ``cobro simulate`` computes, and one day's detail a
page at a time; nothing in the database changes; one simulation at a time per company."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text

from cobro.engine.simulate import simulate
from cobro.store import tables as t

from ..support import load
from .conftest import Site
from .helpers import TODAY
from .test_messages import text_of

BIG = 60  # debtors added: one day's claims fill more than a page


def with_many_debtors(make_site: Callable[..., Site]) -> Site:
    site = make_site()
    load(
        site.acme,
        "customers",
        *(
            {
                "external_id": f"D{n:02d}",
                "name": f"Debtor {n:02d} S.L.",
                "kind": "business",
                "email": f"ap{n:02d}@debtors.example",
            }
            for n in range(BIG)
        ),
    )
    load(
        site.acme,
        "receivables",
        *(
            {
                "external_id": f"G-{n:02d}",
                "customer": f"D{n:02d}",
                "issued_on": "2025-02-01",
                "due_on": "2025-03-12",
                "amount": f"{100 + n}.00",
            }
            for n in range(BIG)
        ),
    )
    return site


def expected(site: Site, days: int) -> dict[str, Counter[str]]:
    """Per day, messages per channel, as ``cobro simulate`` computes them."""
    ws = site.acme
    found: dict[str, Counter[str]] = {}
    with ws.engine.connect() as conn:
        trans = conn.begin()
        try:
            for i, day in enumerate(
                simulate(conn, ws.config, ws.company_id, TODAY, TODAY + timedelta(days=days - 1))
            ):
                found[(TODAY + timedelta(days=i)).isoformat()] = Counter(m.channel for m in day)
        finally:
            trans.rollback()
    return found


def table(html: str) -> dict[str, dict[str, int]]:
    """The simulation's table: day -> channel -> messages."""
    body = html.partition('id="simulation-days"')[2].partition("<tfoot>")[0]
    days: dict[str, dict[str, int]] = {}
    for day, row in re.findall(r'<tr data-day="([^"]+)">(.*?)</tr>', body, re.S):
        cells = re.findall(r'data-channel="([a-z]+)">(.*?)</td>', row, re.S)
        days[day] = {ch: int(text_of(cell).strip()) for ch, cell in cells}
    return days


def recorded(site: Site) -> dict[str, int]:
    with site.acme.engine.connect() as conn:
        return {
            x.name: int(conn.execute(select(func.count()).select_from(x)).scalar_one())
            for x in (t.outbox, t.runs, t.claim_items, t.tasks, t.dunning_levels)
        }


def simulated(site: Site) -> Any:
    jobs = site.app.state.dashboard_simulations
    assert jobs.wait(site.acme.company_id, 120)
    return jobs.current(site.acme.company_id)


def test_a_simulation_shows_each_days_counts_and_one_days_detail(
    make_site: Callable[..., Site],
) -> None:
    site = with_many_debtors(make_site)
    want = expected(site, 7)
    before = recorded(site)
    reader = site.staff("read-only")
    first = reader.get("/dashboard/simulation")
    assert first.status_code == 200
    assert "No se ha simulado nada" in first.text
    assert 'action="/dashboard/simulation"' not in first.text  # a read-only user cannot start
    collector = site.staff("collector")
    started = collector.form("/dashboard/simulation", {"days": "7"}, "/dashboard/simulation")
    assert started.status_code == 303 and started.headers["location"] == "/dashboard/simulation"
    job = simulated(site)
    assert job.status == "done", job.error
    page = collector.get("/dashboard/simulation")
    shown = table(page.text)
    assert list(shown) == list(want)
    for day, counts in want.items():
        assert shown[day] == {ch: counts.get(ch, 0) for ch in shown[day]}, day
    assert sum(sum(c.values()) for c in want.values()) > BIG
    total = sum(n for c in want.values() for ch, n in c.items() if ch != "task")
    assert f'id="sim-total-messages">{total}<' in page.text
    assert "Iniciada por collector@acme.example" in page.text
    assert recorded(site) == before  # nothing was kept
    # The read-only user sees it too.
    assert table(reader.get("/dashboard/simulation").text) == shown
    # One day's detail, 50 at a time, each debtor linked to its account.
    busiest = max(want, key=lambda d: want[d]["email"])
    count = want[busiest]["email"]
    assert count > 50
    detail = reader.get(f"/dashboard/simulation/{busiest}?channel=email")
    assert detail.status_code == 200
    listed = re.findall(r'<span class="muted small">(D\d\d|C\d)</span>', detail.text)
    assert len(listed) == 50 and listed == sorted(listed)
    assert f"1–50 de {count}" in text_of(detail.text)
    assert re.search(r'href="/dashboard/debtors/\d+">Debtor 00 S.L.</a>', detail.text)
    following = reader.get(f"/dashboard/simulation/{busiest}?channel=email&at=50")
    rest = re.findall(r'<span class="muted small">(D\d\d|C\d)</span>', following.text)
    assert len(rest) == count - 50 and not set(rest) & set(listed)
    assert 'rel="next"' not in following.text and 'rel="prev"' in following.text
    # A place that is not one is the first page.
    odd = reader.get(f"/dashboard/simulation/{busiest}?channel=email&at=-5x")
    assert re.findall(r'<span class="muted small">(D\d\d|C\d)</span>', odd.text) == listed
    # A day outside the simulation, or no day at all: not found.
    outside = (TODAY + timedelta(days=7)).isoformat()
    assert reader.get(f"/dashboard/simulation/{outside}").status_code == 404
    assert reader.get("/dashboard/simulation/someday").status_code == 404


def test_a_simulation_refuses_a_bad_number_of_days(site: Site) -> None:
    collector = site.staff("collector")
    for days in ("0", "91", "many", ""):
        refused = collector.form("/dashboard/simulation", {"days": days}, "/dashboard/simulation")
        assert refused.status_code == 422, days
        assert "Indique un número de días de 1 a 90." in refused.text
    assert site.app.state.dashboard_simulations.current(site.acme.company_id) is None


def test_one_simulation_at_a_time_per_company(site: Site) -> None:
    """While the company's simulation waits for the database (held here), another is
    refused; once it is let go, it ends."""
    collector = site.staff("collector")
    beta = site.staff("collector", company="beta")  # logged in before: a login writes
    ws = site.acme
    with ws.engine.connect() as conn:
        trans = conn.begin()
        if conn.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
        else:
            conn.execute(text("UPDATE companies SET name = name WHERE id = 0"))
        started = collector.form("/dashboard/simulation", {"days": "3"}, "/dashboard/simulation")
        assert started.status_code == 303
        running = collector.get("/dashboard/simulation")
        assert 'http-equiv="refresh"' in running.text and "Simulando: 0 de 3" in running.text
        again = collector.form("/dashboard/simulation", {"days": "5"}, "/dashboard/simulation")
        assert again.status_code == 409
        assert "Todavía hay una simulación de esta empresa en marcha" in again.text
        # Another company's simulation is its own.
        assert "No se ha simulado nada" in beta.get("/dashboard/simulation").text
        trans.rollback()
    job = simulated(site)
    assert job.status == "done" and job.days == 3 and len(job.totals) == 3
    assert 'http-equiv="refresh"' not in collector.get("/dashboard/simulation").text
