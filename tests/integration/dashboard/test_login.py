"""Logging in and out: the session cookie, its expiry, the login limits, a user of two
companies, the login form's token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from cobro.engine import users
from cobro.engine.users import add_user, remove_user, set_password
from cobro.store import tables as t

from .conftest import Site
from .helpers import NOW, PASSWORD, Browser


def sessions(site: Site) -> int:
    with site.acme.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.staff_sessions)).scalar_one())


def test_a_page_asks_to_log_in_first_and_comes_back_after(site: Site) -> None:
    browser = site.browser()
    first = browser.get("/dashboard/debtors?q=Acme")
    assert first.status_code == 303
    assert first.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fdebtors%3Fq%3DAcme"
    page = browser.get(first.headers["location"])
    assert page.status_code == 200 and 'name="password"' in page.text
    # One login page for every company: it names none of them.
    assert "Distribuciones Demo" not in page.text
    token = browser.csrf(first.headers["location"])
    done = browser.post(
        "/dashboard/login",
        data={
            "csrf": token,
            "email": "Collector@ACME.example",
            "password": PASSWORD,
            "next": "/dashboard/debtors?q=Acme",
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/debtors?q=Acme"
    cookie = done.headers["set-cookie"]
    assert "cobro_staff=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/dashboard" in cookie and "Secure" not in cookie
    listed = browser.get("/dashboard/debtors?q=Acme")
    assert listed.status_code == 200 and "Acme Industrial" in listed.text
    assert "Beta Retail" not in listed.text


def test_over_https_the_session_cookie_is_secure(site: Site) -> None:
    browser = Browser(site.app, scheme="https")
    done = browser.login(site.users["acme"]["admin"])
    assert done.status_code == 303
    assert "Secure" in done.headers["set-cookie"]


def test_a_wrong_password_or_unknown_email_logs_no_one_in(site: Site) -> None:
    browser = site.browser()
    for email, password in (
        ("collector@acme.example", "not the password"),
        ("nobody@acme.example", PASSWORD),
    ):
        refused = browser.login(email, password)
        assert refused.status_code == 401
        assert "El correo o la contraseña no son correctos." in refused.text
    assert "cobro_staff" not in browser.cookies
    assert sessions(site) == 0
    assert browser.get("/dashboard/").status_code == 303


def test_the_login_form_needs_its_token(site: Site) -> None:
    browser = site.browser()
    browser.get("/dashboard/login")
    refused = browser.post(
        "/dashboard/login",
        data={"email": site.users["acme"]["admin"], "password": PASSWORD},
    )
    assert refused.status_code == 403
    assert sessions(site) == 0


def test_logging_out_ends_the_session_for_good(site: Site) -> None:
    browser = site.staff("admin")
    stolen = dict(browser.cookies)
    out = browser.form("/dashboard/logout", {})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login?out=1"
    assert sessions(site) == 0
    again = Browser(site.app)
    again.cookies.update(stolen)  # the old cookie, replayed
    assert again.get("/dashboard/").status_code == 303


def test_a_session_ends_after_two_idle_hours_and_twelve_in_all(site: Site) -> None:
    browser = site.staff("admin")
    site.clock.now = NOW + timedelta(hours=1, minutes=59)
    assert browser.get("/dashboard/").status_code == 200  # active again: idle time restarts
    for minutes in (220, 320, 420, 520, 620, 719):  # never two hours apart
        site.clock.now = NOW + timedelta(minutes=minutes)
        assert browser.get("/dashboard/debtors").status_code == 200
    site.clock.now = NOW + timedelta(hours=12)
    ended = browser.get("/dashboard/debtors")
    assert ended.status_code == 303 and ended.headers["location"].endswith("&ended=1")
    idle = site.staff("admin")
    site.clock.now += timedelta(hours=2, minutes=1)
    assert idle.get("/dashboard/").status_code == 303


def test_a_new_password_ends_the_users_sessions(site: Site) -> None:
    browser = site.staff("collector")
    with site.acme.engine.begin() as conn:
        set_password(conn, site.acme.company_id, "collector@acme.example", "another long one", NOW)
    assert browser.get("/dashboard/").status_code == 303
    assert site.browser().login("collector@acme.example", "another long one").status_code == 303


def test_failed_logins_are_limited_per_account_and_per_address(site: Site) -> None:
    email = site.users["acme"]["admin"]
    browser = site.browser()
    for _ in range(10):
        assert browser.login(email, "wrong password!").status_code == 401
    limited = browser.login(email)  # the right password: still refused while limited
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    # Another address is refused for this account too ...
    assert Browser(site.app, ip="198.51.100.77").login(email).status_code == 429
    # ... but logs in to another account.
    assert (
        Browser(site.app, ip="198.51.100.77").login(site.users["acme"]["collector"]).status_code
        == 303
    )
    # Past the window, the account logs in again.
    site.clock.now = NOW + timedelta(minutes=16)
    assert browser.login(email).status_code == 303
    # An address trying many accounts is stopped after 30 failures.
    roamer = Browser(site.app, ip="192.0.2.200")
    for n in range(30):
        assert roamer.login(f"user{n}@acme.example", "wrong password!").status_code == 401
    assert roamer.login(site.users["acme"]["read-only"]).status_code == 429


def test_the_same_email_in_two_companies_logs_in_where_its_password_opens(site: Site) -> None:
    shared = "maria@both.example"
    for ws, password in ((site.acme, "password of acme"), (site.beta, "password of beta")):
        with ws.engine.begin() as conn:
            add_user(conn, ws.company_id, shared, "admin", password, NOW)
    browser = site.browser()
    assert browser.login(shared, "password of beta").status_code == 303
    page = browser.get("/dashboard/debtors")
    assert "Beta&#39;s Own Debtor" in page.text and "Acme Industrial" not in page.text
    # The same password in both companies: the page asks which, among those two only.
    with site.acme.engine.begin() as conn:
        set_password(conn, site.acme.company_id, shared, "password of beta", NOW)
    other = site.browser()
    ask = other.login(shared, "password of beta")
    assert ask.status_code == 200 and 'type="radio" name="company" value="acme"' in ask.text
    assert 'value="beta"' in ask.text
    chosen = other.login(shared, "password of beta", company="acme")
    assert chosen.status_code == 303
    assert "Acme Industrial" in other.get("/dashboard/debtors").text


def test_a_session_ended_elsewhere_is_refused_on_the_next_request(site: Site) -> None:
    """The server keeps a session it found (on SQLite it then reads the session's row by
    its key on each request): ended in the database by another process — a new password,
    the user removed, the row deleted by hand — the very next request goes to the login."""
    ws = site.acme
    browsers = {role: site.staff(role) for role in ("admin", "collector", "read-only")}
    for browser in browsers.values():
        for _ in range(2):  # found, then kept
            assert browser.get("/dashboard/debtors?q=acme").status_code == 200
    with ws.engine.begin() as conn:
        set_password(conn, ws.company_id, "collector@acme.example", "another long one", NOW)
        remove_user(conn, ws.company_id, "read-only@acme.example")
        user = t.staff_users.c
        admin = select(user.id).where(user.email == "admin@acme.example").scalar_subquery()
        conn.execute(delete(t.staff_sessions).where(t.staff_sessions.c.user_id == admin))
    for role, browser in browsers.items():
        ended = browser.get("/dashboard/debtors?q=acme")
        assert ended.status_code == 303, role
        assert ended.headers["location"].endswith("&ended=1"), role


def test_a_kept_session_sees_its_users_role_and_records_its_activity(site: Site) -> None:
    """Read again on each request, a kept session shows its user's role as it is now, and
    its last activity is still written every few minutes (so that it does not end idle)."""
    ws = site.acme
    browser = site.staff("collector")
    assert "(gestor de cobros)" in browser.get("/dashboard/debtors").text
    user = t.staff_users.c
    with ws.engine.begin() as conn:
        conn.execute(
            update(t.staff_users)
            .where(user.email == "collector@acme.example")
            .values(role="read-only")
        )
    page = browser.get("/dashboard/debtors")
    assert page.status_code == 200
    assert "(solo lectura)" in page.text and "(gestor de cobros)" not in page.text
    s = t.staff_sessions.c
    for minutes in (4, 6, 100, 190):
        site.clock.now = NOW + timedelta(minutes=minutes)
        assert browser.get("/dashboard/debtors").status_code == 200
        with ws.engine.connect() as conn:
            last_seen = conn.execute(select(s.last_seen_at)).scalar_one()
        # Written when more than SEEN_EVERY (5 minutes) had passed since the last write.
        assert last_seen == NOW + timedelta(minutes=0 if minutes == 4 else minutes)
    site.clock.now = NOW + timedelta(minutes=190 + 121)
    assert browser.get("/dashboard/debtors").status_code == 303  # two idle hours


def test_pages_are_in_the_companys_language_until_the_user_switches_to_the_other(
    make_site: Callable[..., Site],
) -> None:
    """The company's locale gives the pages' language (en_US here); the header's link
    switches a browser to the other, login page included."""
    site = make_site(replace={"  locale: es_ES ": "  locale: en_US "})
    acme = site.staff("collector")
    page = acme.get("/dashboard/debtors")
    assert page.status_code == 200
    assert '<html lang="en">' in page.text and ">Debtors</a>" in page.text
    assert "Deudores" not in page.text and "Acme Industrial" in page.text
    switched = acme.get("/dashboard/language/es?next=/dashboard/debtors")
    assert switched.status_code == 303 and switched.headers["location"] == "/dashboard/debtors"
    spanish = acme.get("/dashboard/debtors")
    assert '<html lang="es">' in spanish.text and ">Deudores</a>" in spanish.text
    assert ">Debtors</a>" not in spanish.text
    assert "Iniciar sesión" in acme.get("/dashboard/login?company=acme").text
    # Another browser is still shown the company's language.
    other = site.staff("read-only")
    assert ">Debtors</a>" in other.get("/dashboard/debtors").text
    assert acme.get("/dashboard/language/fr").status_code == 404


def test_a_login_raises_a_hash_made_at_less_than_todays_cost(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The users were added at the suite's lowered cost; with the cost raised since, a
    login makes the hash again at today's, and the password still logs in."""
    u = t.staff_users.c

    def stored() -> str:
        with site.acme.engine.connect() as conn:
            return str(
                conn.execute(
                    select(u.password_hash).where(u.email == "collector@acme.example")
                ).scalar_one()
            )

    before = stored()
    monkeypatch.setenv("COBRO_PASSWORD_TIME_COST", "2")
    monkeypatch.setenv("COBRO_PASSWORD_MEMORY_KIB", "16")
    monkeypatch.setenv("COBRO_PASSWORD_PARALLELISM", "1")
    users._hasher.cache_clear()
    try:
        site.staff("collector")
        after = stored()
        assert after != before and after.split("$")[3] == "m=16,t=2,p=1"
        site.staff("collector")  # logs in with the hash made again
        assert stored() == after
    finally:
        monkeypatch.undo()
        users._hasher.cache_clear()
