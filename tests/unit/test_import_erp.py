"""Importing what ERPs export: locale formats, column mappings, unusable addresses, credit
notes and reversed payments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select

from cobro.config.loader import load_mapping
from cobro.config.schema import ImportMapping
from cobro.engine.runs import run_day
from cobro.engine.tasks import statement, statement_totals
from cobro.errors import ConfigError, ImportError_
from cobro.evidence.chain import verify_chain
from cobro.intake.formats import FormatProblem, Reading, read_amount, read_date
from cobro.intake.importer import ImportReport, import_file, import_records
from cobro.store import tables as t
from cobro.workspace import Workspace

NOW = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
SAMPLES = Path(__file__).parent.parent / "data" / "import"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(ws: Workspace, kind: str, path: Path, mapping: ImportMapping | None = None) -> ImportReport:
    return import_file(ws, kind, path, NOW, mapping)


def by_ext(ws: Workspace, table: Table) -> dict[str, dict[str, Any]]:
    with ws.engine.connect() as conn:
        return {
            r.external_id: dict(r._mapping)
            for r in conn.execute(select(table).where(table.c.company_id == ws.company_id))
        }


def balances(ws: Workspace) -> dict[str, int]:
    return {ext: r["balance_minor"] for ext, r in by_ext(ws, t.receivables).items()}


def seed(ws: Workspace, tmp_path: Path, receivables: str, customers: str = "C1,C2") -> None:
    rows = "".join(f"{c},Customer {c}\n" for c in customers.split(","))
    assert not run(ws, "customers", write(tmp_path, "c.csv", "external_id,name\n" + rows)).rejected
    text = "external_id,customer,kind,invoice,due_on,amount\n" + receivables
    report = run(ws, "receivables", write(tmp_path, "seed_r.csv", text))
    assert not report.rejected, report.rejected


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("text", "reading", "amount"),
    [
        ("1.234,50", Reading(locale="es_ES"), "1234.50"),
        ("1234.50", Reading(locale="es_ES"), "1234.50"),
        ("1234,5", Reading(locale="es_ES"), "1234.5"),
        ("1.000.000", Reading(locale="es_ES"), "1000000"),
        ("1.234,50-", Reading(locale="es_ES"), "-1234.50"),
        ("1,234.50", Reading(locale="en_US"), "1234.50"),
        ("1.234", Reading(decimal=","), "1234"),
        ("1,234", Reading(decimal="."), "1234"),
        ("1 234,50", Reading(decimal=","), "1234.50"),
    ],
)
def test_amounts_are_read_plain_in_the_locale_or_as_declared(
    text: str, reading: Reading, amount: str
) -> None:
    assert str(read_amount(text, reading)) == amount


@pytest.mark.parametrize(
    ("text", "reading", "problem"),
    [
        ("1.234", Reading(locale="es_ES"), "'1.234' is ambiguous: 1.234 (as a plain number) or "),
        ("1.234,50", Reading(locale="en_US"), "not an amount (e.g. 1234.50 or 1,234.50)"),
        ("1.234,50", Reading(), "not an amount (e.g. 1234.50)"),
        ("12.34.5", Reading(locale="es_ES"), "not an amount"),
        ("1,234.50", Reading(decimal=","), "not an amount (e.g. 1.234,50)"),
    ],
)
def test_an_ambiguous_or_foreign_amount_is_refused_not_guessed(
    text: str, reading: Reading, problem: str
) -> None:
    with pytest.raises(FormatProblem) as exc:
        read_amount(text, reading)
    assert problem in str(exc.value)


def test_dates_are_read_in_the_locale_order_or_the_declared_format() -> None:
    assert read_date("30/03/2026", Reading(locale="es_ES")) == date(2026, 3, 30)
    assert read_date("3/30/2026", Reading(locale="en_US")) == date(2026, 3, 30)
    assert read_date("30.03.2026", Reading(locale="de_DE")) == date(2026, 3, 30)
    assert read_date("2026-03-30", Reading(locale="en_US")) == date(2026, 3, 30)
    assert read_date("30-03-26", Reading(date_format="%d-%m-%y")) == date(2026, 3, 30)
    with pytest.raises(FormatProblem, match=r"is not a date .*30/03/2026 as written in es_ES"):
        read_date("03/30/2026", Reading(locale="es_ES"))
    with pytest.raises(FormatProblem, match="the year '26' is ambiguous"):
        read_date("30/03/26", Reading(locale="es_ES"))
    with pytest.raises(FormatProblem, match=r"not a date in the format %d/%m/%Y"):
        read_date("30.03.2026", Reading(date_format="%d/%m/%Y"))
    with pytest.raises(FormatProblem, match=r"\(YYYY-MM-DD\)$"):
        read_date("30/03/2026", Reading())


def test_the_spanish_formatted_csv_imports(workspace: Workspace) -> None:
    reports = [
        run(workspace, kind, SAMPLES / f"{kind}_es.csv")
        for kind in ("customers", "receivables", "payments")
    ]

    assert [r.rejected for r in reports] == [[], [], []]
    rows = by_ext(workspace, t.receivables)
    assert rows["FV-26-0101"]["amount_minor"] == 123450
    assert rows["FV-26-0101"]["due_on"] == date(2026, 3, 30)
    assert rows["FV-26-0101"]["issued_on"] == date(2026, 3, 1)
    assert rows["FV-26-0102"]["amount_minor"] == 1500000
    assert rows["AB-26-0007"]["kind"] == "credit_note"
    assert balances(workspace) == {
        "FV-26-0101": 100000,  # 1.234,50 less the 234,50 of its credit note
        "FV-26-0102": 1500000,
        "FV-26-0103": 86075,  # paid, then the direct debit came back
        "AB-26-0007": 0,
    }


def test_an_ambiguous_amount_is_reported_with_its_row_and_field(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "")
    path = write(
        tmp_path,
        "r.csv",
        "external_id;customer;due_on;amount\nR1;C1;30/03/2026;1.500\nR2;C1;30/03/2026;1.500,00\n",
    )
    report = run(workspace, "receivables", path)

    assert report.inserted == 1
    [problem] = report.rejected
    assert (problem.line, problem.field) == (2, "amount")
    assert "'1.500' is ambiguous: 1.500 (as a plain number) or 1500 (as written in es_ES)" in str(
        problem
    )
    declared = run(workspace, "receivables", path, ImportMapping(decimal=","))
    assert (declared.inserted, declared.unchanged, declared.rejected) == (1, 1, [])
    assert balances(workspace)["R1"] == 150000


def test_json_numbers_are_read_plain_whatever_the_locale(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "")
    path = write(
        tmp_path,
        "r.json",
        json.dumps([{"external_id": "R1", "customer": "C1", "due_on": "2026-03-30"}])[:-2]
        + ', "amount": 1.500}]',
    )
    report = run(workspace, "receivables", path)

    assert report.rejected == []
    assert balances(workspace)["R1"] == 150


# --------------------------------------------------------------------------- mappings


def test_a_mapped_file_imports(workspace: Workspace, tmp_path: Path) -> None:
    run(workspace, "customers", SAMPLES / "customers_es.csv")
    mapping = load_mapping(SAMPLES / "sage_map.yaml")

    report = run(workspace, "receivables", SAMPLES / "sage_receivables.csv", mapping)

    assert (report.inserted, report.rejected) == (2, [])
    rows = by_ext(workspace, t.receivables)
    assert (rows["SG-1"]["amount_minor"], rows["SG-1"]["due_on"]) == (123450, date(2026, 4, 30))
    assert rows["SG-2"]["customer_id"] == by_ext(workspace, t.customers)["C-2002"]["id"]


def test_a_named_mapping_in_cobro_yaml_is_validated_and_used(make_workspace: Any) -> None:
    ws = make_workspace(
        replace={
            "default_policy:": "imports:\n"
            "  sage:\n"
            "    kind: receivables\n"
            "    columns: {external_id: 'Nº Factura', customer: 'Cód. Cliente', "
            "due_on: 'Fecha Vto.', amount: Importe}\n"
            '    decimal: "."\n'
            "default_policy:"
        }
    )
    run(ws, "customers", SAMPLES / "customers_es.csv")
    report = run(ws, "receivables", SAMPLES / "sage_receivables.csv", ws.config.imports["sage"])
    assert (report.inserted, report.rejected) == (2, [])


def test_an_unknown_header_in_a_mapping_refuses_the_file(
    workspace: Workspace, tmp_path: Path
) -> None:
    mapping = ImportMapping(kind="receivables", columns={"amount": "Total"})
    with pytest.raises(ImportError_, match="the mapping reads column 'Total' but the file has no"):
        run(workspace, "receivables", SAMPLES / "sage_receivables.csv", mapping)
    with pytest.raises(ImportError_, match="the mapping is for receivables, not payments"):
        run(workspace, "payments", SAMPLES / "sage_receivables.csv", mapping)


def test_a_mapping_file_is_checked_like_the_configuration(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "map.yaml",
        "kind: payments\n"
        "columns:\n"
        "  external_id: Ref\n"
        "  amont: Importe\n"
        "decimal: ';'\n"
        "date_format: '%d/%m'\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_mapping(path)

    assert [str(p) for p in exc.value.problems] == [
        f"{path}:4: columns.amont: 'amont' is not an import column (did you mean 'amount'?); "
        "the columns are amount, balance, currency, customer, description, due_on, email, "
        "external_id, group, invoice, issued_on, kind, language, name, number, optouts, paid_on, "
        "phone, policy, receivable, reverses, roles, tags, timezone",
        f"{path}:5: decimal: Input should be ',' or '.'",
        f"{path}:6: date_format: '%d/%m' must name the day, the month and the year once each",
    ]


# --------------------------------------------------------------------------- addresses


def test_an_invalid_email_stores_the_customer_with_a_warning_and_its_invoices(
    workspace: Workspace,
) -> None:
    customers = run(workspace, "customers", SAMPLES / "customers_es.csv")
    receivables = run(workspace, "receivables", SAMPLES / "receivables_es.csv")

    assert (customers.inserted, customers.rejected) == (2, [])
    [warning] = customers.warnings
    assert str(warning).startswith(
        "customers_es.csv:3: email: 'talleres duero@example' is not an email address"
    )
    assert str(warning).endswith("; the customer is stored without it")
    stored = by_ext(workspace, t.customers)["C-2002"]
    assert (stored["email"], stored["invalid_email"]) == (None, "talleres duero@example")
    assert stored["phone"] == "+34600000002"  # the other channel still works
    assert receivables.rejected == []
    assert "FV-26-0103" in balances(workspace)


def test_a_valid_address_imported_later_clears_the_unusable_one(
    workspace: Workspace, tmp_path: Path
) -> None:
    run(workspace, "customers", write(tmp_path, "a.csv", "external_id,name,email\nC1,Ana,ana@\n"))
    fixed = run(
        workspace, "customers", write(tmp_path, "b.csv", "external_id,name,email\nC1,Ana,a@x.es\n")
    )

    assert (fixed.updated, fixed.warnings) == (1, [])
    stored = by_ext(workspace, t.customers)["C1"]
    assert (stored["email"], stored["invalid_email"]) == ("a@x.es", None)


def test_a_contact_with_only_an_unusable_address_is_kept_with_a_warning(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "")
    path = write(tmp_path, "k.csv", "external_id,customer,name,email,phone\nK1,C1,Eva,eva@@x,\n")
    report = run(workspace, "contacts", path)

    assert (report.inserted, report.rejected) == (1, [])
    assert [(w.line, w.field) for w in report.warnings] == [(2, "email")]
    assert by_ext(workspace, t.contacts)["K1"]["invalid_email"] == "eva@@x"


# --------------------------------------------------------------------------- credit notes


def test_a_credit_note_reduces_the_balance_oldest_first(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100.00\nR2,C1,,,2026-02-01,50.00\n")
    path = write(tmp_path, "cn.csv", "external_id,customer,due_on,amount\nCN1,C1,2026-03-05,-80\n")
    report = run(workspace, "receivables", path)

    assert (report.inserted, report.rejected) == (1, [])
    assert balances(workspace) == {"R1": 7000, "R2": 0, "CN1": 0}
    assert by_ext(workspace, t.receivables)["CN1"]["amount_minor"] == -8000


def test_a_credit_note_goes_to_the_invoice_it_references_even_imported_before_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(
        workspace,
        tmp_path,
        "CN1,C1,credit_note,R2,2026-03-05,30\n"  # before its invoice, in the same file
        "R1,C1,invoice,,2026-01-01,100\n"
        "R2,C1,invoice,,2026-02-01,100\n",
    )
    assert balances(workspace) == {"R1": 10000, "R2": 7000, "CN1": 0}

    later = write(
        tmp_path,
        "cn2.csv",
        "external_id,customer,kind,invoice,due_on,amount\nCN2,C1,credit_note,F-9,2026-03-06,40\n",
    )
    run(workspace, "receivables", later)
    assert balances(workspace)["CN2"] == -4000  # waits for F-9
    invoice = "external_id,customer,number,due_on,amount\nR9,C1,F-9,2026-03-01,25\n"
    run(workspace, "receivables", write(tmp_path, "f9.csv", invoice))
    # 25 to F-9, the 15 left to the oldest open item
    assert balances(workspace) == {"R1": 8500, "R2": 7000, "CN1": 0, "CN2": 0, "R9": 0}


def test_a_credit_note_is_shown_in_the_statement_and_lowers_the_total(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\nCN1,C1,credit_note,,2026-03-05,130\n")
    with workspace.engine.connect() as conn:
        lines = statement(conn, workspace.company_id, "C1", date(2026, 4, 1))

    assert [(x.number, x.kind, str(x.balance.amount)) for x in lines] == [
        ("CN1", "credit_note", "-30.00"),  # 100 applied to R1, 30 left
    ]
    assert str(statement_totals(lines)["EUR"].amount) == "-30.00"

    seed(workspace, tmp_path, "R2,C1,,,2026-03-10,50\n", customers="C1")
    with workspace.engine.connect() as conn:
        lines = statement(conn, workspace.company_id, "C1", date(2026, 4, 1))
    assert [(x.number, str(x.amount.amount), str(x.balance.amount)) for x in lines] == [
        ("CN1", "-130.00", "0.00"),
        ("R2", "50.00", "20.00"),
    ]


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ("R9,C1,invoice,,2026-03-01,-10", "amount", "only a credit_note has a negative amount"),
        ("R1,C1,credit_note,,2026-03-01,10", "kind", "R1 is stored as invoice"),
    ],
)
def test_a_credit_note_cannot_be_confused_with_an_invoice(
    workspace: Workspace, tmp_path: Path, row: str, field: str, problem: str
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\n")
    text = "external_id,customer,kind,invoice,due_on,amount\n" + row + "\n"
    report = run(workspace, "receivables", write(tmp_path, "bad.csv", text))

    [rejected] = report.rejected
    assert rejected.field == field and problem in rejected.problem


# --------------------------------------------------------------------------- reversals


def pay(ws: Workspace, tmp_path: Path, name: str, rows: str) -> ImportReport:
    text = "external_id,customer,receivable,paid_on,amount,reverses\n" + rows
    return run(ws, "payments", write(tmp_path, name, text))


def test_a_reversed_payment_reopens_its_item_and_is_recorded_as_evidence(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\nR2,C1,,,2026-03-02,100\n")
    pay(workspace, tmp_path, "p.csv", "P1,C1,R1,2026-03-03,150,\n")
    assert balances(workspace) == {"R1": 0, "R2": 5000}

    report = pay(workspace, tmp_path, "ret.csv", "RET1,C1,,2026-03-09,-150,P1\n")

    assert (report.inserted, report.rejected) == (1, [])
    assert balances(workspace) == {"R1": 10000, "R2": 10000}
    with workspace.engine.connect() as conn:
        ev = conn.execute(select(t.evidence).where(t.evidence.c.kind == "payment.reversed")).one()
        assert verify_chain(conn, workspace.company_id).ok
    assert json.loads(ev.payload) == {
        "payment": "P1",
        "reversal": "RET1",
        "returned_on": "2026-03-09",
        "amount": "150.00 EUR",
        "reopened": [
            {"receivable": "R1", "amount": "100.00 EUR"},
            {"receivable": "R2", "amount": "50.00 EUR"},
        ],
    }
    again = pay(workspace, tmp_path, "ret2.csv", "RET1,C1,,2026-03-09,,P1\n")
    assert (again.unchanged, again.rejected) == (1, [])


def test_a_payment_reversed_in_the_same_file_leaves_the_next_payment_in_place(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\n")
    report = pay(
        workspace,
        tmp_path,
        "p.csv",
        "P1,C1,R1,2026-03-03,100,\nRET1,C1,,2026-03-09,,P1\nP2,C1,,2026-03-12,40,\n",
    )

    assert (report.inserted, report.rejected) == (3, [])
    assert balances(workspace) == {"R1": 6000}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("RET2,C1,,2026-03-10,,P1", "payment P1 was already reversed by RET1"),
        ("RET2,C1,,2026-03-10,,P9", "no payment with external_id 'P9'"),
        ("RET2,C2,,2026-03-10,,P2", "payment P2 is of customer C1, not C2"),
        ("RET2,C1,,2026-03-10,,RET1", "RET1 is itself a reversal"),
        ("RET2,C1,,2026-03-10,10,P2", "a reversal returns the whole payment: P2 was 20.00 EUR"),
        ("RET1,C1,,2026-03-10,,P2", "RET1 was already recorded as the reversal of P1"),
    ],
)
def test_a_reversal_that_cannot_apply_is_rejected(
    workspace: Workspace, tmp_path: Path, row: str, problem: str
) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\n")
    pay(workspace, tmp_path, "p.csv", "P1,C1,,2026-03-03,30,\nP2,C1,,2026-03-04,20,\n")
    pay(workspace, tmp_path, "r.csv", "RET1,C1,,2026-03-09,,P1\n")

    report = pay(workspace, tmp_path, "bad.csv", row + "\n")

    [rejected] = report.rejected
    assert rejected.field == "reverses" and problem in rejected.problem
    assert balances(workspace) == {"R1": 8000}


def test_dunning_resumes_for_the_item_a_reversal_reopens(workspace: Workspace) -> None:
    def records(kind: str, *rows: dict[str, str | None]) -> ImportReport:
        return import_records(workspace, kind, list(enumerate(rows, 2)), NOW, "feed")

    records(
        "customers",
        {"external_id": "B1", "name": "Norte", "kind": "business", "email": "a@norte.example"},
    )
    records(
        "receivables",
        {"external_id": "R1", "customer": "B1", "due_on": "2026-01-01", "amount": "500.00"},
    )
    records(
        "payments",
        {"external_id": "P1", "customer": "B1", "paid_on": "2025-12-30", "amount": "500.00"},
    )
    assert run_day(workspace, date(2026, 1, 8)).planned == 0  # phase 01 is due, but R1 is paid

    reversal = {
        "external_id": "RET1",
        "customer": "B1",
        "paid_on": "2026-01-09",
        "amount": "",
        "reverses": "P1",
    }
    assert records("payments", reversal).inserted == 1
    assert run_day(workspace, date(2026, 1, 9)).planned == 0  # day 01 was covered while paid

    report = run_day(workspace, date(2026, 1, 16))  # 15 days after due: the first claim, 01
    assert (report.planned, report.items) == (1, 1)


def test_a_credit_note_takes_no_balance_from_the_file(workspace: Workspace, tmp_path: Path) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\n")
    text = "external_id,customer,due_on,amount,balance\nCN1,C1,2026-03-02,-10,5\n"
    report = run(workspace, "receivables", write(tmp_path, "cn.csv", text))

    assert [(p.field, p.problem) for p in report.rejected] == [
        ("balance", "a credit note has no balance: Cobro applies it to the debtor's items")
    ]


def test_a_named_mapping_in_cobro_yaml_is_checked_with_its_line(make_workspace: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        make_workspace(
            replace={
                "default_policy:": "imports:\n"
                "  sage:\n"
                "    kind: payments\n"
                "    columns:\n"
                "      due_on: Vencimiento\n"
                "default_policy:"
            }
        )
    [problem] = exc.value.problems
    assert problem.field == "imports.sage.columns"
    assert problem.problem.startswith(
        "'due_on' is not a column of payments (did you mean 'paid_on'?)"
    )
    assert problem.line is not None and problem.line > 1


def test_a_payment_cannot_be_for_a_credit_note(workspace: Workspace, tmp_path: Path) -> None:
    seed(workspace, tmp_path, "R1,C1,,,2026-03-01,100\nCN1,C1,credit_note,,2026-03-02,100\n")
    report = pay(workspace, tmp_path, "p.csv", "P1,C1,CN1,2026-03-03,10,\n")

    assert [(p.field, p.problem) for p in report.rejected] == [
        ("receivable", "CN1 is a credit note: it is owed to the customer")
    ]
