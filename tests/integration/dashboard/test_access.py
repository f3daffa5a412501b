"""Who may see and do what: no session, another company's session and ids, a read-only
user, a form without its token. Every dashboard route is in the matrix."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from cobro.store import tables as t
from cobro.web.dashboard import ROUTERS

from .conftest import Site
from .helpers import Browser, customer_id

READS = ("/dashboard/", "/dashboard/debtors", "/dashboard/debtors/{id}")
ACTIONS = ("resend", "promises", "disputes", "notes", "tasks")
# The screens that change the configuration (tested in test_communications, test_banking
# and test_automatic_actions: roles, form tokens, another company's ids).
CONFIGURATION = {
    ("GET", "/dashboard/settings/communications"),
    ("POST", "/dashboard/settings/communications"),
    ("GET", "/dashboard/banking"),
    ("POST", "/dashboard/banking/add"),
    ("GET", "/dashboard/banking/{notice_type}/edit"),
    ("POST", "/dashboard/banking/{notice_type}/edit"),
    ("GET", "/dashboard/banking/{notice_type}/remove"),
    ("POST", "/dashboard/banking/{notice_type}/remove"),
    ("GET", "/dashboard/actions"),
    ("POST", "/dashboard/actions"),
    ("GET", "/dashboard/actions/new"),
    ("GET", "/dashboard/actions/{key}"),
    ("POST", "/dashboard/actions/{key}"),
    ("GET", "/dashboard/actions/{key}/delete"),
    ("POST", "/dashboard/actions/{key}/delete"),
    ("GET", "/dashboard/segments"),
    ("POST", "/dashboard/segments"),
    ("GET", "/dashboard/segments/new"),
    ("GET", "/dashboard/segments/{name}"),
    ("POST", "/dashboard/segments/{name}"),
    ("GET", "/dashboard/segments/{name}/delete"),
    ("POST", "/dashboard/segments/{name}/delete"),
    ("GET", "/dashboard/audit"),
}
RECORDED = (
    t.outbox,
    t.promises,
    t.disputes,
    t.debtor_notes,
    t.tasks,
    t.staff_sessions,
    t.audit_log,
)


def counts(site: Site) -> dict[str, int]:
    with site.acme.engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in RECORDED
        }


def claim_of(site: Site, customer: str) -> int:
    o = t.outbox.c
    with site.acme.engine.connect() as conn:
        return int(
            conn.execute(
                select(o.id).where(o.customer_id == customer_id(site.acme, customer))
            ).scalar_one()
        )


def action_data(site: Site) -> dict[str, dict[str, Any]]:
    """A form for each action on C1 that a collector's session gets accepted."""
    r = t.receivables.c
    with site.acme.engine.connect() as conn:
        item = conn.execute(select(r.id).where(r.external_id == "F-2")).scalar_one()
    return {
        "resend": {"claim": claim_of(site, "C1")},
        "promises": {"item": item, "promised_on": "2025-03-10"},
        "disputes": {"item": item, "reason": "Goods returned"},
        "notes": {"text": "Called, will pay on Monday"},
        "tasks": {"message": "Call back", "due_on": "2025-03-05", "due_time": "10:00"},
    }


def test_the_matrix_holds_every_dashboard_route() -> None:
    routes = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    covered = {("GET", p.replace("{id}", "{debtor_id}")) for p in READS}
    covered |= {("POST", f"/dashboard/debtors/{{debtor_id}}/{a}") for a in ACTIONS}
    login = {
        ("GET", "/dashboard/login"),
        ("POST", "/dashboard/login"),
        ("POST", "/dashboard/logout"),
        ("GET", "/dashboard/language/{code}"),
    }
    assert routes == covered | login | CONFIGURATION


def test_without_a_session_every_page_and_form_goes_to_the_login(site: Site) -> None:
    before = counts(site)
    anonymous = site.browser()
    c1 = customer_id(site.acme, "C1")
    for path in READS:
        response = anonymous.get(path.format(id=c1))
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/dashboard/login?next=")
    for action, data in action_data(site).items():
        response = anonymous.post(f"/dashboard/debtors/{c1}/{action}", data={"csrf": "x", **data})
        assert response.status_code == 303, action
    assert counts(site) == before


def test_another_companys_session_finds_none_of_its_debtors_or_claims(site: Site) -> None:
    beta = site.staff("admin", company="beta")
    c1 = customer_id(site.acme, "C1")
    before = counts(site)
    page = beta.get(f"/dashboard/debtors/{c1}")
    assert page.status_code == 404 and "Acme Industrial" not in page.text
    for action, data in action_data(site).items():
        response = beta.form(f"/dashboard/debtors/{c1}/{action}", data)
        assert response.status_code == 404, action
        assert "Acme Industrial" not in response.text
    # Acme's claim named on beta's own debtor: not found either.
    b1 = customer_id(site.beta, "B1")
    resend = beta.form(f"/dashboard/debtors/{b1}/resend", {"claim": claim_of(site, "C1")})
    assert resend.status_code == 404
    listed = beta.get("/dashboard/debtors?q=Acme")
    assert "Acme Industrial" not in listed.text
    overview = beta.get("/dashboard/")
    assert "2.050,00" not in overview.text and "2.250,00" not in overview.text
    assert counts(site) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_a_read_only_user_records_nothing(site: Site, action: str) -> None:
    reader = site.staff("read-only")
    c1 = customer_id(site.acme, "C1")
    page = reader.get(f"/dashboard/debtors/{c1}")
    assert page.status_code == 200 and f'action="/dashboard/debtors/{c1}/' not in page.text
    before = counts(site)
    refused = reader.form(f"/dashboard/debtors/{c1}/{action}", action_data(site)[action])
    assert refused.status_code == 403
    assert "Su rol (read-only) no permite hacer esto." in refused.text
    assert counts(site) == before


def test_a_form_without_its_token_or_with_another_sessions_is_refused(site: Site) -> None:
    collector = site.staff("collector")
    other = site.staff("admin")
    c1 = customer_id(site.acme, "C1")
    foreign = other.csrf()
    before = counts(site)
    for action, data in action_data(site).items():
        url = f"/dashboard/debtors/{c1}/{action}"
        assert collector.post(url, data=data).status_code == 403, action
        assert collector.post(url, data={"csrf": foreign, **data}).status_code == 403, action
    assert collector.post("/dashboard/logout", data={}).status_code == 403
    assert counts(site) == before
    # With its token, each is accepted.
    for action, data in action_data(site).items():
        done = collector.form(f"/dashboard/debtors/{c1}/{action}", data)
        assert done.status_code == 303, (action, done.text)


def test_a_page_of_no_debtor_is_not_found(site: Site) -> None:
    admin = site.staff("admin")
    assert admin.get("/dashboard/debtors/999999").status_code == 404
    assert admin.get("/dashboard/debtors/abc").status_code in (404, 422)
    assert Browser(site.app).get("/dashboard/nothing-here").status_code == 404


def test_without_a_session_the_configuration_screens_go_to_the_login(site: Site) -> None:
    anonymous = site.browser()
    before = (site.acme.root / "cobro.yaml").read_text(encoding="utf-8")
    for method, path in sorted(CONFIGURATION):
        url = (
            path.replace("{notice_type}", "stop_payment")
            .replace("{key}", "x")
            .replace("{name}", "overdue_30")
        )
        response = anonymous.request(method, url, data={"csrf": "x"} if method == "POST" else None)
        assert response.status_code == 303, (method, url)
        assert response.headers["location"].startswith("/dashboard/login?next="), url
    assert (site.acme.root / "cobro.yaml").read_text(encoding="utf-8") == before
