"""The statement of account as a PDF: its content read back, and attached to claims."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import ClassVar

import pytest
from pypdf import PdfReader
from sqlalchemy import select

import documents
from cobro.engine.responses import add_promise, open_dispute
from cobro.engine.runs import run_day
from cobro.evidence.messages import unpack
from cobro.render.statement import StatementError, statement_html, statement_pdf
from cobro.store import tables as t
from cobro.workspace import Workspace

from .conftest import SmtpServer
from .support import d, deliveries, load, parse, pay

BANK = """portal:
  bank:
    holder: Distribuciones Demo S.L.
    iban: ES9121000418450200051332
    bic: CAIXESBBXXX
    bank: CaixaBank
  pay_instructions: Pagos también por Bizum al 600 000 000.

policies:
"""
ON = d("2025-04-10")
AT = datetime(2025, 4, 9, 10, 0, tzinfo=UTC)


def pdf_text(data: bytes) -> str:
    """The PDF's text with every run of white space (line breaks, the non-breaking space
    between an amount and its currency) as one space."""
    return " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split()
    )


def ids(ws: Workspace, customer: str) -> tuple[int, dict[str, int]]:
    """The debtor's id and its receivables' ids by number."""
    c, r = t.customers.c, t.receivables.c
    with ws.engine.connect() as conn:
        cid = conn.execute(select(c.id).where(c.external_id == customer)).scalar_one()
        items = {row.number: row.id for row in conn.execute(select(r.number, r.id))}
    return int(cid), items


@pytest.fixture
def debtor(make_ws: Callable[..., Workspace]) -> Workspace:
    """Acme with five items: overdue, disputed, promised, not yet due (USD), and paid."""
    ws = make_ws(replace={"\npolicies:\n": "\n" + BANK})
    load(
        ws,
        "customers",
        {"external_id": "C1", "name": "Acme <script>alert(1)</script>", "email": "ap@acme.example"},
    )
    for ext, due, amount, currency, issued in (
        ("F-1", "2025-03-01", "1200.00", "EUR", "2025-02-01"),
        ("F-2", "2025-03-15", "300.50", "EUR", "2025-02-15"),
        ("F-3", "2025-03-20", "80.00", "EUR", None),
        ("F-4", "2025-05-01", "99.99", "USD", "2025-04-01"),
        ("F-5", "2025-03-01", "10.00", "EUR", None),
    ):
        load(
            ws,
            "receivables",
            {
                "external_id": ext,
                "customer": "C1",
                "number": ext,
                "due_on": due,
                "amount": amount,
                "currency": currency,
                "issued_on": issued,
            },
        )
    pay(ws, "P-1", "C1", "10.00", d("2025-03-02"), receivable="F-5")
    pay(ws, "P-2", "C1", "200.00", d("2025-03-02"), receivable="F-1")
    cid, items = ids(ws, "C1")
    with ws.engine.begin() as conn:
        open_dispute(conn, ws.company_id, cid, items["F-2"], "Not ordered", AT, source="staff")
        add_promise(
            conn,
            ws.company_id,
            cid,
            [items["F-3"]],
            d("2025-04-20"),
            3,
            AT,
            today=AT.date(),
            max_days=30,
            source="staff",
        )
    return ws


def pdf_of(ws: Workspace, language: str, on: date = ON) -> str:
    cid, _ = ids(ws, "C1")
    with ws.engine.connect() as conn:
        data = statement_pdf(
            conn, ws.config, ws.company_id, cid, language=language, on=on, root=ws.root
        )
    assert data.startswith(b"%PDF-")
    return pdf_text(data)


def test_spanish_statement_lists_every_open_item_with_its_status_totals_and_bank(
    debtor: Workspace,
) -> None:
    text = pdf_of(debtor, "es")
    assert "Estado de cuenta" in text and "A fecha de 10 de abril de 2025" in text
    assert "Acme <script>alert(1)</script>" in text and "C1" in text
    # F-1: 1.200,00 € less 200 paid, 40 days overdue; F-5 is paid and left out.
    assert "F-1 Factura 1/2/25 1/3/25 1.200,00 € 1.000,00 € 40 Vencido" in text
    assert "F-2" in text and "En disputa" in text
    assert "F-3" in text and "Pago prometido para el 20/4/25" in text
    assert "F-4" in text and "99,99 US$" in text and "Por vencer" in text
    assert "F-5" not in text
    # Totals per currency, never summed across them.
    assert "Total pendiente (EUR) 1.380,50 €" in text
    assert "del que vencido 1.380,50 €" in text
    assert "Total pendiente (USD) 99,99 US$" in text
    assert "Pago por transferencia bancaria" in text
    assert "ES91 2100 0418 4502 0005 1332" in text and "CAIXESBBXXX" in text
    assert "CaixaBank" in text and "Titular Distribuciones Demo S.L." in text
    assert "Pagos también por Bizum al 600 000 000." in text
    assert "Página 1 de 1" in text


def test_english_statement_has_english_words_and_english_formatting(debtor: Workspace) -> None:
    text = pdf_of(debtor, "en")
    assert "Statement of account" in text and "As of April 10, 2025" in text
    assert "F-1 Invoice 2/1/25 3/1/25 €1,200.00 €1,000.00 40 Overdue" in text
    assert "Disputed" in text and "Promised for 4/20/25" in text and "Not yet due" in text
    assert "Total outstanding (EUR) €1,380.50" in text and "Total outstanding (USD) $99.99" in text
    assert "Pay by bank transfer" in text and "Account holder" in text
    assert "Estado de cuenta" not in text and "Vencido" not in text


def test_a_resolved_dispute_and_a_broken_promise_leave_the_items_overdue(
    debtor: Workspace,
) -> None:
    with debtor.engine.begin() as conn:
        conn.execute(t.disputes.update().values(status="rejected"))
        conn.execute(t.promises.update().values(status="broken"))
    text = pdf_of(debtor, "en")
    assert "Disputed" not in text and "Promised" not in text
    assert text.count("Overdue") == 3


def test_statement_data_is_escaped_in_its_html(debtor: Workspace) -> None:
    from cobro.render.statement import load_statement

    cid, _ = ids(debtor, "C1")
    with debtor.engine.connect() as conn:
        statement = load_statement(conn, debtor.company_id, cid, ON)
    html = statement_html(debtor.config, statement, "en", "en_US")
    assert "<script>" not in html
    assert "Acme &lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_no_statement_for_a_debtor_of_another_company(debtor: Workspace) -> None:
    cid, _ = ids(debtor, "C1")
    with debtor.engine.connect() as conn, pytest.raises(StatementError, match="no debtor"):
        statement_pdf(
            conn, debtor.config, debtor.company_id + 1, cid, language="es", on=ON, root=debtor.root
        )


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def web_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_statement_fetches_nothing_remote_but_draws_the_workspace_logo(
    debtor: Workspace, web_server: int
) -> None:
    (debtor.root / "logo.png").write_bytes(documents.png())
    bundled = (resources.files("cobro") / "render" / "templates" / "statement_pdf.j2").read_text(
        encoding="utf-8"
    )
    (debtor.root / "templates").mkdir(exist_ok=True)
    (debtor.root / "templates" / "statement_pdf.j2").write_text(
        bundled.replace(
            "<header>", f'<header><img src="http://127.0.0.1:{web_server}/tracker.png">'
        ),
        encoding="utf-8",
    )
    cid, _ = ids(debtor, "C1")
    config = debtor.config.model_copy(
        update={
            "company": debtor.config.company.model_copy(
                update={
                    "branding": debtor.config.company.branding.model_copy(
                        update={
                            "logo_file": "logo.png",
                            "logo_url": f"http://127.0.0.1:{web_server}/l",
                        }
                    )
                }
            )
        }
    )
    with debtor.engine.connect() as conn:
        data = statement_pdf(
            conn, config, debtor.company_id, cid, language="es", on=ON, root=debtor.root
        )
    assert Recorder.requests == []
    assert sum(len(page.images) for page in PdfReader(io.BytesIO(data)).pages) == 1


ATTACH = {
    "        template: b2b_01\n        mode: full\n": (
        "        template: b2b_01\n        mode: full\n        attach_statement: true\n"
    )
}


def test_a_phase_with_attach_statement_sends_the_statement_pdf_with_the_claim(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_ws(replace={**smtp_server.replace, **ATTACH, "\npolicies:\n": "\n" + BANK})
    load(
        ws,
        "customers",
        {
            "external_id": "B1",
            "name": "Ferretería Norte",
            "kind": "business",
            "email": "pagos@norte.example",
        },
    )
    load(
        ws,
        "contacts",
        {
            "external_id": "K1",
            "customer": "B1",
            "name": "Rep",
            "email": "rep@demo.example",
            "roles": "sales_rep",
            "language": "en",
        },
    )
    for ext, due in (("F-10", "2025-03-03"), ("F-11", "2025-04-30")):
        load(
            ws,
            "receivables",
            {
                "external_id": ext,
                "customer": "B1",
                "number": ext,
                "due_on": due,
                "amount": "500.00",
            },
        )
    run_day(ws, d("2025-03-10"))  # phase 01 for F-10: to the debtor and the sales rep

    by_rcpt = {r.rcpt_tos[0]: r for r in smtp_server.received}
    assert set(by_rcpt) == {"pagos@norte.example", "rep@demo.example"}
    debtor_msg = parse(by_rcpt["pagos@norte.example"].data)
    (pdf,) = list(debtor_msg.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "estado-de-cuenta-B1-2025-03-10.pdf"
    text = pdf_text(pdf.get_content())
    assert "Estado de cuenta" in text and "A fecha de 10 de marzo de 2025" in text
    assert "F-10" in text and "7 Vencido" in text and "F-11" in text and "Por vencer" in text
    assert "Total pendiente (EUR) 1.000,00 €" in text and "ES91 2100 0418 4502 0005 1332" in text
    # The sales rep reads English: their copy carries the statement in English.
    (rep_pdf,) = list(parse(by_rcpt["rep@demo.example"].data).iter_attachments())
    assert rep_pdf.get_filename() == "statement-B1-2025-03-10.pdf"
    assert "Statement of account" in pdf_text(rep_pdf.get_content())
    # The message kept as sent is the one received, attachment included.
    kept = {x.recipient: unpack(x.message_zlib) for x in deliveries(ws)}
    assert kept["pagos@norte.example"] == by_rcpt["pagos@norte.example"].data


def test_a_phase_without_attach_statement_sends_no_pdf(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    load(
        smtp_ws,
        "customers",
        {"external_id": "B1", "name": "Norte", "kind": "business", "email": "p@norte.example"},
    )
    load(
        smtp_ws,
        "receivables",
        {
            "external_id": "F-10",
            "customer": "B1",
            "number": "F-10",
            "due_on": "2025-03-03",
            "amount": "500.00",
        },
    )
    run_day(smtp_ws, d("2025-03-10"))
    (got,) = smtp_server.received
    assert list(parse(got.data).iter_attachments()) == []


NOTICE = """default_policy: consumer
actions:
  - key: statement
    description: Statement of account on the 20th
    type: debt_notice
    days: [20]
    segment: overdue_30
    attach_statement: true
"""


def test_a_debt_notice_with_attach_statement_carries_the_statement_pdf(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_ws(replace={**smtp_server.replace, "default_policy: consumer\n": NOTICE})
    load(
        ws,
        "customers",
        {"external_id": "A1", "name": "Ana", "kind": "person", "email": "ana@example.com"},
    )
    for ext, due in (("C1", "2027-01-10"), ("C2", "2027-03-10")):
        load(
            ws,
            "receivables",
            {"external_id": ext, "customer": "A1", "number": ext, "due_on": due, "amount": "120"},
        )
    for day in range(15, 21):
        run_day(ws, date(2027, 2, day))

    (notice,) = [
        r for r in smtp_server.received if parse(r.data)["X-Cobro-Claim"].endswith("/statement")
    ]
    (pdf,) = list(parse(notice.data).iter_attachments())
    assert pdf.get_filename() == "estado-de-cuenta-A1-2027-02-20.pdf"
    text = pdf_text(pdf.get_content())
    assert "A fecha de 20 de febrero de 2027" in text
    assert "C1" in text and "41 Vencido" in text and "C2" in text and "Por vencer" in text
    assert "Total pendiente (EUR) 240,00 €" in text
    # The claims of the policy on the other days carry no statement.
    others = [r for r in smtp_server.received if r is not notice]
    assert others and all(not list(parse(r.data).iter_attachments()) for r in others)
