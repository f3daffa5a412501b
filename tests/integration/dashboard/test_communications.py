"""The communications settings (seed 003) and what every screen that changes cobro.yaml
shares: the file rewritten with only the edited lines changed (comments and order kept),
the server running with the new configuration at once, an edit refused as ``cobro check``
words it, a file changed meanwhile not written over, admins only, the form's token, the
audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from cobro.config.checks import check_workspace
from cobro.intake.events import post_event
from cobro.store import tables as t

from ..support import load
from .config_support import audit_rows, changed_lines, config_text, html_text, page_form
from .conftest import Site

PAGE = "/dashboard/settings/communications"
SENDER = (
    "  sender:                        # nothing is sent until this is a valid address\n"
    "    email: cobros@demo.example\n"
    "    name: Cobros Distribuciones Demo\n"
)


def shown_form(browser: object, page: str = PAGE) -> dict[str, object]:
    response = browser.get(page)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return page_form(response.text, "communications")


def test_every_role_sees_the_settings_only_an_admin_gets_the_form(site: Site) -> None:
    for role in ("read-only", "collector"):
        page = site.staff(role).get(PAGE)
        assert page.status_code == 200
        assert "administracion@demo.example" in page.text
        assert "Solo un administrador puede cambiar estos ajustes." in page.text
        assert '<button type="submit">Guardar</button>' not in page.text
    admin = site.staff("admin").get(PAGE)
    assert '<button type="submit">Guardar</button>' in admin.text
    assert "Nuevo suscriptor (primera compra de una tarifa o bono)" in admin.text


def test_an_admin_switches_a_notice_off_only_its_line_changes_and_it_applies_at_once(
    site: Site,
) -> None:
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = shown_form(admin)
    assert form["admin_new_subscriber"] == "1" and form["upcoming_at"] == "09:00"
    del form["admin_new_subscriber"]  # the box unticked
    form["upcoming_days_before"] = "3"
    saved = admin.post(PAGE, data=form)
    assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?saved=1"
    after = config_text(site.acme)
    assert changed_lines(before, after) == [
        (
            "    new_subscriber: true         # a plan or pass bought: its first charge succeeded",
            "    new_subscriber: false        # a plan or pass bought: its first charge succeeded",
        ),
        (
            "    days_before: 2               # never sent late: a reminder whose moment passed "
            "is dropped",
            "    days_before: 3               # never sent late: a reminder whose moment passed "
            "is dropped",
        ),
    ]
    # The server's configuration is the file's now: the next event sends no such notice.
    assert site.acme.config.subscriptions.admin.new_subscriber is False
    assert site.acme.config.subscriptions.upcoming_charge.days_before == 3
    load(site.acme, "customers", {"external_id": "M1", "name": "Lucía", "email": "l@example.com"})
    now = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    post_event(
        site.acme,
        "subscription.created",
        {"id": "s", "customer": "M1", "subscription": "S1", "plan": "Oro", "price": "10"},
        now,
    )
    paid = post_event(
        site.acme,
        "charge.succeeded",
        {"id": "c", "subscription": "S1", "charge": "CH1", "amount": "10"},
        now,
    )
    assert "admin notice 'new_subscriber' is switched off" in paid.notes
    o = t.outbox.c
    with site.acme.engine.connect() as conn:
        steps = [
            step
            for (step,) in conn.execute(select(o.step).where(o.company_id == site.acme.company_id))
        ]
    assert any(s.startswith("receipt") for s in steps)  # the event did send its receipt
    assert not [s for s in steps if s.startswith("admin")]
    shown = admin.get(f"{PAGE}?saved=1")
    assert "Guardado en cobro.yaml; en vigor desde ahora." in shown.text
    assert 'name="admin_new_subscriber" value="1" id="admin_new_subscriber">' in shown.text
    [entry] = audit_rows(site.acme)
    assert entry["actor"] == "admin@acme.example" and entry["role"] == "admin"
    assert entry["action"] == "config.communications"
    assert entry["changes"] == [
        {"path": "subscriptions.admin.new_subscriber", "old": True, "new": False},
        {"path": "subscriptions.upcoming_charge.days_before", "old": 2, "new": 3},
    ]
    assert audit_rows(site.beta) == []  # beta's file and log are untouched
    assert "new_subscriber: true " in config_text(site.beta)


def test_channels_times_and_switches_are_written_as_the_file_writes_them(site: Site) -> None:
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = shown_form(admin)
    form.update(upcoming_at="10:30", upcoming_channel_2="push", admin_email="")
    del form["receipts_enabled"]
    assert admin.post(PAGE, data=form).status_code == 422  # push is not set up: refused
    form["upcoming_channel_2"] = ""
    assert admin.post(PAGE, data=form).status_code == 303
    assert changed_lines(before, config_text(site.acme)) == [
        ("    email: administracion@demo.example", ""),
        (
            '    at: "09:00"                  # company time',
            '    at: "10:30"                  # company time',
        ),
        (
            "    enabled: true                # email with the PDF receipt on every successful "
            "charge",
            "    enabled: false               # email with the PDF receipt on every successful "
            "charge",
        ),
    ]
    config = site.acme.config.subscriptions
    assert config.admin.email is None and config.upcoming_charge.at.hour == 10
    assert config.receipts.enabled is False


def refusal_of(site: Site, old: str, new: str) -> list[str]:
    """What ``cobro check`` says of the file with ``old`` written as ``new`` by hand (the
    file is put back as it was)."""
    path = site.acme.root / "cobro.yaml"
    original = path.read_text(encoding="utf-8")
    assert original.count(old) == 1
    path.write_text(original.replace(old, new), encoding="utf-8")
    try:
        return [str(p) for p in check_workspace(site.acme.root)]
    finally:
        path.write_text(original, encoding="utf-8")


@pytest.mark.parametrize(
    ("field", "value", "old", "new"),
    [
        (
            "admin_email",
            "not-an-address",
            "    email: administracion@demo.example\n",
            "    email: not-an-address\n",
        ),
        (
            "upcoming_days_before",
            "90",
            "    days_before: 2 ",
            "    days_before: 90 ",
        ),
        (
            "upcoming_days_before",
            "soon",
            "    days_before: 2 ",
            "    days_before: soon ",
        ),
        (
            "upcoming_channel_1",
            "sms",
            "    channels: [email]            # in order of preference",
            "    channels: [sms]              # in order of preference",
        ),
    ],
)
def test_an_invalid_setting_is_refused_as_cobro_check_says_it_and_nothing_changes(
    site: Site, field: str, value: str, old: str, new: str
) -> None:
    expected = refusal_of(site, old, new)
    assert expected  # cobro check finds a problem there
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = shown_form(admin)
    form[field] = value
    refused = admin.post(PAGE, data=form)
    assert refused.status_code == 422
    shown = html_text(refused.text)
    assert "No se ha guardado: cobro check diría esto del archivo:" in shown
    for line in expected:
        assert f"<code>{line}</code>" in shown
    assert config_text(site.acme) == before
    assert site.acme.config.subscriptions.upcoming_charge.days_before == 2
    assert audit_rows(site.acme) == []
    # The form shows what was typed, to be corrected.
    assert f'value="{value}"' in refused.text or f'value="{value}" selected' in refused.text


def test_a_file_changed_since_the_page_was_opened_is_not_written_over(site: Site) -> None:
    admin = site.staff("admin")
    form = shown_form(admin)
    path = site.acme.root / "cobro.yaml"
    edited = path.read_text(encoding="utf-8").replace(
        "    expired: true                # end date reached",
        "    expired: false               # switched off by hand",
    )
    path.write_text(edited, encoding="utf-8")  # someone edits the file meanwhile
    del form["admin_new_subscriber"]
    refused = admin.post(PAGE, data=form)
    assert refused.status_code == 409
    assert "Otra persona ha cambiado cobro.yaml" in refused.text
    assert config_text(site.acme) == edited
    assert audit_rows(site.acme) == []
    # The page shows the file as it is now; saved from there, both changes are kept.
    again = page_form(refused.text, "communications")
    assert "admin_expired" not in again and again["admin_new_subscriber"] == "1"
    del again["admin_new_subscriber"]
    assert admin.post(PAGE, data=again).status_code == 303
    text = config_text(site.acme)
    assert "expired: false               # switched off by hand" in text
    assert "new_subscriber: false" in text


@pytest.mark.parametrize("role", ["collector", "read-only"])
def test_only_an_admin_changes_the_settings(site: Site, role: str) -> None:
    form = shown_form(site.staff("admin"))
    del form["admin_new_subscriber"]
    before = config_text(site.acme)
    user = site.staff(role)
    refused = user.post(PAGE, data={**form, "csrf": user.csrf(PAGE)})
    assert refused.status_code == 403
    assert f"Su rol ({role}) no permite hacer esto." in refused.text
    assert config_text(site.acme) == before and audit_rows(site.acme) == []


def test_a_form_without_its_token_changes_nothing(site: Site) -> None:
    admin = site.staff("admin")
    form = shown_form(admin)
    del form["admin_new_subscriber"]
    before = config_text(site.acme)
    assert admin.post(PAGE, data={**form, "csrf": ""}).status_code == 403
    other = site.staff("admin")
    assert admin.post(PAGE, data={**form, "csrf": other.csrf(PAGE)}).status_code == 403
    assert config_text(site.acme) == before
    anonymous = site.browser()
    assert anonymous.post(PAGE, data=form).status_code == 303  # to the login
    assert config_text(site.acme) == before and audit_rows(site.acme) == []


def test_a_session_of_another_company_edits_its_own_file_only(site: Site) -> None:
    beta = site.staff("admin", company="beta")
    acme_before = config_text(site.acme)
    form = shown_form(beta)
    del form["admin_expired"]
    assert beta.post(PAGE, data=form).status_code == 303
    assert config_text(site.acme) == acme_before
    assert site.beta.config.subscriptions.admin.expired is False
    assert site.acme.config.subscriptions.admin.expired is True
    # A form shown by acme's page (acme's digest) does not apply to beta's file.
    acme_form = shown_form(site.staff("admin"))
    del acme_form["admin_cancel_requested"]
    assert beta.post(PAGE, data={**acme_form, "csrf": beta.csrf(PAGE)}).status_code == 409


def test_without_a_sender_nothing_is_sent_the_page_says_so_and_an_admin_can_fix_it(
    make_site: Callable[..., Site],
) -> None:
    site = make_site(replace={SENDER: ""}, run=False)
    admin = site.staff("admin")
    page = admin.get(PAGE)
    text = html_text(page.text)
    assert 'id="sender-missing"' in page.text
    assert "No se envía nada: no hay una dirección de remitente válida." in text
    expected = [str(p) for p in check_workspace(site.acme.root)]
    assert any("company.sender.email: no valid sender address is configured" in p for p in expected)
    for line in expected:
        assert line in text
    # Another setting can still be saved: the missing sender is the file's, not the edit's.
    form = page_form(page.text, "communications")
    del form["admin_expired"]
    assert admin.post(PAGE, data=form).status_code == 303
    form = shown_form(admin)
    form.update(sender_email="cobros@acme.example", sender_name="Cobros Acme")
    assert admin.post(PAGE, data=form).status_code == 303
    fixed = admin.get(PAGE)
    assert 'id="sender-missing"' not in fixed.text
    assert site.acme.config.company.sender is not None
    assert site.acme.config.company.sender.email == "cobros@acme.example"
    assert check_workspace(site.acme.root) == []
    assert [e["action"] for e in audit_rows(site.acme)] == ["config.communications"] * 2


def test_the_audit_log_lists_the_change_with_who_and_what(site: Site) -> None:
    admin = site.staff("admin")
    form = shown_form(admin)
    del form["admin_new_subscriber"]
    assert admin.post(PAGE, data=form).status_code == 303
    for role in ("admin", "read-only"):
        page = site.staff(role).get("/dashboard/audit")
        assert page.status_code == 200
        shown = html_text(page.text)
        assert "admin@acme.example" in shown and "Ajustes de comunicaciones" in shown
        assert "<code>subscriptions.admin.new_subscriber</code>: <code>true</code> → " in shown
    other = site.staff("admin", company="beta").get("/dashboard/audit")
    assert "admin@acme.example" not in other.text and "Nada aún." in other.text
    with site.acme.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.audit_log)).scalar_one() == 1
