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
from .helpers import TODAY, Browser, Work, customer_id, work_data

# Every page, its ids filled in by ``pages``.
READS = (
    "/dashboard/",
    "/dashboard/debtors",
    "/dashboard/debtors/{debtor_id}",
    "/dashboard/messages",
    "/dashboard/tasks",
    "/dashboard/disputes",
    "/dashboard/simulation",
    "/dashboard/simulation/{day}",
    "/dashboard/policies",
    "/dashboard/templates/{name}",
    "/dashboard/templates/{name}/{language}.html",
)
# Every form: the account's actions, then the work screens'.
ACTIONS = ("resend", "promises", "disputes", "notes", "tasks")
FORMS = (
    *(f"/dashboard/debtors/{{debtor_id}}/{a}" for a in ACTIONS),
    "/dashboard/messages/resend",
    "/dashboard/tasks/{task_id}/done",
    "/dashboard/tasks/{task_id}/assign",
    "/dashboard/disputes/{dispute_id}/resolve",
    "/dashboard/simulation",
)
# The screens that change the configuration (tested in test_communications, test_banking,
# test_automatic_actions, test_template_editing and test_phases: roles, form tokens, another
# company's ids).
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
    ("POST", "/dashboard/templates/{name}"),
    ("GET", "/dashboard/templates/{name}/restore"),
    ("POST", "/dashboard/templates/{name}/restore"),
    ("GET", "/dashboard/policies/{policy}/phases/{key}"),
    ("POST", "/dashboard/policies/{policy}/phases/{key}"),
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


def state_of(site: Site) -> dict[str, Any]:
    """What a form could change: rows recorded, tasks' status and assignee, disputes'
    status, the company's simulation."""
    k, d = t.tasks.c, t.disputes.c
    with site.acme.engine.connect() as conn:
        found: dict[str, Any] = {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in RECORDED
        }
        found["task states"] = sorted(conn.execute(select(k.id, k.status, k.assignee)).all())
        found["dispute states"] = sorted(conn.execute(select(d.id, d.status)).all())
    found["simulation"] = site.app.state.dashboard_simulations.current(site.acme.company_id)
    return found


def claim_of(site: Site, customer: str) -> int:
    o = t.outbox.c
    with site.acme.engine.connect() as conn:
        return int(
            conn.execute(
                select(o.id).where(o.customer_id == customer_id(site.acme, customer))
            ).scalar_one()
        )


def pages(site: Site) -> list[str]:
    """Every page of acme, with acme's ids."""
    c1 = customer_id(site.acme, "C1")
    ids = {"debtor_id": c1, "day": TODAY.isoformat(), "name": "b2b_01", "language": "es"}
    found = [p.format(**ids) for p in READS]
    return [p + ("?debtor=C1" if "/templates/" in p else "") for p in found]


def forms(site: Site, work: Work) -> list[tuple[str, dict[str, Any]]]:
    """A form for each action on acme that a collector's session gets accepted."""
    r = t.receivables.c
    with site.acme.engine.connect() as conn:
        item = conn.execute(select(r.id).where(r.external_id == "F-7")).scalar_one()
    c1 = customer_id(site.acme, "C1")
    return [
        (f"/dashboard/debtors/{c1}/resend", {"claim": claim_of(site, "C1")}),
        (f"/dashboard/debtors/{c1}/promises", {"item": item, "promised_on": "2025-03-10"}),
        (f"/dashboard/debtors/{c1}/disputes", {"item": item, "reason": "Goods returned"}),
        (f"/dashboard/debtors/{c1}/notes", {"text": "Called, will pay on Monday"}),
        (
            f"/dashboard/debtors/{c1}/tasks",
            {"message": "Call back", "due_on": "2025-03-05", "due_time": "10:00"},
        ),
        (
            "/dashboard/messages/resend",
            {"claim": claim_of(site, "C1"), "to": "ap@acme-industrial.example"},
        ),
        (f"/dashboard/tasks/{work.task_overdue}/done", {}),
        (f"/dashboard/tasks/{work.task_today}/assign", {"assignee": "collector@acme.example"}),
        (f"/dashboard/disputes/{work.dispute}/resolve", {"decision": "reject", "note": "No"}),
        ("/dashboard/simulation", {"days": "2"}),
    ]


def action_data(site: Site) -> dict[str, dict[str, Any]]:
    """A form for each action on C1's account that a collector's session gets accepted."""
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


def finished(site: Site) -> None:
    """The company's simulation, if one was started, has ended."""
    assert site.app.state.dashboard_simulations.wait(site.acme.company_id, 120)


def test_the_matrix_holds_every_dashboard_route() -> None:
    routes = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    covered = {("GET", p) for p in READS} | {("POST", p) for p in FORMS}
    login = {
        ("GET", "/dashboard/login"),
        ("POST", "/dashboard/login"),
        ("POST", "/dashboard/logout"),
        ("GET", "/dashboard/language/{code}"),
    }
    assert routes == covered | login | CONFIGURATION


def test_without_a_session_every_page_and_form_goes_to_the_login(site: Site) -> None:
    work = work_data(site.acme)
    before = state_of(site)
    anonymous = site.browser()
    for path in pages(site):
        response = anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/dashboard/login?next=")
    for url, data in forms(site, work):
        response = anonymous.post(url, data={"csrf": "x", **data})
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/dashboard/login")
    assert state_of(site) == before


def test_another_companys_session_finds_none_of_its_debtors_claims_tasks_or_disputes(
    site: Site,
) -> None:
    work = work_data(site.acme)
    # Acme has a simulation of its own.
    acme = site.staff("collector")
    assert acme.form("/dashboard/simulation", {"days": "1"}).status_code == 303
    finished(site)
    beta = site.staff("admin", company="beta")
    before = state_of(site)
    for path in pages(site):
        if "{" in path or path.rstrip("/").count("/") < 2:
            continue
        response = beta.get(path)
        if any(key in path for key in ("/debtors/", "/simulation/", "/templates/")):
            assert response.status_code == 404, path
        else:
            assert response.status_code == 200, path
        for acme_data in ("Acme Industrial", "ap@acme-industrial", "Goods returned", "Call Acme"):
            assert acme_data not in response.text, (path, acme_data)
    assert "No se ha simulado nada" in beta.get("/dashboard/simulation").text
    for url, data in forms(site, work):
        if url == "/dashboard/simulation":
            continue  # beta's own simulation: nothing of acme's to name
        response = beta.form(url, data)
        assert response.status_code == 404, url
        assert "Acme Industrial" not in response.text
    # Acme's claim named on beta's own debtor: not found either.
    b1 = customer_id(site.beta, "B1")
    resend = beta.form(f"/dashboard/debtors/{b1}/resend", {"claim": claim_of(site, "C1")})
    assert resend.status_code == 404
    listed = beta.get("/dashboard/debtors?q=Acme")
    assert "Acme Industrial" not in listed.text
    overview = beta.get("/dashboard/")
    assert "2.050,00" not in overview.text and "2.250,00" not in overview.text
    # Beta's own debtor is previewed; acme's template files are acme's.
    assert beta.get("/dashboard/templates/b2b_01?debtor=B1").status_code == 200
    assert state_of(site) == before


@pytest.mark.parametrize("action", range(len(FORMS)))
def test_a_read_only_user_records_nothing(site: Site, action: int) -> None:
    work = work_data(site.acme)
    reader = site.staff("read-only")
    c1 = customer_id(site.acme, "C1")
    page = reader.get(f"/dashboard/debtors/{c1}")
    assert page.status_code == 200 and f'action="/dashboard/debtors/{c1}/' not in page.text
    for path in pages(site)[3:7]:
        assert 'method="post"' not in reader.get(path).text.partition("</header>")[2], path
    url, data = forms(site, work)[action]
    before = state_of(site)
    refused = reader.form(url, data)
    assert refused.status_code == 403
    assert "Su rol (read-only) no permite hacer esto." in refused.text
    assert state_of(site) == before


def test_a_form_without_its_token_or_with_another_sessions_is_refused(site: Site) -> None:
    work = work_data(site.acme)
    collector = site.staff("collector")
    other = site.staff("admin")
    foreign = other.csrf()
    before = state_of(site)
    for url, data in forms(site, work):
        assert collector.post(url, data=data).status_code == 403, url
        assert collector.post(url, data={"csrf": foreign, **data}).status_code == 403, url
    assert collector.post("/dashboard/logout", data={}).status_code == 403
    assert state_of(site) == before
    # With its token, each is accepted.
    for url, data in forms(site, work):
        done = collector.form(url, data)
        assert done.status_code == 303, (url, done.text)
    finished(site)


def test_a_page_of_no_debtor_task_or_dispute_is_not_found(site: Site) -> None:
    admin = site.staff("admin")
    assert admin.get("/dashboard/debtors/999999").status_code == 404
    assert admin.get("/dashboard/debtors/abc").status_code in (404, 422)
    for url in (
        "/dashboard/tasks/999999/done",
        "/dashboard/tasks/999999/assign",
        "/dashboard/disputes/999999/resolve",
    ):
        assert admin.form(url, {"decision": "accept"}).status_code == 404, url
    assert admin.form("/dashboard/messages/resend", {"claim": "999999"}).status_code == 404
    assert admin.form("/dashboard/messages/resend", {"claim": "x"}).status_code == 404
    assert Browser(site.app).get("/dashboard/nothing-here").status_code == 404


def test_without_a_session_the_configuration_screens_go_to_the_login(site: Site) -> None:
    anonymous = site.browser()
    before = (site.acme.root / "cobro.yaml").read_text(encoding="utf-8")
    for method, path in sorted(CONFIGURATION):
        url = (
            path.replace("{notice_type}", "stop_payment")
            .replace("{key}", "x")
            .replace("{name}", "overdue_30")
            .replace("{policy}", "b2b")
        )
        response = anonymous.request(method, url, data={"csrf": "x"} if method == "POST" else None)
        assert response.status_code == 303, (method, url)
        assert response.headers["location"].startswith("/dashboard/login?next="), url
    assert (site.acme.root / "cobro.yaml").read_text(encoding="utf-8") == before
