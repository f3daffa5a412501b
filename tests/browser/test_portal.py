"""The debtor portal in a real browser: the link of an email a run wrote, opened in chromium
against ``cobro serve`` in its own process, on a phone and on a desktop; the statement
downloaded; reading confirmed; an item disputed and another promised, and what the next
runs then send.

The runs are dated around today, because the server reads the real clock: a link is
valid from the run's send time for ``link_max_age_days``.
"""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from e2e.cli import clock_set_to, run_cobro

from .conftest import WIDTHS, Served, screenshot, serve, stop

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/browser/test_portal.py")

TOKEN = re.compile(r"https://pagos\.demo\.example/portal/([A-Za-z0-9_.-]+)")
TODAY = date.today()
D0 = TODAY - timedelta(days=1)  # the first run: yesterday
GRACE = 3  # portal.promise_grace_days (the starter's default)


@pytest.fixture(scope="module", autouse=True)
def clock() -> Iterator[None]:
    """The program's clock reads TODAY, as the data does."""
    with clock_set_to(TODAY):
        yield


# The tests below follow one workspace from claim to broken promise, in this order: with
# pytest-xdist, their xdist_group (pytestmark above) runs them all, in order, on one worker.


def write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n", encoding="utf-8")


def emails(ws: Path, on: date) -> list[EmailMessage]:
    """The messages a run for ``on`` wrote to the debtor (staff copies left out)."""
    found = []
    for eml in sorted((ws / "mail" / on.isoformat()).glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
        assert isinstance(message, EmailMessage)
        if "ap@acme.example" in str(message["To"]):
            found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def views(ws: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(ws / "cobro.db") as db:
        return [
            (str(kind), agent)
            for kind, agent in db.execute("SELECT kind, user_agent FROM claim_views ORDER BY id")
        ]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Acme (business, Spanish) owes two invoices due 7 days before the first run, which
    sends it phase 01 by email (caught in mail/)."""
    root = tmp_path_factory.mktemp("browser") / "acme"
    subprocess.run([sys.executable, "-m", "cobro", "init", str(root)], check=True)
    config = root / "cobro.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "default_policy: consumer",
            "default_policy: consumer\n"
            "portal:\n"
            "  pay_url: https://pay.example.com/checkout?ref={reference}&amount={amount}\n"
            '  bank: {holder: Distribuciones Demo S.L., iban: "ES91 2100 0418 4502 0005 1332"}\n',
        ),
        encoding="utf-8",
    )
    due = D0 - timedelta(days=7)
    write(
        root / "customers.csv",
        "external_id,name,kind,language,email\nC1,Acme Industrial,business,es,ap@acme.example",
    )
    write(
        root / "receivables.csv",
        "external_id,customer,number,due_on,currency,amount\n"
        f"R1,C1,F-001,{due},EUR,1200.00\nR2,C1,F-002,{due},EUR,300.50",
    )
    run_cobro(root, "import", "customers", str(root / "customers.csv"))
    run_cobro(root, "import", "receivables", str(root / "receivables.csv"))
    run_cobro(root, "run", "--date", D0.isoformat(), "--quiet")
    return root


@pytest.fixture(scope="module")
def served(ws: Path) -> Iterator[Served]:
    server = serve(ws)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="module")
def link(ws: Path, served: Served) -> str:
    """The page the first claim's email links to, on the test's server."""
    (claim,) = emails(ws, D0)
    found = TOKEN.search(text_of(claim))
    assert found, text_of(claim)
    return f"{served.url}/portal/{found.group(1)}"


def open_page(browser: Any, url: str, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    page = context.new_page()
    response = page.goto(url)
    assert response is not None and response.status == 200
    return page


@pytest.mark.parametrize("device", list(WIDTHS))
def test_the_emails_link_shows_every_open_item_on_a_phone_and_a_desktop(
    browser: Any, ws: Path, link: str, device: str
) -> None:
    page = open_page(browser, link, WIDTHS[device])
    body = page.inner_text("body")
    assert "Acme Industrial" in body
    assert "F-001" in body and "F-002" in body
    assert "1.500,50" in body  # the total, in Spanish
    assert "ES91 2100 0418 4502 0005 1332" in body  # bank details for a transfer
    pay = page.get_by_role("link", name=re.compile("Pagar"))
    assert "amount=1500.50" in str(pay.first.get_attribute("href"))
    # Nothing is wider than the screen (no sideways scrolling on a phone).
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTHS[device]
    shot = screenshot(page, f"portal-{device}")
    assert shot.stat().st_size > 10_000
    page.context.close()
    # A bare GET records an opened page, never a read.
    assert views(ws) and {kind for kind, _ in views(ws)} == {"opened"}


def test_the_statement_downloads_as_a_pdf_of_the_same_items(browser: Any, link: str) -> None:
    page = open_page(browser, link, WIDTHS["desktop"])
    with page.expect_download() as waiting:
        page.get_by_role("link", name=re.compile("extracto", re.I)).click()
    download = waiting.value
    assert download.suggested_filename.startswith("estado-de-cuenta-C1-")
    data = Path(download.path()).read_bytes()
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert "F-001" in text and "F-002" in text and "Estado de cuenta" in text
    page.context.close()


def test_confirming_reading_records_a_read_with_the_browsers_user_agent(
    browser: Any, ws: Path, link: str
) -> None:
    page = open_page(browser, link, WIDTHS["phone"])
    page.get_by_role("button", name=re.compile("He leído")).click()
    page.wait_for_load_state()
    assert "?done=read" in page.url
    screenshot(page, "portal-read-confirmed")
    reads = [agent for kind, agent in views(ws) if kind == "read"]
    assert len(reads) == 1 and "Chrome" in str(reads[0])
    page.context.close()


def test_a_disputed_item_is_left_out_and_a_broken_promise_sends_one_claim(
    browser: Any, ws: Path, link: str
) -> None:
    page = open_page(browser, link, WIDTHS["desktop"])
    # Dispute F-002.
    page.locator("section.dispute summary").click()
    item = page.locator("#dispute_item option", has_text="F-002").get_attribute("value")
    page.select_option("#dispute_item", value=item)
    page.fill("#dispute_reason", "Mercancía devuelta el día 3")
    page.locator("section.dispute button[type=submit]").click()
    page.wait_for_load_state()
    assert "?done=dispute" in page.url
    # Promise to pay F-001 five days from today.
    promised = TODAY + timedelta(days=5)
    page.locator("section.promise summary").click()
    page.locator("section.promise input[type=checkbox]").first.check()
    page.fill("#promised_on", promised.isoformat())
    page.locator("section.promise button[type=submit]").click()
    page.wait_for_load_state()
    assert "?done=promise" in page.url
    screenshot(page, "portal-disputed-and-promised")
    rows = {
        number: page.locator("tr", has_text=number).inner_text() for number in ("F-001", "F-002")
    }
    assert "Pago prometido" in rows["F-001"] and "En disputa" in rows["F-002"]
    page.context.close()

    # Day by day after the first run: nothing while F-001 is promised (F-002 is disputed)...
    broken = promised + timedelta(days=GRACE + 1)
    day = D0 + timedelta(days=1)
    while day < broken:
        run_cobro(ws, "run", "--date", day.isoformat(), "--quiet")
        assert emails(ws, day) == [], day
        day += timedelta(days=1)
    # ...then the promise is broken: one claim, for F-001 only.
    run_cobro(ws, "run", "--date", broken.isoformat(), "--quiet")
    (claim,) = emails(ws, broken)
    text = text_of(claim)
    assert "F-001" in text and "F-002" not in text
    promises = run_cobro(ws, "promises", "list", "--json").stdout
    assert '"broken"' in promises
