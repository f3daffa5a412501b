"""Banking notifications (seed 000): per notice type its contacts; only contacts with the
banking role offered and accepted; removal after a confirmation ("Yes, remove"); with
nobody assigned, the primary contacts; admins only; another company's contacts not
found; every change in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cobro.engine.banking import assignments
from cobro.intake.events import post_event

from ..support import load
from .config_support import audit_rows, html_text, page_form
from .conftest import Site

PAGE = "/dashboard/banking"


@pytest.fixture
def site(site: Site) -> Site:
    """Acme's customer C1 has two banking contacts, a primary one and a sales rep; beta's
    B1 has a banking contact of its own."""
    load(
        site.acme,
        "contacts",
        {
            "external_id": "K1",
            "customer": "C1",
            "name": "Ana Banca",
            "email": "ana@acme-industrial.example",
            "roles": "banking",
        },
        {
            "external_id": "K2",
            "customer": "C1",
            "name": "Luis Banca",
            "email": "luis@acme-industrial.example",
            "roles": "banking",
        },
        {
            "external_id": "K3",
            "customer": "C1",
            "name": "Marta Dirección",
            "email": "marta@acme-industrial.example",
            "roles": "primary",
        },
    )
    load(
        site.beta,
        "contacts",
        {
            "external_id": "BK1",
            "customer": "B1",
            "name": "Beta Banca",
            "email": "banca@beta-debtor.example",
            "roles": "banking",
        },
    )
    return site


def held(site: Site, company: str = "acme") -> dict[str, list[str]]:
    ws = site.companies[company]
    with ws.engine.connect() as conn:
        found: dict[str, list[str]] = {}
        for a in assignments(conn, ws.company_id):
            found.setdefault(a.notice_type, []).append(a.contact)
    return found


def test_each_type_says_who_receives_it_and_only_banking_contacts_are_offered(
    site: Site,
) -> None:
    page = site.staff("admin").get(PAGE)
    assert page.status_code == 200
    assert page.text.count("Nadie asignado: las reciben los contactos principales.") == 4
    assert page_form(page.text, "add-form")["type"] == "stop_payment"
    offered = page.text[page.text.index('id="candidates"') :]
    assert 'value="K1"' in offered and 'value="K2"' in offered
    assert 'value="K3"' not in offered  # primary, without the banking role
    assert "BK1" not in page.text  # beta's contact
    for role in ("collector", "read-only"):
        seen = site.staff(role).get(PAGE)
        assert seen.status_code == 200 and 'id="candidates"' not in seen.text


def test_contacts_are_added_and_the_notice_then_goes_to_them(site: Site) -> None:
    admin = site.staff("admin")
    token = admin.csrf(PAGE)
    added = admin.post(
        f"{PAGE}/add",
        data={"csrf": token, "type": "direct_deposit_change", "contact": ["K1", "K2"]},
    )
    assert added.status_code == 303
    assert held(site) == {"direct_deposit_change": ["K1", "K2"]}
    page = admin.get(PAGE)
    assert "Los contactos quedan asignados." in admin.get(added.headers["location"]).text
    row = page.text[page.text.index('id="type-direct_deposit_change"') :]
    row = row[: row.index("</tr>")]
    assert "Ana Banca" in row and "Luis Banca" in row
    [entry] = audit_rows(site.acme)
    assert entry["action"] == "banking.assign" and entry["subject"] == "direct_deposit_change"
    assert entry["changes"] == [
        {"path": "banking.direct_deposit_change", "old": [], "new": ["K1", "K2"]}
    ]
    result = post_event(
        site.acme,
        "direct_deposit.change_notice",
        {"id": "n1", "customer": "C1", "details": {"account": "1234"}},
        datetime(2025, 3, 4, 10, tzinfo=UTC),
    )
    assert result.notes == ["to K1, K2: contacts assigned to this notification"]


def test_a_contact_without_the_banking_role_is_refused_and_nobody_is_assigned(
    site: Site,
) -> None:
    admin = site.staff("admin")
    refused = admin.post(
        f"{PAGE}/add",
        data={"csrf": admin.csrf(PAGE), "type": "stop_payment", "contact": ["K1", "K3"]},
    )
    assert refused.status_code == 422
    assert (
        "contact K3 does not have the banking & funds transfer role ('banking'); only such "
        "contacts receive banking notifications"
    ) in html_text(refused.text)
    assert held(site) == {} and audit_rows(site.acme) == []
    nobody = admin.post(f"{PAGE}/add", data={"csrf": admin.csrf(PAGE), "type": "stop_payment"})
    assert nobody.status_code == 422 and "Elija al menos un contacto." in nobody.text
    unknown = admin.post(
        f"{PAGE}/add", data={"csrf": admin.csrf(PAGE), "type": "wire_fraud", "contact": "K1"}
    )
    assert unknown.status_code == 404


def test_removing_a_contact_asks_first_then_the_primary_contacts_receive_them(
    site: Site,
) -> None:
    admin = site.staff("admin")
    admin.post(
        f"{PAGE}/add", data={"csrf": admin.csrf(PAGE), "type": "stop_payment", "contact": "K1"}
    )
    page = admin.get(PAGE)
    assert f'href="{PAGE}/stop_payment/remove?contact=K1"' in page.text
    asked = admin.get(f"{PAGE}/stop_payment/remove?contact=K1")
    assert asked.status_code == 200
    text = html_text(asked.text)
    assert "¿Eliminar de la notificación?" in text and "Ana Banca" in text
    assert (
        "No quedará ningún contacto: estas notificaciones irán a los contactos principales." in text
    )
    assert "Sí, eliminar" in text
    assert held(site) == {"stop_payment": ["K1"]}  # asking removes nothing
    # Without the confirmation, the question again.
    again = admin.post(
        f"{PAGE}/stop_payment/remove", data={"csrf": admin.csrf(PAGE), "contact": "K1"}
    )
    assert again.status_code == 200 and "Sí, eliminar" in again.text
    assert held(site) == {"stop_payment": ["K1"]}
    confirm = page_form(asked.text, "confirm-form")
    assert confirm["confirm"] == "yes" and confirm["contact"] == "K1"
    removed = admin.post(f"{PAGE}/stop_payment/remove", data=confirm)
    assert removed.status_code == 303
    assert held(site) == {}
    assert (
        "El contacto queda eliminado de la notificación."
        in admin.get(removed.headers["location"]).text
    )
    assert [e["action"] for e in audit_rows(site.acme)] == ["banking.assign", "banking.unassign"]
    result = post_event(
        site.acme,
        "direct_deposit.reversal",
        {"id": "r1", "customer": "C1", "details": {"amount": "10.00"}},
        datetime(2025, 3, 4, 10, tzinfo=UTC),
    )
    assert result.notes == ["to K3: primary contacts (no contact assigned to this notification)"]


def test_editing_a_type_sets_its_contacts_and_a_removal_is_confirmed(site: Site) -> None:
    admin = site.staff("admin")
    admin.post(
        f"{PAGE}/add",
        data={"csrf": admin.csrf(PAGE), "type": "bulk_stop_payment", "contact": "K1"},
    )
    edit = admin.get(f"{PAGE}/bulk_stop_payment/edit")
    assert edit.status_code == 200
    form = page_form(edit.text, "edit")
    assert form["contact"] == "K1"
    form["contact"] = "K2"  # K1 unticked, K2 ticked
    asked = admin.post(f"{PAGE}/bulk_stop_payment/edit", data=form)
    assert asked.status_code == 200 and "Sí, eliminar" in asked.text
    assert held(site) == {"bulk_stop_payment": ["K1"]}
    confirm = page_form(asked.text, "confirm-form")
    assert confirm["contact"] == "K2" and confirm["confirm"] == "yes"
    done = admin.post(f"{PAGE}/bulk_stop_payment/edit", data=confirm)
    assert done.status_code == 303
    assert held(site) == {"bulk_stop_payment": ["K2"]}
    last = audit_rows(site.acme)[-1]
    assert last["action"] == "banking.edit"
    assert last["changes"] == [{"path": "banking.bulk_stop_payment", "old": ["K1"], "new": ["K2"]}]
    # Adding only needs no confirmation.
    added = admin.post(
        f"{PAGE}/bulk_stop_payment/edit",
        data={"csrf": form["csrf"], "contact": ["K2", "K1"]},
    )
    assert added.status_code == 303 and held(site) == {"bulk_stop_payment": ["K1", "K2"]}


@pytest.mark.parametrize("role", ["collector", "read-only"])
def test_only_an_admin_changes_the_banking_contacts(site: Site, role: str) -> None:
    admin = site.staff("admin")
    admin.post(
        f"{PAGE}/add", data={"csrf": admin.csrf(PAGE), "type": "stop_payment", "contact": "K1"}
    )
    before = held(site)
    user = site.staff(role)
    token = user.csrf(PAGE)
    for url, data in (
        (f"{PAGE}/add", {"type": "stop_payment", "contact": "K2"}),
        (f"{PAGE}/stop_payment/edit", {"contact": "K2", "confirm": "yes"}),
        (f"{PAGE}/stop_payment/remove", {"contact": "K1", "confirm": "yes"}),
    ):
        refused = user.post(url, data={"csrf": token, **data})
        assert refused.status_code == 403, url
    assert held(site) == before
    assert len(audit_rows(site.acme)) == 1


def test_forms_without_their_token_change_nothing(site: Site) -> None:
    admin = site.staff("admin")
    for url, data in (
        (f"{PAGE}/add", {"type": "stop_payment", "contact": "K1"}),
        (f"{PAGE}/stop_payment/edit", {"contact": "K1"}),
        (f"{PAGE}/stop_payment/remove", {"contact": "K1", "confirm": "yes"}),
    ):
        assert admin.post(url, data=data).status_code == 403, url
    assert held(site) == {} and audit_rows(site.acme) == []


def test_another_companys_contacts_are_not_found(site: Site) -> None:
    admin = site.staff("admin")
    admin.post(
        f"{PAGE}/add", data={"csrf": admin.csrf(PAGE), "type": "stop_payment", "contact": "K1"}
    )
    beta = site.staff("admin", company="beta")
    assert beta.get(f"{PAGE}/stop_payment/remove?contact=K1").status_code == 404
    token = beta.csrf(PAGE)
    gone = beta.post(
        f"{PAGE}/stop_payment/remove", data={"csrf": token, "contact": "K1", "confirm": "yes"}
    )
    assert gone.status_code == 404
    refused = beta.post(
        f"{PAGE}/add", data={"csrf": token, "type": "stop_payment", "contact": "K1"}
    )
    assert refused.status_code == 422
    assert "no contact with external_id 'K1'" in html_text(refused.text)
    assert "Ana Banca" not in beta.get(PAGE).text
    assert held(site) == {"stop_payment": ["K1"]} and held(site, "beta") == {}
    assert audit_rows(site.beta) == []
