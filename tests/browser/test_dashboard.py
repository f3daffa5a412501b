"""The staff dashboard in a real browser (Debian's chromium) against ``cobro serve`` in its
own process: log in, read the overview (the chart drawn, the figures those of the data
loaded), find a debtor, resend a claim, record a promise taken by phone; open a task and
mark it done on the task board; see the message log filtered; open a template's preview
for a debtor; simulate the next days. Screenshots are kept in
test-artifacts/screenshots/.

The data is dated around today, and the server's clock is set to today's noon in the
company's time zone (``COBRO_NOW``): the dates on the pages are those the tests expect
at any hour.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e.cli import clock_set_to, run_cobro

from .conftest import WIDTHS, Served, screenshot, serve, stop

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/browser/test_dashboard.py")

TODAY = date.today()
D0 = TODAY - timedelta(days=1)  # the run: yesterday
EMAIL, PASSWORD = "cobros@demo.example", "una contraseña larga"


@pytest.fixture(scope="module", autouse=True)
def clock() -> Iterator[None]:
    """The program's clock reads TODAY, as the data does."""
    with clock_set_to(TODAY):
        yield


def write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Acme owes 1,200.00 and 300.50 due 8 days ago (a run yesterday sent it phase 01);
    Beta owes 800.00 due in 10 days. A collector can log in."""
    root = tmp_path_factory.mktemp("dashboard") / "demo"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(root)], check=True)
    # The starter's logo is a commented line: the page loads nothing from outside.
    due = D0 - timedelta(days=7)
    write(
        root / "customers.csv",
        "external_id,name,kind,language,email\n"
        "C1,Acme Industrial,business,es,ap@acme.example\n"
        "C2,Beta Retail,business,es,pay@beta.example",
    )
    write(
        root / "receivables.csv",
        "external_id,customer,number,due_on,currency,amount\n"
        f"R1,C1,F-001,{due},EUR,1200.00\nR2,C1,F-002,{due},EUR,300.50\n"
        f"R3,C2,F-010,{TODAY + timedelta(days=10)},EUR,800.00",
    )
    run_cobro(root, "import", "customers", str(root / "customers.csv"))
    run_cobro(root, "import", "receivables", str(root / "receivables.csv"))
    run_cobro(root, "run", "--date", D0.isoformat(), "--quiet")
    run_cobro(
        root,
        "users",
        "add",
        EMAIL,
        "--role",
        "collector",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    return root


@pytest.fixture(scope="module")
def served(ws: Path) -> Iterator[Served]:
    server = serve(ws)
    try:
        yield server
    finally:
        stop(server)


def mails(ws: Path) -> list[Path]:
    return sorted((ws / "mail").rglob("*.eml"))


def promises(ws: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / "cobro.db") as db:
        return [
            (str(s), str(on)) for s, on in db.execute("SELECT source, promised_on FROM promises")
        ]


@pytest.fixture(scope="module")
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.errors = errors  # type: ignore[attr-defined]
    requested: list[str] = []
    opened.on("request", lambda r: requested.append(r.url))
    opened.requested = requested  # type: ignore[attr-defined]
    yield opened
    context.close()


def test_logging_in_leads_to_the_overview(page: Any, served: Served) -> None:
    response = page.goto(f"{served.url}/dashboard/")
    assert response is not None and response.status == 200
    assert "/dashboard/login" in page.url
    screenshot(page, "dashboard-login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_load_state()
    assert page.url == f"{served.url}/dashboard/"
    assert "gestor de cobros" in page.inner_text("header")


def test_the_overview_draws_the_aging_chart_of_the_data_loaded(page: Any) -> None:
    # 1,500.50 is 8 days overdue, 800.00 not due yet.
    assert page.inner_text("#kpi-outstanding .value").replace("\xa0", " ") == "2.300,50 €"
    rows = {
        row.get_attribute("data-bucket"): row.inner_text().replace("\xa0", " ")
        for row in page.locator("#aging-table tbody tr").all()
    }
    assert "800,00 €" in rows["current"] and "1.500,50 €" in rows["1-30"]
    assert "0,00 €" in rows["90+"]
    bars = page.locator("#aging-chart rect.bar")
    assert bars.count() == 5
    boxes = [bars.nth(i).bounding_box() for i in range(5)]
    heights = [box["height"] if box else 0 for box in boxes]
    assert heights[0] > 0 and heights[2] == 0
    assert heights[1] / heights[0] == pytest.approx(1500.50 / 800.00, rel=0.02)
    assert page.locator("#row-sent td").first.inner_text() == "1"  # yesterday's claim
    screenshot(page, "dashboard-overview")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_debtor_is_found_and_its_claim_resent(page: Any, ws: Path) -> None:
    page.get_by_role("link", name="Deudores").click()
    page.fill("#q", "acme")
    page.get_by_role("button", name="Mostrar").click()
    page.wait_for_load_state()
    assert page.locator("table#debtors tbody tr").count() == 1
    screenshot(page, "dashboard-debtors")
    page.locator("table#debtors").get_by_role("link", name="Acme Industrial").click()
    page.wait_for_load_state()
    assert "F-001" in page.inner_text("#statement") and "Vencido 8 d" in page.inner_text(
        "#statement"
    )
    before = len(mails(ws))
    page.locator("form.resend button").first.click()
    page.wait_for_load_state()
    assert "La reclamación se ha reenviado." in page.inner_text("main")
    assert "Reenvío de la reclamación 1" in page.inner_text("main")
    assert len(mails(ws)) == before + 1
    screenshot(page, "dashboard-account-resent")


def test_a_promise_taken_by_phone_is_recorded(page: Any, ws: Path) -> None:
    by = TODAY + timedelta(days=5)
    page.locator("#promise summary").click()
    page.locator("#promise input[type=checkbox]").first.check()
    page.fill("#promised_on", by.isoformat())
    page.fill("#promise_note", "Pagará por transferencia")
    page.get_by_role("button", name="Registrar la promesa").click()
    page.wait_for_load_state()
    assert "La promesa de pago queda registrada." in page.inner_text("main")
    assert re.search(r"F-001.*Pago prometido", page.inner_text("#statement"))
    assert promises(ws) == [("staff", by.isoformat())]
    screenshot(page, "dashboard-account-promised")
    assert page.errors == []  # type: ignore[attr-defined]


def tasks(ws: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / "cobro.db") as db:
        return [(str(m), str(s)) for m, s in db.execute("SELECT message, status FROM tasks")]


def test_a_task_is_opened_then_marked_done_on_the_board(page: Any, ws: Path) -> None:
    page.locator("#task summary").click()
    page.fill("#task_message", "Llamar a Acme por la F-002")
    page.get_by_role("button", name="Abrir la tarea").click()
    page.wait_for_load_state()
    assert "La tarea está abierta." in page.inner_text("main")
    page.locator("nav.sections").get_by_role("link", name="Tareas").click()
    page.wait_for_load_state()
    page.locator("#view-today").click()
    page.wait_for_load_state()
    row = page.locator("table#tasks tbody tr", has_text="Llamar a Acme por la F-002")
    assert row.count() == 1
    assert "Acme Industrial" in row.inner_text()
    screenshot(page, "dashboard-tasks")
    row.get_by_role("button", name="Marcar como hecha").click()
    page.wait_for_load_state()
    assert "La tarea está hecha." in page.inner_text("main")
    assert page.locator("table#tasks", has_text="Llamar a Acme").count() == 0
    assert ("Llamar a Acme por la F-002", "done") in tasks(ws)
    page.locator("#view-done").click()
    page.wait_for_load_state()
    assert "Llamar a Acme por la F-002" in page.inner_text("table#tasks")
    screenshot(page, "dashboard-tasks-done")
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_message_log_is_filtered(page: Any) -> None:
    page.locator("nav.sections").get_by_role("link", name="Registro de mensajes").click()
    page.wait_for_load_state()
    # Yesterday's run wrote to Acme (Beta's invoice is not due yet); the resend went again.
    rows = page.locator("table#messages tbody tr")
    assert rows.count() == 2
    assert "Reenvío de la reclamación 1" in rows.nth(0).inner_text()  # newest first
    page.select_option("#channel", "email")
    page.fill("#recipient", "AP@acme")
    page.select_option("#phase", "resend")
    page.get_by_role("button", name="Mostrar").click()
    page.wait_for_load_state()
    assert rows.count() == 1
    assert "ap@acme.example" in rows.nth(0).inner_text()
    assert "Reenvío de la reclamación 1" in rows.nth(0).inner_text()
    assert "recipient=AP%40acme" in page.url and "phase=resend" in page.url
    screenshot(page, "dashboard-messages-filtered")
    page.select_option("#phase", "")
    page.fill("#to", (D0 - timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Mostrar").click()
    page.wait_for_load_state()
    assert rows.count() == 0 and "Ningún mensaje coincide." in page.inner_text("main")
    page.fill("#to", "")
    page.get_by_role("button", name="Mostrar").click()
    page.wait_for_load_state()
    assert rows.count() == 2
    rows.nth(1).get_by_role("link", name="Acme Industrial").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Acme Industrial")


def test_the_promise_is_in_the_queue(page: Any) -> None:
    page.locator("nav.sections").get_by_role("link", name="Disputas y promesas").click()
    page.wait_for_load_state()
    assert "Ninguna disputa pendiente." in page.inner_text("#open-disputes")
    page.locator("#promised-ahead").click()
    page.wait_for_load_state()
    row = page.locator("table#promises tbody tr")
    assert row.count() == 1
    text = row.inner_text()
    assert "Acme Industrial" in text and "F-001" in text and "Pagará por transferencia" in text
    screenshot(page, "dashboard-queue")


def test_a_template_is_previewed_for_a_debtor(page: Any) -> None:
    page.locator("nav.sections").get_by_role("link", name="Políticas y plantillas").click()
    page.wait_for_load_state()
    assert page.locator("#check-ok").is_visible()
    assert page.locator('tr[data-phase="b2b/01"]').inner_text().count("Correo") == 1
    screenshot(page, "dashboard-policies")
    page.locator('tr[data-phase="b2b/01"]').get_by_role("link", name="b2b_01").click()
    page.wait_for_load_state()
    page.fill("#debtor", "C1")
    page.get_by_role("button", name="Ver", exact=True).click()
    page.wait_for_load_state()
    es = page.locator("#preview-es")
    assert "pago vencido" in es.locator(".subject").inner_text()
    # F-001 is promised (the test above): a claim today lists F-002 alone.
    sms = es.locator(".sms-bubble").inner_text().replace("\xa0", " ")
    assert sms.endswith("300,50 €"), sms
    email = page.frame_locator("#preview-es iframe.email").locator("body")
    assert "F-002" in email.inner_text() and "Acme Industrial" in email.inner_text()
    assert "F-001" not in email.inner_text()
    english = page.frame_locator("#preview-en iframe.email").locator("body")
    assert "F-002" in english.inner_text() and "Dear Acme Industrial" in english.inner_text()
    # Each email is shown whole in its frame, nothing of it cut off at the side.
    for frame in (email, english):
        assert frame.evaluate("b => b.ownerDocument.documentElement.scrollWidth") <= int(
            frame.evaluate("b => b.ownerDocument.documentElement.clientWidth")
        )
    screenshot(page, "dashboard-template-preview")
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_next_days_are_simulated(page: Any) -> None:
    page.locator("nav.sections").get_by_role("link", name="Simulación").click()
    page.wait_for_load_state()
    page.fill("#days", "14")
    page.get_by_role("button", name="Simular").click()
    # The page reloads by itself until the simulation has ended.
    page.wait_for_selector("#simulation-days", timeout=120_000)
    page.wait_for_selector("#sim-running", state="detached", timeout=120_000)
    assert page.locator("#simulation-days tbody tr").count() == 14
    screenshot(page, "dashboard-simulation")
    # The overview's trend: the bar of yesterday's week holds its messages, no other any.
    page.locator("nav.sections").get_by_role("link", name="Resumen").click()
    page.wait_for_load_state()
    bars = page.locator("#trend-messages-chart rect.bar")
    weeks = [str(w.get_attribute("data-week")) for w in page.locator("#trend-table tbody tr").all()]
    assert bars.count() == len(weeks) and len(weeks) in (13, 14)
    mine = max(i for i, first in enumerate(weeks) if first <= D0.isoformat())
    heights = [(bars.nth(i).bounding_box() or {"height": 0})["height"] for i in range(len(weeks))]
    assert heights[mine] > 0 and sum(heights) == heights[mine]
    assert page.errors == []  # type: ignore[attr-defined]


PHONE_PAGES = (
    "/dashboard/",
    "/dashboard/debtors",
    "/dashboard/messages",
    "/dashboard/tasks",
    "/dashboard/disputes",
    "/dashboard/simulation",
    "/dashboard/policies",
    "/dashboard/templates/b2b_01",
    "/dashboard/actions",
    "/dashboard/segments",
    "/dashboard/settings/communications",
    "/dashboard/banking",
    "/dashboard/audit",
)


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_the_dashboard_fits_a_phone(browser: Any, served: Served, page: Any) -> None:
    """Every screen is as wide as the phone: a table wider than its card scrolls inside it,
    and the page itself never scrolls sideways."""
    context = browser.new_context(viewport={"width": WIDTHS["phone"], "height": 800})
    context.add_cookies(page.context.cookies())
    phone = context.new_page()
    requested: list[str] = []
    phone.on("request", lambda r: requested.append(r.url))
    phone.goto(f"{served.url}/dashboard/")
    assert phone.locator("#aging-chart").is_visible()
    screenshot(phone, "dashboard-overview-phone")
    # The overview's figures of both periods fit the phone, without scrolling.
    for table in phone.locator("#indicators table, #messages table").all():
        box, card = table.bounding_box(), table.locator("xpath=..").bounding_box()
        assert box is not None and card is not None
        assert box["x"] + box["width"] <= card["x"] + card["width"]
    # An open task on the board: each row has its form to give it to someone.
    phone.goto(f"{served.url}/dashboard/debtors?q=acme")
    phone.locator("table#debtors").get_by_role("link", name="Acme Industrial").click()
    phone.wait_for_load_state()
    assert page_width(phone) == WIDTHS["phone"]
    screenshot(phone, "dashboard-account-phone")
    phone.locator("#task summary").click()
    phone.fill(
        "#task_message",
        "Acordar con Acme un calendario de pagos de la F-002 y enviarlo a "
        "administracion.proveedores@acme-industrial.example",
    )
    phone.get_by_role("button", name="Abrir la tarea").click()
    phone.wait_for_load_state()
    for path in PHONE_PAGES:
        phone.goto(f"{served.url}{path}")
        phone.wait_for_load_state()
        assert page_width(phone) == WIDTHS["phone"], path
        assert phone.locator("script").count() == 0, path
        if path == "/dashboard/tasks":
            assert phone.locator("table#tasks form.assign").count() == 1
            screenshot(phone, "dashboard-tasks-phone")
    context.close()
    # Nothing on any screen came from anywhere but this server: no script, style, font or
    # image from elsewhere (this company has no logo hosted on another site).
    everything = requested + page.requested
    assert len(everything) > len(PHONE_PAGES)
    assert [url for url in everything if not url.startswith(f"{served.url}/")] == []
