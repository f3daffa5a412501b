"""The staff dashboard in a real browser (Debian's chromium) against ``cobro serve`` in its
own process: log in, read the overview (the chart drawn, the figures those of the data
loaded), find a debtor, resend a claim, record a promise taken by phone. Screenshots are
kept in test-artifacts/screenshots/.

The data is dated around today: the server reads the real clock.
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

from e2e.cli import run_cobro

from .conftest import WIDTHS, Served, screenshot, serve, stop

TODAY = date.today()
D0 = TODAY - timedelta(days=1)  # the run: yesterday
EMAIL, PASSWORD = "cobros@demo.example", "una contraseña larga"


def write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Acme owes 1,200.00 and 300.50 due 8 days ago (a run yesterday sent it phase 01);
    Beta owes 800.00 due in 10 days. A collector can log in."""
    root = tmp_path_factory.mktemp("dashboard") / "demo"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(root)], check=True)
    config = root / "cobro.yaml"  # no logo hosted elsewhere: the page loads nothing from outside
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "    logo_url: https://demo.example/logo.png\n", ""
        ),
        encoding="utf-8",
    )
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


def test_the_dashboard_fits_a_phone(browser: Any, served: Served, page: Any) -> None:
    context = browser.new_context(viewport={"width": WIDTHS["phone"], "height": 800})
    context.add_cookies(page.context.cookies())
    phone = context.new_page()
    phone.goto(f"{served.url}/dashboard/")
    assert phone.locator("#aging-chart").is_visible()
    screenshot(phone, "dashboard-overview-phone")
    context.close()
