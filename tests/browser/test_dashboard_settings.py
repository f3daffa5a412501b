"""The dashboard's configuration screens in a real browser (Debian's chromium) against
``cobro serve`` in its own process, as an administrator: a banking contact assigned, then
removed through the confirmation ("Sí, eliminar"); a scheduled message on the 20th and the
last day of the month with a PDF attached, then seen in ``cobro simulate``; an admin
notice switched off, after which the next event sends none; a template edited and its
preview seen before it is saved, on a desktop and on a phone; a policy's phase edited.
Screenshots are kept in test-artifacts/screenshots/.

The server reads the real clock; ``cobro simulate`` and ``cobro event post`` are other
processes that read the cobro.yaml the dashboard saved.
"""

from __future__ import annotations

import calendar
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

import documents
from e2e.cli import clock_set_to, run_cobro

from .conftest import WIDTHS, Served, screenshot, serve, stop

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/browser/test_dashboard_settings.py")

TODAY = date.today()
EMAIL, PASSWORD = "admin@demo.example", "una contraseña larga"
ADMIN_ADDRESS = "administracion@demo.example"


@pytest.fixture(scope="module", autouse=True)
def clock() -> Iterator[None]:
    """The program's clock reads TODAY, as the data does."""
    with clock_set_to(TODAY):
        yield


def write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A business with a banking contact and a primary one; a card holder (a person) who
    owes money; an administrator who can log in."""
    root = tmp_path_factory.mktemp("dashboard-settings") / "demo"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(root)], check=True)
    # The starter's logo is a commented line: the page loads nothing from outside.
    write(
        root / "customers.csv",
        "external_id,name,kind,language,email\n"
        "C1,Acme Industrial,business,es,ap@acme.example\n"
        "P1,Lucía Gómez,person,es,lucia@example.com",
    )
    write(
        root / "contacts.csv",
        "external_id,customer,name,email,roles\n"
        "K1,C1,Ana Banca,ana@acme.example,banking\n"
        "K2,C1,Marta Dirección,marta@acme.example,primary",
    )
    write(
        root / "receivables.csv",
        "external_id,customer,number,due_on,currency,amount\n"
        f"R1,P1,T-001,{TODAY + timedelta(days=40)},EUR,120.00",
    )
    for kind in ("customers", "contacts", "receivables"):
        run_cobro(root, "import", kind, str(root / f"{kind}.csv"))
    run_cobro(
        root, "users", "add", EMAIL, "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    (root / "brochure.pdf").write_bytes(documents.pdf(b"BT /F1 12 Tf 72 712 Td (Tarifas) Tj ET"))
    return root


@pytest.fixture(scope="module")
def served(ws: Path) -> Iterator[Served]:
    server = serve(ws)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="module")
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.errors = errors  # type: ignore[attr-defined]
    opened.goto(f"{served.url}/dashboard/login")
    opened.fill("#email", EMAIL)
    opened.fill("#password", PASSWORD)
    opened.get_by_role("button", name="Entrar").click()
    opened.wait_for_load_state()
    yield opened
    context.close()


def assigned(ws: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / "cobro.db") as db:
        return [
            (str(kind), str(contact))
            for kind, contact in db.execute(
                "SELECT b.notice_type, c.external_id FROM banking_assignments b "
                "JOIN contacts c ON c.id = b.contact_id"
            )
        ]


def test_a_banking_contact_is_assigned_then_removed_through_the_confirmation(
    page: Any, ws: Path
) -> None:
    page.get_by_role("link", name="Notificaciones bancarias").click()
    page.wait_for_load_state()
    row = page.locator("#type-direct_deposit_reversal")
    assert "Nadie asignado: las reciben los contactos principales." in row.inner_text()
    offered = page.locator("#candidates").inner_text()
    assert "Ana Banca" in offered and "Marta" not in offered  # only the banking role
    page.select_option("#type", "direct_deposit_reversal")
    page.locator("#candidates").get_by_label("Ana Banca").check()
    page.get_by_role("button", name="Agregar").click()
    page.wait_for_load_state()
    assert "Los contactos quedan asignados." in page.inner_text("main")
    assert "Ana Banca" in page.locator("#type-direct_deposit_reversal").inner_text()
    assert assigned(ws) == [("direct_deposit_reversal", "K1")]
    screenshot(page, "dashboard-banking-assigned")
    page.locator("#type-direct_deposit_reversal").get_by_role("link", name="Eliminar").click()
    page.wait_for_load_state()
    confirm = page.locator("#confirm").inner_text()
    assert "¿Eliminar de la notificación?" in confirm and "Ana Banca" in confirm
    assert "irán a los contactos principales" in confirm
    assert assigned(ws) == [("direct_deposit_reversal", "K1")]  # nothing removed yet
    screenshot(page, "dashboard-banking-confirm")
    page.get_by_role("button", name="Sí, eliminar").click()
    page.wait_for_load_state()
    assert "El contacto queda eliminado de la notificación." in page.inner_text("main")
    assert "Nadie asignado" in page.locator("#type-direct_deposit_reversal").inner_text()
    assert assigned(ws) == []
    assert page.errors == []  # type: ignore[attr-defined]


def next_days(start: date) -> tuple[date, date]:
    """The next 20th and the next last day of a month, from ``start`` on."""
    twentieth = start.replace(day=20) if start.day <= 20 else _next_month(start).replace(day=20)
    last = start.replace(day=calendar.monthrange(start.year, start.month)[1])
    return twentieth, last


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def test_a_message_on_the_20th_and_the_last_day_with_a_pdf_is_in_the_next_simulation(
    page: Any, ws: Path
) -> None:
    page.get_by_role("link", name="Gestiones automáticas").click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Nuevo mensaje").click()
    page.wait_for_load_state()
    page.fill("#description", "Nuevas tarifas")
    page.select_option("#day_1", "20")
    page.select_option("#day_2", "last")
    page.select_option("#segment", "card_holders")
    page.fill("#title", "Nuevas tarifas")
    page.fill("#text", "Le enviamos las tarifas del próximo año.")
    page.set_input_files("#attachment_file", str(ws / "brochure.pdf"))
    screenshot(page, "dashboard-action-form")
    page.get_by_role("button", name="Guardar").click()
    page.wait_for_load_state()
    assert "La gestión automática queda creada." in page.inner_text("main")
    row = page.locator("#action-nuevas-tarifas").inner_text()
    assert "20, Último día del mes" in row and "files/brochure.pdf" in row
    screenshot(page, "dashboard-actions")
    assert (ws / "files" / "brochure.pdf").read_bytes() == (ws / "brochure.pdf").read_bytes()
    run_cobro(ws, "check")  # the saved file is one `cobro check` accepts
    twentieth, last = next_days(TODAY)
    end = max(twentieth, last)
    done = run_cobro(ws, "simulate", "--from", TODAY.isoformat(), "--to", end.isoformat(), "--json")
    planned = {
        (m["date"], m["customer"], m["channel"])
        for day in json.loads(done.stdout)["days"]
        for m in day["messages"]
        if m["phase"] == "action/nuevas-tarifas"
    }
    assert planned == {
        (twentieth.isoformat(), "P1", "email"),
        (last.isoformat(), "P1", "email"),
    }
    # The dashboard's own simulation, from today to that day, shows the same.
    page.get_by_role("link", name="Simulación").click()
    page.wait_for_load_state()
    page.fill("#days", str((end - TODAY).days + 1))
    page.get_by_role("button", name="Simular").click()
    page.wait_for_selector("#simulation-days", timeout=120_000)
    page.wait_for_selector("#sim-running", state="detached", timeout=120_000)
    for day in sorted({twentieth, last}):
        page.goto(f"{page.url.split('/dashboard/')[0]}/dashboard/simulation/{day}?channel=email")
        page.wait_for_load_state()
        rows = page.locator("table#simulation-detail tbody tr", has_text="action/nuevas-tarifas")
        assert rows.count() == 1, day
        assert "Lucía Gómez" in rows.inner_text() and "Nuevas tarifas" in rows.inner_text()
    screenshot(page, "dashboard-simulation-action")
    assert page.errors == []  # type: ignore[attr-defined]


def admin_mails(ws: Path) -> list[str]:
    found = []
    for path in sorted((ws / "mail").rglob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if message["To"] and ADMIN_ADDRESS in str(message["To"]):
            found.append(str(message["Subject"]))
    return found


def first_purchase(ws: Path, subscription: str, member: str) -> dict[str, Any]:
    """A member subscribes and pays the first charge (``cobro event post``)."""
    for kind, data in (
        (
            "subscription.created",
            {
                "id": f"created-{subscription}",
                "customer": member,
                "subscription": subscription,
                "plan": "Mensual Oro",
                "price": "39.90",
            },
        ),
        (
            "charge.succeeded",
            {
                "id": f"paid-{subscription}",
                "subscription": subscription,
                "charge": f"CH-{subscription}",
                "amount": "39.90",
            },
        ),
    ):
        path = ws / f"{kind}-{subscription}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        done = run_cobro(ws, "event", "post", kind, "--data", str(path), "--json")
    return dict(json.loads(done.stdout))


def test_an_admin_notice_switched_off_is_not_sent_for_the_next_event(page: Any, ws: Path) -> None:
    first_purchase(ws, "S1", "P1")
    assert admin_mails(ws) == ["Nuevo suscriptor: Lucía Gómez · Mensual Oro"]
    page.get_by_role("link", name="Comunicaciones").click()
    page.wait_for_load_state()
    box = page.get_by_label("Nuevo suscriptor (primera compra de una tarifa o bono)")
    assert box.is_checked()
    box.uncheck()
    page.get_by_role("button", name="Guardar").click()
    page.wait_for_load_state()
    assert "Guardado en cobro.yaml; en vigor desde ahora." in page.inner_text("main")
    assert not page.get_by_label(
        "Nuevo suscriptor (primera compra de una tarifa o bono)"
    ).is_checked()
    screenshot(page, "dashboard-communications")
    assert "    new_subscriber: false " in (ws / "cobro.yaml").read_text(encoding="utf-8")
    paid = first_purchase(ws, "S2", "C1")
    assert "admin notice 'new_subscriber' is switched off" in paid["notes"]
    assert admin_mails(ws) == ["Nuevo suscriptor: Lucía Gómez · Mensual Oro"]  # none more
    page.get_by_role("link", name="Registro de cambios").click()
    page.wait_for_load_state()
    log = page.inner_text("#audit")
    assert "Ajustes de comunicaciones" in log and "subscriptions.admin.new_subscriber" in log
    assert "Gestión automática creada" in log and "Contacto bancario eliminado" in log
    screenshot(page, "dashboard-audit")
    assert page.errors == []  # type: ignore[attr-defined]


def preview_screenshot(page: Any, name: str) -> None:
    """A screenshot of the whole template page with both previews' emails drawn: the
    window made as tall as the page first (an email's frame is another origin, which
    chromium does not paint below the window in a full-page screenshot)."""
    size = page.viewport_size
    height = int(page.evaluate("document.documentElement.scrollHeight"))
    page.set_viewport_size({"width": size["width"], "height": height})
    for language in ("en", "es"):
        page.frame_locator(f"#preview-{language} iframe.email").locator("table").first.wait_for()
    screenshot(page, name)
    page.set_viewport_size(size)


def test_a_template_is_edited_and_its_preview_seen_before_it_is_saved(
    browser: Any, served: Served, page: Any, ws: Path
) -> None:
    copy = ws / "templates" / "b2b_01.es.j2"  # `cobro init` gives the workspace a copy
    before = copy.read_text(encoding="utf-8")
    page.get_by_role("link", name="Políticas y plantillas").click()
    page.wait_for_load_state()
    page.locator('tr[data-template="b2b_01"]').get_by_role("link", name="b2b_01").click()
    page.wait_for_load_state()
    page.fill("#debtor", "P1")
    page.get_by_role("button", name="Ver", exact=True).click()
    page.wait_for_load_state()
    source = page.locator("#source_es")
    text = source.input_value()
    assert text == before  # the workspace's copy, as the form shows it
    edited = text.replace(": pago vencido", ": recordatorio amable").replace(
        "Según nuestros registros", "Le escribimos porque"
    )
    source.fill(edited)
    page.get_by_role("button", name="Ver sin guardar").click()
    page.wait_for_load_state()
    assert "Vista previa del texto del formulario de abajo: sin guardar." in page.inner_text("main")
    es = page.locator("#preview-es")
    assert "Distribuciones Demo S.L.: recordatorio amable" in es.locator("p.subject").inner_text()
    assert (
        es.locator(".sms-bubble")
        .inner_text()
        .startswith("Distribuciones Demo S.L.: recordatorio amable - Total pendiente: 120,00 €")
    )
    email = page.frame_locator("#preview-es iframe.email")
    assert "Le escribimos porque" in email.locator("body").inner_text()
    assert "overdue payment" in page.locator("#preview-en p.subject").inner_text()
    assert page.locator("#source_es").input_value() == edited  # the text is kept to go on
    assert copy.read_text(encoding="utf-8") == before  # nothing saved
    preview_screenshot(page, "dashboard-template-preview")
    phone_context = browser.new_context(viewport={"width": WIDTHS["phone"], "height": 800})
    phone_context.add_cookies(page.context.cookies())
    phone = phone_context.new_page()
    phone.goto(page.url.replace("/templates/b2b_01", "/templates/b2b_01?debtor=P1"))
    phone.wait_for_load_state()
    phone.fill("#source_es", edited)
    phone.get_by_role("button", name="Ver sin guardar").click()
    phone.wait_for_load_state()
    assert "recordatorio amable" in phone.locator("#preview-es p.subject").inner_text()
    width = int(phone.evaluate("document.documentElement.scrollWidth"))
    assert width == WIDTHS["phone"]  # the page never scrolls sideways
    preview_screenshot(phone, "dashboard-template-preview-phone")
    phone_context.close()
    page.get_by_role("button", name="Guardar", exact=True).click()
    page.wait_for_load_state()
    assert "Guardada en templates/; en uso desde ahora." in page.inner_text("main")
    assert "recordatorio amable" in page.locator("#preview-es p.subject").inner_text()
    assert "Generada para Lucía Gómez (P1)" in page.inner_text("main")  # still for P1
    assert copy.read_text(encoding="utf-8") == edited
    run_cobro(ws, "check")  # the saved template is one `cobro check` accepts
    preview_screenshot(page, "dashboard-template-saved")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_phase_is_edited_and_saved_to_cobro_yaml(page: Any, ws: Path) -> None:
    page.locator("nav.sections").get_by_role("link", name="Políticas y plantillas").click()
    page.wait_for_load_state()
    page.locator("#edit-b2b-05").click()
    page.wait_for_load_state()
    assert page.locator("#day").input_value() == "60"
    page.fill("#day", "75")
    page.get_by_label("comercial").uncheck()
    screenshot(page, "dashboard-phase-form")
    page.get_by_role("button", name="Guardar").click()
    page.wait_for_load_state()
    assert "Guardado en cobro.yaml; en vigor desde ahora." in page.inner_text("main")
    text = (ws / "cobro.yaml").read_text(encoding="utf-8")
    assert "        when: 75 days after due\n" in text
    assert "        recipients: [debtor, account_manager]\n" in text
    run_cobro(ws, "check")
    page.locator("nav.sections").get_by_role("link", name="Políticas y plantillas").click()
    page.wait_for_load_state()
    assert "75 days after due" in page.locator('tr[data-phase="b2b/05"]').inner_text()
    assert page.errors == []  # type: ignore[attr-defined]
