"""Automatic actions and segments (seed 002) edited from the dashboard: created, edited
and deleted in cobro.yaml (only their lines change), a PDF attachment kept in the
workspace's files/, the next simulation sending them on the 20th and the last day, a bad
attachment or setting refused as ``cobro check`` says it, segments and their members;
admins only, another company's actions and segments not found."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

import documents
from cobro.config.checks import check_workspace
from cobro.engine.simulate import simulate

from .config_support import audit_rows, changed_lines, config_text, form_of, html_text, page_form
from .conftest import Site

ACTIONS = "/dashboard/actions"
SEGMENTS = "/dashboard/segments"


def new_action(browser: Any, kind: str) -> dict[str, Any]:
    """The form of a new action of ``kind`` as the page shows it."""
    page = browser.get(f"{ACTIONS}/new?type={kind}")
    assert page.status_code == 200, page.text
    return page_form(page.text, "action-form")


def simulated(site: Site, start: date, end: date) -> set[tuple[date, str, str, str]]:
    ws = site.acme
    with ws.engine.connect() as conn:
        trans = conn.begin()
        days = list(simulate(conn, ws.config, ws.company_id, start, end))
        trans.rollback()
    return {(m.date, m.customer, m.step, m.channel) for day in days for m in day}


def test_a_message_on_the_20th_and_the_last_day_with_a_pdf_goes_out_then(site: Site) -> None:
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = new_action(admin, "message")
    assert form["type"] == "message" and form["day_1"] == ""
    form.update(
        description="Condiciones del servicio",
        day_1="20",
        day_2="last",
        segment="card_holders",
        title="Nuevas condiciones",
        text="Le enviamos las nuevas condiciones.\nUn saludo.",
    )
    pdf = documents.pdf(bytes(range(256)) * 8)
    created = admin.post(
        ACTIONS,
        data=form,
        files={"attachment_file": ("Condiciones 2025.pdf", pdf, "application/pdf")},
    )
    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"{ACTIONS}?done=created#action-condiciones-del-servicio"
    kept = site.acme.root / "files" / "Condiciones-2025.pdf"
    assert kept.read_bytes() == pdf
    assert changed_lines(before, config_text(site.acme)) == [
        ("", "actions:"),
        ("", "  - key: condiciones-del-servicio"),
        ("", "    description: Condiciones del servicio"),
        ("", "    type: message"),
        ("", "    days: [20, last]"),
        ("", "    segment: card_holders"),
        ("", "    title: Nuevas condiciones"),
        ("", "    text: |-"),
        ("", "      Le enviamos las nuevas condiciones."),
        ("", "      Un saludo."),
        ("", "    attachment: files/Condiciones-2025.pdf"),
    ]
    assert check_workspace(site.acme.root) == []
    action = site.acme.config.action("condiciones-del-servicio")
    assert action.days == (20, "last") and action.attachment == "files/Condiciones-2025.pdf"
    planned = simulated(site, date(2025, 3, 5), date(2025, 3, 31))
    step = "action/condiciones-del-servicio"
    assert {p for p in planned if p[2] == step} == {
        (date(2025, 3, 20), "C3", step, "email"),
        (date(2025, 3, 31), "C3", step, "email"),
    }
    listed = admin.get(f"{ACTIONS}?done=created")
    row = html_text(listed.text[listed.text.index('id="action-condiciones-del-servicio"') :])
    row = row[: row.index("</tr>")]
    assert "20, Último día del mes" in row and "files/Condiciones-2025.pdf" in row
    [entry] = audit_rows(site.acme)
    assert entry["action"] == "config.action.create"
    assert entry["subject"] == "condiciones-del-servicio"
    [change] = entry["changes"]
    assert change["path"] == "actions" and change["old"] is None
    assert change["new"][0]["attachment"] == "files/Condiciones-2025.pdf"


def test_a_debt_notice_hiding_the_portal_is_edited_line_by_line_then_deleted(site: Site) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "debt_notice")
    form.update(
        key="estado",
        description="Estado de cuenta",
        day_1="20",
        day_2="last",
        segment="overdue_30",
        hide_pay_link="1",
    )
    assert admin.post(ACTIONS, data=form).status_code == 303
    assert site.acme.config.action("estado").hide_pay_link is True
    before = config_text(site.acme)
    edit = page_form(admin.get(f"{ACTIONS}/estado").text, "action-form")
    assert (edit["day_1"], edit["day_2"], edit["hide_pay_link"]) == ("20", "last", "1")
    edit.update(day_1="5", day_2="20", day_3="last")
    saved = admin.post(f"{ACTIONS}/estado", data=edit)
    assert saved.status_code == 303
    assert changed_lines(before, config_text(site.acme)) == [
        ("    days: [20, last]", "    days: [5, 20, last]")
    ]
    planned = simulated(site, date(2025, 3, 5), date(2025, 3, 31))
    days = sorted({(d, c) for d, c, step, _ in planned if step == "action/estado"})
    assert days == [
        (date(2025, 3, 5), "C1"),
        (date(2025, 3, 5), "C2"),
        (date(2025, 3, 20), "C1"),
        (date(2025, 3, 20), "C2"),
        (date(2025, 3, 31), "C1"),
        (date(2025, 3, 31), "C2"),
        (date(2025, 3, 31), "C3"),  # F-6, due on 02-28, is 31 days overdue then
    ]
    asked = admin.get(f"{ACTIONS}/estado/delete")
    assert "¿Eliminar esta gestión automática?" in asked.text
    assert "estado" in site.acme.config.action("estado").key  # asking deletes nothing
    deleted = admin.post(f"{ACTIONS}/estado/delete", data=page_form(asked.text, "confirm-form"))
    assert deleted.status_code == 303
    assert site.acme.config.actions == []
    assert "actions: []" in config_text(site.acme)
    assert [e["action"] for e in audit_rows(site.acme)] == [
        "config.action.create",
        "config.action.edit",
        "config.action.delete",
    ]
    assert audit_rows(site.acme)[1]["changes"] == [
        {"path": "actions[estado].days", "old": [20, "last"], "new": [5, 20, "last"]}
    ]


def test_a_task_is_created_for_each_debtor_of_its_segment(site: Site) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(
        key="llamar",
        description="Llamar a los morosos",
        day_1="10",
        segment="overdue_30",
        message="Llamar y acordar una fecha de pago",
        due_after_days="2",
        due_time="13:00",
    )
    assert admin.post(ACTIONS, data=form).status_code == 303
    action = site.acme.config.action("llamar")
    assert action.task_message == "Llamar y acordar una fecha de pago"
    assert action.due_after_days == 2 and action.template is None
    planned = simulated(site, date(2025, 3, 10), date(2025, 3, 10))
    assert {(c, ch) for _, c, s, ch in planned if s == "action/llamar"} == {
        ("C1", "task"),
        ("C2", "task"),
    }


def written_by_hand(site: Site, block: str, files: dict[str, bytes]) -> list[str]:
    """What ``cobro check`` says of the file with ``block`` appended and ``files`` in the
    workspace (all put back as they were)."""
    path = site.acme.root / "cobro.yaml"
    original = path.read_text(encoding="utf-8")
    (site.acme.root / "files").mkdir(exist_ok=True)
    for name, data in files.items():
        (site.acme.root / name).write_bytes(data)
    path.write_text(original + block, encoding="utf-8")
    try:
        return [str(p) for p in check_workspace(site.acme.root)]
    finally:
        path.write_text(original, encoding="utf-8")
        for name in files:
            (site.acme.root / name).unlink()


def test_an_attachment_that_is_not_what_it_says_is_refused_as_cobro_check_says_it(
    site: Site,
) -> None:
    fake = b"<html>not a pdf</html>"
    expected = written_by_hand(
        site,
        "actions:\n"
        "  - key: circular\n"
        "    description: Circular\n"
        "    type: message\n"
        "    days: [3]\n"
        "    segment: card_holders\n"
        "    title: Circular\n"
        "    text: Adjunta\n"
        "    attachment: files/circular.pdf\n",
        {"files/circular.pdf": fake},
    )
    assert [p.split(": ", 1)[1] for p in expected] == [
        "actions.0.attachment: attachment 'files/circular.pdf' is not really a .pdf file: "
        "it does not start with a PDF header"
    ]
    admin = site.staff("admin")
    before = config_text(site.acme)
    form = new_action(admin, "message")
    form.update(
        key="circular",
        description="Circular",
        day_1="3",
        segment="card_holders",
        title="Circular",
        text="Adjunta",
    )
    refused = admin.post(
        ACTIONS, data=form, files={"attachment_file": ("circular.pdf", fake, "application/pdf")}
    )
    assert refused.status_code == 422
    assert f"<code>{expected[0]}</code>" in html_text(refused.text)
    assert config_text(site.acme) == before
    assert not (site.acme.root / "files" / "circular.pdf").exists()  # taken away again
    assert audit_rows(site.acme) == []
    again = page_form(refused.text, "action-form")  # what was typed is still there
    assert (again["description"], again["title"], again["day_1"]) == ("Circular", "Circular", "3")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"message": ""}, "actions.0: a task needs a message"),
        ({"segment": ""}, "actions.0.segment: Field required"),
        ({"day_1": "", "day_2": "", "day_3": ""}, "actions.0.days: Field required"),
        ({"day_2": "10"}, "actions.0: a send day is listed twice"),
        ({"key": "no spaces please"}, "actions.0.key: String should match pattern"),
    ],
)
def test_an_action_cobro_check_would_refuse_is_not_saved(
    site: Site, change: dict[str, str], problem: str
) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(
        {
            "key": "llamar",
            "description": "Llamar",
            "day_1": "10",
            "segment": "overdue_30",
            "message": "Llamar",
            **change,
        }
    )
    before = config_text(site.acme)
    refused = admin.post(ACTIONS, data=form)
    assert refused.status_code == 422
    shown = html_text(refused.text)
    assert "cobro.yaml:" in shown and problem in shown
    assert config_text(site.acme) == before and audit_rows(site.acme) == []


def test_a_segment_is_created_with_its_members_shown_then_edited(site: Site) -> None:
    admin = site.staff("admin")
    page = admin.get(f"{SEGMENTS}/new")
    form = page_form(page.text, "segment-form")
    form.update(name="personas_deuda", description="Personas con deuda", kind="person")
    form.update(open_amount_min="100")
    created = admin.post(SEGMENTS, data=form)
    assert created.status_code == 303
    assert created.headers["location"] == f"{SEGMENTS}/personas_deuda?done=created"
    shown = admin.get(created.headers["location"])
    members = shown.text[shown.text.index('id="members"') :]
    assert "Carla Ruiz" in members and "Acme Industrial" not in members
    assert "(1)" in members
    assert site.acme.config.segments["personas_deuda"].kind == "person"
    before = config_text(site.acme)
    edit = page_form(admin.get(f"{SEGMENTS}/overdue_30").text, "segment-form")
    assert edit["days_overdue_min"] == "30"
    edit["days_overdue_min"] = "100"
    assert admin.post(f"{SEGMENTS}/overdue_30", data=edit).status_code == 303
    assert changed_lines(before, config_text(site.acme)) == [
        ("    days_overdue: {min: 30}", "    days_overdue: {min: 100}")
    ]
    members = admin.get(f"{SEGMENTS}/overdue_30").text
    members = members[members.index('id="members"') :]
    assert "Beta Retail" in members and "Acme Industrial" not in members  # 124 and 74 days
    assert [e["action"] for e in audit_rows(site.acme)] == [
        "config.segment.create",
        "config.segment.edit",
    ]


def test_a_segment_in_use_or_named_twice_is_refused(site: Site) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(key="llamar", description="Llamar", day_1="10", segment="overdue_30", message="x")
    assert admin.post(ACTIONS, data=form).status_code == 303
    before = config_text(site.acme)
    asked = admin.get(f"{SEGMENTS}/overdue_30/delete")
    refused = admin.post(
        f"{SEGMENTS}/overdue_30/delete", data=page_form(asked.text, "confirm-form")
    )
    assert refused.status_code == 422
    assert "actions.llamar: segment &#39;overdue_30&#39; is not defined" in refused.text
    twice = page_form(admin.get(f"{SEGMENTS}/new").text, "segment-form")
    twice.update(name="card_holders", kind="person")
    again = admin.post(SEGMENTS, data=twice)
    assert again.status_code == 422
    assert "segments.card_holders: is given twice; keep one" in again.text
    assert config_text(site.acme) == before
    unused = admin.get(f"{SEGMENTS}/large_b2b_debt/delete")
    done = admin.post(
        f"{SEGMENTS}/large_b2b_debt/delete", data=page_form(unused.text, "confirm-form")
    )
    assert done.status_code == 303 and "large_b2b_debt" not in site.acme.config.segments
    assert [(a, b) for a, b in changed_lines(before, config_text(site.acme)) if a] == [
        ("  large_b2b_debt:", ""),
        ("    description: Businesses owing more than 5,000 overdue", ""),
        ("    kind: business", ""),
        ("    overdue_amount: {min: 5000}", ""),
    ]


@pytest.mark.parametrize("role", ["collector", "read-only"])
def test_only_an_admin_changes_actions_and_segments(site: Site, role: str) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(key="llamar", description="Llamar", day_1="10", segment="overdue_30", message="x")
    assert admin.post(ACTIONS, data=form).status_code == 303
    before = config_text(site.acme)
    user = site.staff(role)
    assert user.get(ACTIONS).status_code == 200 and user.get(f"{ACTIONS}/llamar").status_code == 200
    token = user.csrf(ACTIONS)
    digest = form_of(admin, ACTIONS + "/llamar")["digest"]
    for url in (ACTIONS, f"{ACTIONS}/llamar", f"{ACTIONS}/llamar/delete", SEGMENTS):
        refused = user.post(url, data={**form, "csrf": token, "digest": digest})
        assert refused.status_code == 403, url
    for url in (f"{SEGMENTS}/overdue_30", f"{SEGMENTS}/overdue_30/delete"):
        assert user.post(url, data={"csrf": token, "digest": digest}).status_code == 403, url
    assert config_text(site.acme) == before and len(audit_rows(site.acme)) == 1


def test_forms_without_their_token_or_from_an_old_page_change_nothing(site: Site) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(key="llamar", description="Llamar", day_1="10", segment="overdue_30", message="x")
    before = config_text(site.acme)
    assert admin.post(ACTIONS, data={**form, "csrf": "nope"}).status_code == 403
    assert config_text(site.acme) == before
    assert admin.post(ACTIONS, data=form).status_code == 303
    stale = admin.post(ACTIONS, data={**form, "key": "otra"})  # the digest of before
    assert stale.status_code == 409 and "Otra persona ha cambiado cobro.yaml" in stale.text
    assert [a.key for a in site.acme.config.actions] == ["llamar"]


def test_another_companys_actions_and_segments_are_not_found(site: Site) -> None:
    admin = site.staff("admin")
    form = new_action(admin, "task")
    form.update(key="llamar", description="Llamar", day_1="10", segment="overdue_30", message="x")
    assert admin.post(ACTIONS, data=form).status_code == 303
    segment = page_form(admin.get(f"{SEGMENTS}/new").text, "segment-form")
    segment.update(name="solo_acme", kind="person")
    assert admin.post(SEGMENTS, data=segment).status_code == 303
    beta = site.staff("admin", company="beta")
    for url in (f"{ACTIONS}/llamar", f"{ACTIONS}/llamar/delete", f"{SEGMENTS}/solo_acme"):
        assert beta.get(url).status_code == 404, url
    beta_form = form_of(beta, ACTIONS + "/new")
    for url in (f"{ACTIONS}/llamar", f"{ACTIONS}/llamar/delete", f"{SEGMENTS}/solo_acme/delete"):
        assert beta.post(url, data={**form, **beta_form}).status_code == 404, url
    assert "llamar" not in beta.get(ACTIONS).text
    assert site.beta.config.actions == [] and "solo_acme" not in site.beta.config.segments
    assert audit_rows(site.beta) == []
