"""A policy's phase edited from the dashboard: its day, channels, mode, recipients, block
and template written to cobro.yaml with only their lines changed, in force at once;
refused as ``cobro check`` words it; a file changed meanwhile not written over; admins
only, the form's token, another company's file untouched, the audit log."""

from __future__ import annotations

from typing import Any

import pytest

from cobro.config.checks import check_workspace
from cobro.web.dashboard.phases import when_of

from .config_support import audit_rows, changed_lines, config_text, html_text, page_form
from .conftest import Site
from .helpers import Browser

PAGE = "/dashboard/policies/b2b/phases/05"


def shown_form(browser: Browser, page: str = PAGE) -> dict[str, Any]:
    response = browser.get(page)
    assert response.status_code == 200, response.text
    return page_form(response.text, "phase")


def phase(site: Site, policy: str, key: str) -> Any:
    return next(p for p in site.acme.config.policy(policy).phases if p.key == key)


@pytest.mark.parametrize(
    ("day", "when"),
    [
        ("-7", "7 days before due"),
        ("0", "on due"),
        ("1", "1 day after due"),
        ("+15", "15 days after due"),
        ("soon", "soon"),
    ],
)
def test_a_day_is_written_as_the_file_writes_moments(day: str, when: str) -> None:
    assert when_of(day) == when


def test_only_an_admin_gets_the_form(site: Site) -> None:
    for role in ("read-only", "collector"):
        user = site.staff(role)
        assert (
            'href="/dashboard/policies/b2b/phases/05"' not in user.get("/dashboard/policies").text
        )
        page = user.get(PAGE)
        assert page.status_code == 200
        assert "Solo un administrador puede cambiar estos ajustes." in page.text
        assert 'value="60"' in page.text and " disabled" in page.text
        assert '<button type="submit">Guardar</button>' not in page.text
    admin = site.staff("admin")
    assert 'href="/dashboard/policies/b2b/phases/05"' in admin.get("/dashboard/policies").text
    form = shown_form(admin)
    assert form["day"] == "60" and form["mode"] == "link" and form["template"] == "b2b_05"
    assert form["channel_1"] == "email" and form["channel_2"] == ""
    assert form["recipients"] == ["debtor", "sales_rep", "account_manager"]
    assert form["block_account"] == "1"


def test_an_admin_edits_a_phase_only_its_lines_change_and_it_applies_at_once(
    site: Site,
) -> None:
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = shown_form(admin)
    form.update(day="75", mode="full", template="b2b_04", recipients=["debtor", "account_manager"])
    del form["block_account"]  # the box unticked
    saved = admin.post(PAGE, data=form)
    assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?saved=1"
    assert changed_lines(before, config_text(site.acme)) == [
        ("        when: 60 days after due", "        when: 75 days after due"),
        ("        template: b2b_05", "        template: b2b_04"),
        ("        mode: link", "        mode: full"),
        (
            "        recipients: [debtor, sales_rep, account_manager]",
            "        recipients: [debtor, account_manager]",
        ),
        (
            "        block_account: true        # blocked until the overdue debt is paid",
            "        block_account: false       # blocked until the overdue debt is paid",
        ),
    ]
    found = phase(site, "b2b", "05")
    assert found.offset_days == 75 and found.mode.value == "full"
    assert found.template == "b2b_04" and found.block_account is False
    assert [r.value for r in found.recipients] == ["debtor", "account_manager"]
    assert check_workspace(site.acme.root) == []
    page = admin.get(saved.headers["location"])
    assert "Guardado en cobro.yaml; en vigor desde ahora." in page.text
    [entry] = audit_rows(site.acme)
    assert (entry["actor"], entry["role"], entry["action"], entry["subject"]) == (
        "admin@acme.example",
        "admin",
        "config.phase.edit",
        "b2b/05",
    )
    assert entry["changes"] == [
        {
            "path": "policies.b2b.phases[05].when",
            "old": "60 days after due",
            "new": "75 days after due",
        },
        {"path": "policies.b2b.phases[05].template", "old": "b2b_05", "new": "b2b_04"},
        {"path": "policies.b2b.phases[05].mode", "old": "link", "new": "full"},
        {
            "path": "policies.b2b.phases[05].recipients",
            "old": ["debtor", "sales_rep", "account_manager"],
            "new": ["debtor", "account_manager"],
        },
        {"path": "policies.b2b.phases[05].block_account", "old": True, "new": False},
    ]
    audit = html_text(site.staff("read-only").get("/dashboard/audit").text)
    assert "Fase de política cambiada" in audit and "b2b/05" in audit
    # Saved again unchanged: nothing is written or audited.
    assert admin.post(PAGE, data=shown_form(admin)).status_code == 303
    assert len(audit_rows(site.acme)) == 1


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


BLOCK = "        block_account: true        # blocked until the overdue debt is paid\n"


@pytest.mark.parametrize(
    ("change", "old", "new"),
    [
        (
            {"day": "7"},
            "        when: 60 days after due\n",
            "        when: 7 days after due\n",
        ),
        (
            {"day": "soon"},
            "        when: 60 days after due\n",
            "        when: soon\n",
        ),
        ({"channel_1": ""}, BLOCK, BLOCK + "        channels: []\n"),
        ({"channel_2": "sms"}, BLOCK, BLOCK + "        channels: [email, sms]\n"),
    ],
)
def test_an_invalid_phase_is_refused_as_cobro_check_says_it_and_nothing_changes(
    site: Site, change: dict[str, str], old: str, new: str
) -> None:
    expected = refusal_of(site, old, new)
    assert expected
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = {**shown_form(admin), **change}
    refused = admin.post(PAGE, data=form)
    assert refused.status_code == 422
    shown = html_text(refused.text)
    assert "No se ha guardado: cobro check diría esto del archivo:" in shown
    for line in expected:
        assert f"<code>{line}</code>" in shown
    assert config_text(site.acme) == before and audit_rows(site.acme) == []
    assert phase(site, "b2b", "05").offset_days == 60
    again = page_form(refused.text, "phase")  # the form shows what was sent
    assert {k: again.get(k, "") for k in change} == change


def test_a_file_changed_since_the_page_was_opened_is_not_written_over(site: Site) -> None:
    admin = site.staff("admin")
    form = shown_form(admin)
    path = site.acme.root / "cobro.yaml"
    edited = path.read_text(encoding="utf-8").replace(
        "        repeat_every_days: 14\n", "        repeat_every_days: 21\n"
    )
    path.write_text(edited, encoding="utf-8")
    refused = admin.post(PAGE, data={**form, "day": "75"})
    assert refused.status_code == 409
    assert "Otra persona ha cambiado cobro.yaml" in refused.text
    assert config_text(site.acme) == edited and audit_rows(site.acme) == []


@pytest.mark.parametrize("role", ["collector", "read-only"])
def test_only_an_admin_changes_a_phase(site: Site, role: str) -> None:
    form = shown_form(site.staff("admin"))
    before = config_text(site.acme)
    user = site.staff(role)
    refused = user.post(PAGE, data={**form, "day": "75", "csrf": user.csrf(PAGE)})
    assert refused.status_code == 403
    assert f"Su rol ({role}) no permite hacer esto." in refused.text
    assert config_text(site.acme) == before and audit_rows(site.acme) == []


def test_a_form_without_its_token_changes_nothing(site: Site) -> None:
    admin = site.staff("admin")
    form = {**shown_form(admin), "day": "75"}
    before = config_text(site.acme)
    assert admin.post(PAGE, data={**form, "csrf": ""}).status_code == 403
    other = site.staff("admin")
    assert admin.post(PAGE, data={**form, "csrf": other.csrf(PAGE)}).status_code == 403
    anonymous = site.browser()
    assert anonymous.post(PAGE, data=form).status_code == 303
    assert config_text(site.acme) == before and audit_rows(site.acme) == []


def test_another_companys_admin_edits_its_own_file_only(site: Site) -> None:
    beta = site.staff("admin", company="beta")
    acme_before = config_text(site.acme)
    form = shown_form(beta)
    assert beta.post(PAGE, data={**form, "day": "75"}).status_code == 303
    assert config_text(site.acme) == acme_before
    beta_phase = next(p for p in site.beta.config.policy("b2b").phases if p.key == "05")
    assert beta_phase.offset_days == 75 and phase(site, "b2b", "05").offset_days == 60


@pytest.mark.parametrize(
    "path", ["/dashboard/policies/nope/phases/05", "/dashboard/policies/b2b/phases/99"]
)
def test_a_phase_the_file_does_not_have_is_not_found(site: Site, path: str) -> None:
    admin = site.staff("admin")
    form = shown_form(admin)
    before = config_text(site.acme)
    assert admin.get(path).status_code == 404
    assert admin.post(path, data=form).status_code == 404
    assert config_text(site.acme) == before
