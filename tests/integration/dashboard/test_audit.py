"""The audit log keeps who recorded what on a debtor's account (a claim resent, a promise,
a dispute, a note, a task), newest first on the Audit screen, per company."""

from __future__ import annotations

from .config_support import audit_rows, html_text
from .conftest import Site
from .helpers import customer_id
from .test_access import ACTIONS, action_data

NAMES = {
    "resend": "debtor.resend",
    "promises": "debtor.promise",
    "disputes": "debtor.dispute",
    "notes": "debtor.note",
    "tasks": "debtor.task",
}


def test_what_a_collector_records_on_an_account_is_audited_with_its_author(site: Site) -> None:
    collector = site.staff("collector")
    c1 = customer_id(site.acme, "C1")
    data = action_data(site)
    for action in ACTIONS:
        done = collector.form(f"/dashboard/debtors/{c1}/{action}", data[action])
        assert done.status_code == 303, (action, done.text)
    rows = audit_rows(site.acme)
    assert [r["action"] for r in rows] == [NAMES[a] for a in ACTIONS]
    assert {(r["actor"], r["role"], r["customer_id"]) for r in rows} == {
        ("collector@acme.example", "collector", c1)
    }
    by_action = {r["action"]: r["changes"][0] for r in rows}
    assert by_action["debtor.note"] == {
        "path": "note",
        "old": None,
        "new": {"text": "Called, will pay on Monday"},
    }
    assert by_action["debtor.promise"]["new"]["promised_on"] == "2025-03-10"
    assert by_action["debtor.dispute"]["new"]["reason"] == "Goods returned"
    assert by_action["debtor.task"]["new"]["message"] == "Call back"
    assert by_action["debtor.resend"]["new"]["claim"] == data["resend"]["claim"]
    page = site.staff("read-only").get("/dashboard/audit?kind=debtor")
    shown = html_text(page.text)
    assert page.status_code == 200
    assert shown.count("collector@acme.example") == 5
    assert shown.index("Tarea abierta") < shown.index("Reclamación reenviada")  # newest first
    assert f'href="/dashboard/debtors/{c1}"' in page.text and "Acme Industrial (C1)" in shown
    assert "Nada aún." in site.staff("read-only").get("/dashboard/audit?kind=config").text
    assert audit_rows(site.beta) == []


def test_a_refused_form_is_not_audited(site: Site) -> None:
    collector = site.staff("collector")
    c1 = customer_id(site.acme, "C1")
    refused = collector.form(f"/dashboard/debtors/{c1}/notes", {"text": "  "})
    assert refused.status_code == 422
    reader = site.staff("read-only")
    assert reader.form(f"/dashboard/debtors/{c1}/notes", {"text": "x"}).status_code == 403
    assert audit_rows(site.acme) == []
