"""Importing customers, contacts, receivables and payments from CSV and JSON files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, event, select

from cobro.errors import ImportError_
from cobro.intake import importer
from cobro.intake.importer import KINDS, ImportReport, RowProblem, import_file, import_records
from cobro.store import tables as t
from cobro.workspace import Workspace

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SAMPLES = Path(__file__).parent.parent / "data" / "import"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def run(ws: Workspace, kind: str, path: Path, now: datetime = NOW) -> ImportReport:
    return import_file(ws, kind, path, now)


def by_ext(ws: Workspace, table: Table) -> dict[str, dict[str, Any]]:
    with ws.engine.connect() as conn:
        return {
            r.external_id: dict(r._mapping)
            for r in conn.execute(select(table).where(table.c.company_id == ws.company_id))
        }


def balances(ws: Workspace) -> dict[str, int]:
    return {ext: r["balance_minor"] for ext, r in by_ext(ws, t.receivables).items()}


def allocations(ws: Workspace) -> list[tuple[str, str, int]]:
    """(payment, receivable, minor) for every allocation, in the order they were made."""
    a, p, r = t.allocations, t.payments, t.receivables
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(p.c.external_id, r.c.external_id, a.c.amount_minor)
            .join(p, p.c.id == a.c.payment_id)
            .join(r, r.c.id == a.c.receivable_id)
            .order_by(a.c.id)
        )
        return [(pe, re, int(m)) for pe, re, m in rows]


def seed_customers(ws: Workspace, tmp_path: Path, *ext_ids: str) -> None:
    lines = "".join(f"{e},Customer {e}\n" for e in ext_ids)
    report = run(
        ws, "customers", write(tmp_path, "seed_customers.csv", "external_id,name\n" + lines)
    )
    assert report.inserted == len(ext_ids) and not report.rejected


def seed_receivables(ws: Workspace, tmp_path: Path, rows: str) -> None:
    text = "external_id,customer,due_on,amount,currency\n" + rows
    report = run(ws, "receivables", write(tmp_path, "seed_receivables.csv", text))
    assert not report.rejected, report.rejected


# --------------------------------------------------------------------------- customers


def test_kinds_are_the_four_record_types() -> None:
    assert KINDS == ("customers", "contacts", "receivables", "payments")


def test_customers_are_stored_with_normalised_email_tags_and_attributes(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "external_id,name,kind,group,language,email,phone,tags,attr_region,attr_Segment\n"
        "C1,  Acme S.L. ,Business,wholesale,ES, Billing@Acme.EXAMPLE ,"
        "  +34 600 111 222 ,VIP|North,N,a\n",
    )
    report = run(workspace, "customers", path)

    assert (report.inserted, report.updated, report.unchanged, report.rejected) == (1, 0, 0, [])
    row = by_ext(workspace, t.customers)["C1"]
    assert row["name"] == "Acme S.L."
    assert row["kind"] == "business"
    assert row["group_name"] == "wholesale"
    assert row["language"] == "es"
    assert row["email"] == "Billing@acme.example"
    assert row["phone"] == "+34600111222"
    assert row["tags"] == "vip,north"
    assert row["attributes"] == {"region": "N", "Segment": "a"}
    assert row["blocked"] is False
    assert row["created_at"] == NOW and row["updated_at"] == NOW


def test_customer_gets_policy_from_assignment_rules(workspace: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "external_id,name,kind,policy\n"
        "B1,Business Ltd,business,\n"
        "P1,Pat Person,person,\n"
        "D1,Default Kind,,\n"
        "X1,Explicit Business,business,consumer\n",
    )
    run(workspace, "customers", path)

    rows = by_ext(workspace, t.customers)
    assert rows["B1"]["effective_policy"] == "b2b"
    assert rows["P1"]["effective_policy"] == "consumer"
    assert rows["D1"]["kind"] == "person"
    assert rows["D1"]["effective_policy"] == "consumer"
    assert rows["X1"]["policy"] == "consumer"
    assert rows["X1"]["effective_policy"] == "consumer"


def test_unknown_policy_is_rejected_naming_the_configured_ones(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path, "customers.csv", "external_id,name,policy\nC1,Acme,gold\n")
    report = run(workspace, "customers", path)

    assert report.inserted == 0
    assert [(p.line, p.field) for p in report.rejected] == [(2, "policy")]
    assert "'gold'" in report.rejected[0].problem
    assert "b2b" in report.rejected[0].problem and "consumer" in report.rejected[0].problem


def test_a_debtor_s_time_zone_is_stored_and_an_unknown_one_rejects_its_row(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "external_id,name,timezone\nC1,Bogotá,America/Bogota\nC2,Mars,Mars/Olympus\nC3,Here,\n",
    )
    report = run(workspace, "customers", path)

    assert [str(p) for p in report.rejected] == [
        "customers.csv:3: timezone: 'Mars/Olympus' is not a time zone "
        "(e.g. Europe/Madrid, America/Bogota)"
    ]
    stored = by_ext(workspace, t.customers)
    assert {k: v["timezone"] for k, v in stored.items()} == {"C1": "America/Bogota", "C3": None}


def test_bad_row_is_reported_with_its_line_and_good_rows_are_kept(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "external_id,name,email\n"
        "C1,Good One,one@example.com\n"
        "C2,,two@example.com\n"
        "\n"
        "C3,,three@example.com\n"
        "C4,Good Four,four@example.com\n",
    )
    report = run(workspace, "customers", path)

    assert report.inserted == 2
    assert sorted(by_ext(workspace, t.customers)) == ["C1", "C4"]
    assert [(p.line, p.field) for p in report.rejected] == [(3, "name"), (5, "name")]
    assert str(report.rejected[1]) == "customers.csv:5: name: is required"
    assert report.rejected_rows == 2


def test_reimport_updates_by_external_id(workspace: Workspace, tmp_path: Path) -> None:
    first = write(
        tmp_path, "a.csv", "external_id,name,kind,email\nC1,Acme,person,a@example.com\nC2,Beta,,\n"
    )
    run(workspace, "customers", first)
    id_before = by_ext(workspace, t.customers)["C1"]["id"]

    second = write(
        tmp_path,
        "b.csv",
        "external_id,name,kind,email\nC1,Acme Group,business,a@example.com\nC2,Beta,,\n",
    )
    report = run(workspace, "customers", second, now=LATER)

    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 1)
    rows = by_ext(workspace, t.customers)
    assert len(rows) == 2
    assert rows["C1"]["id"] == id_before
    assert rows["C1"]["name"] == "Acme Group"
    assert rows["C1"]["effective_policy"] == "b2b"
    assert rows["C1"]["created_at"] == NOW and rows["C1"]["updated_at"] == LATER
    assert rows["C2"]["updated_at"] == NOW


def test_column_absent_from_the_file_keeps_the_stored_value(
    workspace: Workspace, tmp_path: Path
) -> None:
    run(
        workspace,
        "customers",
        write(
            tmp_path, "full.csv", "external_id,name,kind,tags,attr_region\nC1,Acme,business,vip,N\n"
        ),
    )
    report = run(
        workspace,
        "customers",
        write(tmp_path, "mail.csv", "external_id,name,email\nC1,Acme,new@example.com\n"),
    )

    assert report.updated == 1
    row = by_ext(workspace, t.customers)["C1"]
    assert row["email"] == "new@example.com"
    assert (row["kind"], row["tags"], row["attributes"]) == ("business", "vip", {"region": "N"})
    assert row["effective_policy"] == "b2b"


def test_empty_cell_clears_the_value(workspace: Workspace, tmp_path: Path) -> None:
    run(
        workspace,
        "customers",
        write(tmp_path, "a.csv", "external_id,name,tags,attr_region\nC1,Acme,vip,N\n"),
    )
    run(
        workspace,
        "customers",
        write(tmp_path, "b.csv", "external_id,name,tags,attr_region\nC1,Acme,,\n"),
    )

    row = by_ext(workspace, t.customers)["C1"]
    assert row["tags"] == ""
    assert row["attributes"] == {}


def test_semicolon_delimited_csv_with_bom_and_crlf_is_read(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "\ufeffexternal_id;name;tags\r\nC1;Gómez, Hijos y Cía;a,b\r\nC2;Lucía;\r\n".encode()
    )
    report = run(workspace, "customers", path)

    assert report.inserted == 2 and not report.rejected
    rows = by_ext(workspace, t.customers)
    assert rows["C1"]["name"] == "Gómez, Hijos y Cía"
    assert rows["C1"]["tags"] == "a,b"
    assert rows["C2"]["name"] == "Lucía"


def test_line_numbers_are_physical_lines_even_with_quoted_newlines(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        'external_id,name,kind\nC1,"Two\nLines",person\nC2,Bad,alien\n',
    )
    report = run(workspace, "customers", path)

    assert report.inserted == 1
    assert [(p.line, p.field) for p in report.rejected] == [(4, "kind")]


def test_row_with_a_wrong_number_of_fields_is_rejected(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path, "customers.csv", "external_id,name\nC1,Acme,extra\nC2\nC3,Ok,\n")
    report = run(workspace, "customers", path)

    assert sorted(by_ext(workspace, t.customers)) == ["C3"]
    assert [p.line for p in report.rejected] == [2, 3]
    assert "3 fields but the header has 2" in report.rejected[0].problem


def test_external_id_repeated_in_one_file_is_rejected(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", "external_id,name\nC1,First\nC1,Second\n")
    report = run(workspace, "customers", path)

    assert by_ext(workspace, t.customers)["C1"]["name"] == "First"
    assert [(p.line, p.field) for p in report.rejected] == [(3, "external_id")]
    assert "first on line 2" in report.rejected[0].problem


# --------------------------------------------------------------------------- whole-file errors


def test_unknown_column_refuses_the_whole_file(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", "external_id,name,emial\nC1,Acme,a@example.com\n")

    with pytest.raises(ImportError_) as err:
        run(workspace, "customers", path)

    assert "customers.csv" in str(err.value)
    assert "'emial'" in str(err.value) and "did you mean 'email'" in str(err.value)
    assert by_ext(workspace, t.customers) == {}


def test_missing_required_column_refuses_the_whole_file(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path, "receivables.csv", "external_id,customer,amount\nR1,C1,10.00\n")

    with pytest.raises(ImportError_, match=r"receivables\.csv.*missing required column 'due_on'"):
        run(workspace, "receivables", path)


def test_unknown_extension_refuses_the_file(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.xlsx", "external_id,name\nC1,Acme\n")

    with pytest.raises(ImportError_, match=r"customers\.xlsx.*unknown file format"):
        run(workspace, "customers", path)


def test_file_that_is_not_utf8_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.csv", "external_id,name\nC1,Gómez\n", encoding="latin-1")

    with pytest.raises(ImportError_, match=r"customers\.csv:2: .*not UTF-8"):
        run(workspace, "customers", path)
    assert by_ext(workspace, t.customers) == {}


def test_missing_file_is_refused_with_its_name(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match=r"nowhere\.csv: cannot be read"):
        run(workspace, "customers", tmp_path / "nowhere.csv")


def test_empty_csv_is_refused_because_the_header_is_required(
    workspace: Workspace, tmp_path: Path
) -> None:
    with pytest.raises(ImportError_, match="header row is required"):
        run(workspace, "customers", write(tmp_path, "empty.csv", "\n\n"))


def test_json_that_is_not_an_array_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "customers.json", '{"external_id": "C1", "name": "Acme"}')

    with pytest.raises(ImportError_, match=r"customers\.json: .*array of objects"):
        run(workspace, "customers", path)


# --------------------------------------------------------------------------- JSON


def test_json_and_csv_give_the_same_result(make_workspace: Any, tmp_path: Path) -> None:
    ws_csv, ws_json, ws_jsonl = (make_workspace(n) for n in ("csv", "json", "jsonl"))
    customers = [
        {"external_id": "C1", "name": "Acme", "kind": "business", "tags": ["VIP", "north"]},
        {"external_id": "C2", "name": "Bea", "email": "bea@example.com", "attr_tier": "2"},
    ]
    receivables = [
        {"external_id": "R1", "customer": "C1", "due_on": "2026-01-31", "amount": 1234.5},
        {"external_id": "R2", "customer": "C2", "due_on": "2026-02-28", "amount": "0.10"},
    ]
    csv_customers = write(
        tmp_path,
        "customers.csv",
        "external_id,name,kind,tags,email,attr_tier\n"
        "C1,Acme,business,VIP|north,,\nC2,Bea,,,bea@example.com,2\n",
    )
    csv_receivables = write(
        tmp_path,
        "receivables.csv",
        "external_id,customer,due_on,amount\nR1,C1,2026-01-31,1234.5\nR2,C2,2026-02-28,0.10\n",
    )
    run(ws_csv, "customers", csv_customers)
    run(ws_csv, "receivables", csv_receivables)
    run(ws_json, "customers", write(tmp_path, "customers.json", json.dumps(customers)))
    run(ws_json, "receivables", write(tmp_path, "receivables.json", json.dumps(receivables)))
    run(
        ws_jsonl,
        "customers",
        write(tmp_path, "customers.jsonl", "\n".join(json.dumps(c) for c in customers)),
    )
    run(
        ws_jsonl,
        "receivables",
        write(tmp_path, "receivables.jsonl", "\n".join(json.dumps(r) for r in receivables)),
    )

    def snapshot(ws: Workspace) -> dict[str, Any]:
        skip = {"id", "company_id", "customer_id"}
        return {
            name: {e: {k: v for k, v in r.items() if k not in skip} for e, r in rows.items()}
            for name, rows in (
                ("customers", by_ext(ws, t.customers)),
                ("receivables", by_ext(ws, t.receivables)),
            )
        }

    expected = snapshot(ws_csv)
    assert expected["receivables"]["R1"]["amount_minor"] == 123450
    assert expected["customers"]["C1"]["tags"] == "vip,north"
    assert snapshot(ws_json) == expected
    assert snapshot(ws_jsonl) == expected


def test_json_array_problems_are_numbered_by_record(workspace: Workspace, tmp_path: Path) -> None:
    records = [
        {"external_id": "C1", "name": "Acme"},
        "not an object",
        {"external_id": "C3", "name": {"nested": True}},
    ]
    report = run(workspace, "customers", write(tmp_path, "c.json", json.dumps(records, indent=2)))

    assert report.inserted == 1
    assert [(p.line, p.field) for p in report.rejected] == [(2, ""), (3, "name")]
    assert str(report.rejected[0]) == "c.json:2: the record is not a JSON object"


def test_jsonl_bad_line_is_rejected_and_the_others_are_kept(
    workspace: Workspace, tmp_path: Path
) -> None:
    text = '{"external_id": "C1", "name": "Acme"}\n\n{broken\n{"external_id": "C2", "name": "B"}\n'
    report = run(workspace, "customers", write(tmp_path, "c.jsonl", text))

    assert sorted(by_ext(workspace, t.customers)) == ["C1", "C2"]
    assert [p.line for p in report.rejected] == [3]
    assert "not valid JSON" in report.rejected[0].problem


def test_import_records_checks_columns_and_imports_rows(workspace: Workspace) -> None:
    with pytest.raises(ImportError_, match="unknown column 'colour'"):
        import_records(
            workspace, "customers", [(1, {"external_id": "C1", "colour": "red"})], NOW, "api"
        )
    assert by_ext(workspace, t.customers) == {}

    report = import_records(
        workspace,
        "customers",
        [(1, {"external_id": "C1", "name": "Acme"}), (2, {"external_id": "C2", "name": None})],
        NOW,
        "api",
    )

    assert report.source == "api" and report.inserted == 1
    assert [str(p) for p in report.rejected] == ["api:2: name: is required"]


# --------------------------------------------------------------------------- contacts


def test_contact_roles_are_stored_between_commas(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "contacts.csv",
        "external_id,customer,name,email,phone,roles\n"
        "K1,C1,Ana,ana@example.com,,Sales_Rep|billing\n"
        "K2,C1,Bo,,+34 600 111 222,\n",
    )
    report = run(workspace, "contacts", path)

    assert report.inserted == 2
    rows = by_ext(workspace, t.contacts)
    assert rows["K1"]["roles"] == ",billing,sales_rep,"
    assert rows["K2"]["roles"] == ""
    with workspace.engine.connect() as conn:
        billing = conn.execute(
            select(t.contacts.c.external_id).where(t.contacts.c.roles.like("%,billing,%"))
        ).scalars()
        assert list(billing) == ["K1"]


def test_contact_needs_a_known_customer_an_address_and_known_roles(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "contacts.csv",
        "external_id,customer,name,email,phone,roles\n"
        "K1,C9,Ana,ana@example.com,,\n"
        "K2,C1,Bo,,,\n"
        "K3,C1,Cy,cy@example.com,,boss\n",
    )
    report = run(workspace, "contacts", path)

    assert report.inserted == 0
    assert [(p.line, p.field) for p in report.rejected] == [
        (2, "customer"),
        (3, "email"),
        (4, "roles"),
    ]
    assert "no customer with external_id 'C9'" in report.rejected[0].problem
    assert report.rejected[1].problem == "a contact needs an email or a phone"


# --------------------------------------------------------------------------- receivables


def test_receivable_fields_are_stored_in_minor_units(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "receivables.csv",
        "external_id,customer,kind,number,invoice,issued_on,due_on,currency,amount,description\n"
        "R1,C1,,,,,2026-02-01,,1210.00,Goods\n"
        "R2,C1,instalment,F-2/1,F-2,2026-01-01,2026-02-15,jpy,5000,First half\n",
    )
    report = run(workspace, "receivables", path)

    assert report.inserted == 2 and not report.rejected
    rows = by_ext(workspace, t.receivables)
    assert rows["R1"]["kind"] == "invoice"
    assert rows["R1"]["number"] == "R1"
    assert rows["R1"]["currency"] == "EUR"
    assert (rows["R1"]["amount_minor"], rows["R1"]["balance_minor"]) == (121000, 121000)
    assert rows["R1"]["due_on"] == date(2026, 2, 1)
    assert rows["R2"]["kind"] == "instalment"
    assert (rows["R2"]["number"], rows["R2"]["invoice_number"]) == ("F-2/1", "F-2")
    assert (rows["R2"]["currency"], rows["R2"]["amount_minor"]) == ("JPY", 5000)
    assert rows["R2"]["issued_on"] == date(2026, 1, 1)


def test_impossible_date_is_reported_as_not_a_date(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "receivables.csv",
        "external_id,customer,due_on,amount\nR1,C1,2026-02-30,10\nR2,C1,31/02/2026,10\n",
    )
    report = run(workspace, "receivables", path)

    assert [str(p) for p in report.rejected] == [
        "receivables.csv:2: due_on: '2026-02-30' is not a date (YYYY-MM-DD)",
        "receivables.csv:3: due_on: '31/02/2026' is not a date "
        "(YYYY-MM-DD, or 30/03/2026 as written in es_ES)",
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "problem"),
    [
        ('"1,5,0"', "EUR", "is not an amount"),
        ("0", "EUR", "must not be 0"),
        ("10.0051", "EUR", "more decimal places than EUR allows (2)"),
        ('"10,005"', "EUR", "more decimal places than EUR allows (2)"),
        ("10.5", "JPY", "more decimal places than JPY allows (0)"),
        ("1e3", "EUR", "is not an amount"),
        ("10", "EURO", "is not a currency code"),
        ("10", "XYZ", "is not a currency code"),
        ("9999999999999999", "EUR", "is too large"),
    ],
)
def test_invalid_amount_or_currency_is_rejected(
    workspace: Workspace, tmp_path: Path, amount: str, currency: str, problem: str
) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "receivables.csv",
        f"external_id,customer,due_on,amount,currency\nR1,C1,2026-02-01,{amount},{currency}\n",
    )
    report = run(workspace, "receivables", path)

    assert report.inserted == 0
    assert len(report.rejected) == 1 and problem in report.rejected[0].problem


def test_receivable_for_an_unknown_customer_is_rejected(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path, "r.csv", "external_id,customer,due_on,amount\nR1,NOPE,2026-02-01,10\n")
    report = run(workspace, "receivables", path)

    assert report.inserted == 0
    assert [(p.line, p.field) for p in report.rejected] == [(2, "customer")]


def test_balance_given_by_the_source_is_kept_and_may_not_exceed_the_amount(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "r.csv",
        "external_id,customer,due_on,amount,balance\n"
        "R1,C1,2026-02-01,100.00,40.00\n"
        "R2,C1,2026-02-01,100.00,100.01\n"
        "R3,C1,2026-02-01,100.00,0\n",
    )
    report = run(workspace, "receivables", path)

    assert balances(workspace) == {"R1": 4000, "R3": 0}
    assert [(p.line, p.field) for p in report.rejected] == [(3, "balance")]


def test_invoice_reference_is_only_for_instalments(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    path = write(
        tmp_path,
        "r.csv",
        "external_id,customer,kind,invoice,due_on,amount\nR1,C1,invoice,F-1,2026-02-01,10\n",
    )
    report = run(workspace, "receivables", path)

    assert [(p.line, p.field) for p in report.rejected] == [(2, "invoice")]


def test_amounts_are_exact_in_minor_units(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-02-01,0.30,EUR\n")
    path = write(
        tmp_path,
        "p.csv",
        "external_id,customer,paid_on,amount\nP1,C1,2026-02-02,0.10\nP2,C1,2026-02-03,0.20\n",
    )
    run(workspace, "payments", path)

    assert balances(workspace) == {"R1": 0}
    assert allocations(workspace) == [("P1", "R1", 10), ("P2", "R1", 20)]
    assert {e: r["unallocated_minor"] for e, r in by_ext(workspace, t.payments).items()} == {
        "P1": 0,
        "P2": 0,
    }


def test_reimported_receivable_keeps_its_payments_subtracted(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-02-01,100.00,EUR\n")
    run(
        workspace,
        "payments",
        write(tmp_path, "p.csv", "external_id,customer,paid_on,amount\nP1,C1,2026-02-02,30.00\n"),
    )

    path = write(
        tmp_path, "r2.csv", "external_id,customer,due_on,amount\nR1,C1,2026-02-01,120.00\n"
    )
    report = run(workspace, "receivables", path)

    assert report.updated == 1
    assert balances(workspace) == {"R1": 9000}


def test_currency_of_a_paid_receivable_cannot_change(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-02-01,100.00,EUR\nR2,C1,2026-03-01,5,EUR\n")
    run(
        workspace,
        "payments",
        write(tmp_path, "p.csv", "external_id,customer,paid_on,amount\nP1,C1,2026-02-02,10.00\n"),
    )

    path = write(
        tmp_path,
        "r2.csv",
        "external_id,customer,due_on,amount,currency\n"
        "R1,C1,2026-02-01,100.00,USD\n"
        "R2,C1,2026-03-01,5,USD\n",
    )
    report = run(workspace, "receivables", path)

    assert [(p.line, p.field) for p in report.rejected] == [(2, "currency")]
    rows = by_ext(workspace, t.receivables)
    assert (rows["R1"]["currency"], rows["R2"]["currency"]) == ("EUR", "USD")


# --------------------------------------------------------------------------- payments


def test_partial_payment_lowers_balance(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-02-01,100.00,EUR\n")
    path = write(
        tmp_path,
        "p.csv",
        "external_id,customer,receivable,paid_on,amount\nP1,C1,R1,2026-02-10,40.00\n",
    )
    report = run(workspace, "payments", path)

    assert report.inserted == 1
    assert balances(workspace) == {"R1": 6000}
    payment = by_ext(workspace, t.payments)["P1"]
    assert (payment["amount_minor"], payment["unallocated_minor"]) == (4000, 0)
    assert payment["paid_on"] == date(2026, 2, 10)
    assert allocations(workspace) == [("P1", "R1", 4000)]


def test_payment_without_receivable_is_allocated_oldest_first(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed_customers(workspace, tmp_path, "C1", "C2")
    seed_receivables(
        workspace,
        tmp_path,
        "LATE,C1,2026-03-01,50.00,EUR\n"
        "OLD,C1,2026-01-01,30.00,EUR\n"
        "MID,C1,2026-02-01,40.00,EUR\n"
        "USD,C1,2025-12-01,10.00,USD\n"
        "OTHER,C2,2025-12-01,10.00,EUR\n",
    )
    path = write(tmp_path, "p.csv", "external_id,customer,paid_on,amount\nP1,C1,2026-02-10,50.00\n")
    run(workspace, "payments", path)

    assert allocations(workspace) == [("P1", "OLD", 3000), ("P1", "MID", 2000)]
    assert balances(workspace) == {"LATE": 5000, "OLD": 0, "MID": 2000, "USD": 1000, "OTHER": 1000}


def test_payment_goes_to_its_receivable_first_then_oldest_first(
    workspace: Workspace, tmp_path: Path
) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(
        workspace, tmp_path, "OLD,C1,2026-01-01,30.00,EUR\nNEW,C1,2026-03-01,20.00,EUR\n"
    )
    path = write(
        tmp_path,
        "p.csv",
        "external_id,customer,receivable,paid_on,amount\nP1,C1,NEW,2026-02-10,25.00\n",
    )
    run(workspace, "payments", path)

    assert allocations(workspace) == [("P1", "NEW", 2000), ("P1", "OLD", 500)]
    assert balances(workspace) == {"OLD": 2500, "NEW": 0}


def test_overpayment_is_kept_as_unallocated(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-01-01,30.00,EUR\n")
    path = write(tmp_path, "p.csv", "external_id,customer,paid_on,amount\nP1,C1,2026-02-10,45.50\n")
    run(workspace, "payments", path)

    assert balances(workspace) == {"R1": 0}
    assert by_ext(workspace, t.payments)["P1"]["unallocated_minor"] == 1550


def test_payments_in_one_file_are_allocated_in_file_order(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 2)
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(
        workspace, tmp_path, "R1,C1,2026-01-01,10.00,EUR\nR2,C1,2026-02-01,10.00,EUR\n"
    )
    path = write(
        tmp_path,
        "p.csv",
        "external_id,customer,paid_on,amount\n"
        "P1,C1,2026-02-10,6.00\nP2,C1,2026-02-11,6.00\nP3,C1,2026-02-12,6.00\nP4,C1,2026-02-13,6.00\n",
    )
    report = run(workspace, "payments", path)

    assert report.inserted == 4
    assert allocations(workspace) == [
        ("P1", "R1", 600),
        ("P2", "R1", 400),
        ("P2", "R2", 200),
        ("P3", "R2", 600),
        ("P4", "R2", 200),
    ]
    assert by_ext(workspace, t.payments)["P4"]["unallocated_minor"] == 400


def test_identical_payment_reimport_is_unchanged(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-01-01,100.00,EUR\n")
    path = write(
        tmp_path,
        "p.csv",
        "external_id,customer,receivable,paid_on,amount\nP1,C1,R1,2026-02-10,40.00\n",
    )
    run(workspace, "payments", path)
    report = run(workspace, "payments", path)

    assert (report.inserted, report.unchanged, report.rejected) == (0, 1, [])
    assert balances(workspace) == {"R1": 6000}
    assert len(allocations(workspace)) == 1


def test_payment_changed_on_reimport_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    seed_customers(workspace, tmp_path, "C1")
    seed_receivables(workspace, tmp_path, "R1,C1,2026-01-01,100.00,EUR\n")
    header = "external_id,customer,paid_on,amount\n"
    run(workspace, "payments", write(tmp_path, "p1.csv", header + "P1,C1,2026-02-10,40.00\n"))

    report = run(
        workspace, "payments", write(tmp_path, "p2.csv", header + "P1,C1,2026-02-10,45.00\n")
    )

    assert report.inserted == 0 and report.unchanged == 0
    assert [(p.line, p.field) for p in report.rejected] == [(2, "amount")]
    assert "payment P1 was already recorded with a different amount" in report.rejected[0].problem
    assert by_ext(workspace, t.payments)["P1"]["amount_minor"] == 4000
    assert balances(workspace) == {"R1": 6000}


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ("P1,C9,,2026-02-10,5", "customer", "no customer with external_id 'C9'"),
        ("P1,C1,NOPE,2026-02-10,5", "receivable", "no receivable with external_id 'NOPE'"),
        ("P1,C1,R2,2026-02-10,5", "receivable", "R2 belongs to customer C2, not C1"),
        ("P1,C1,RUSD,2026-02-10,5", "receivable", "RUSD is in USD but the payment is in EUR"),
        ("P1,C1,,2026-13-01,5", "paid_on", "'2026-13-01' is not a date (YYYY-MM-DD)"),
    ],
)
def test_payment_that_cannot_be_placed_is_rejected(
    workspace: Workspace, tmp_path: Path, row: str, field: str, problem: str
) -> None:
    seed_customers(workspace, tmp_path, "C1", "C2")
    seed_receivables(
        workspace, tmp_path, "R2,C2,2026-01-01,10.00,EUR\nRUSD,C1,2026-01-01,10.00,USD\n"
    )
    path = write(tmp_path, "p.csv", "external_id,customer,receivable,paid_on,amount\n" + row + "\n")
    report = run(workspace, "payments", path)

    assert report.inserted == 0
    assert [p.field for p in report.rejected] == [field]
    assert problem in report.rejected[0].problem
    assert by_ext(workspace, t.payments) == {}


# --------------------------------------------------------------------------- batches and reports


def test_small_batches_still_catch_repeats_and_unchanged_rows(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 3)
    lines = "".join(f"C{i},Customer {i}\n" for i in range(10))
    path = write(tmp_path, "c.csv", "external_id,name\n" + lines + "C4,Again\n")
    report = run(workspace, "customers", path)
    again = run(workspace, "customers", path)

    assert report.inserted == 10
    assert [(p.line, p.field) for p in report.rejected] == [(12, "external_id")]
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10)


@pytest.mark.parametrize("kind", KINDS)
def test_number_of_queries_does_not_grow_with_the_number_of_rows(
    make_workspace: Any, tmp_path: Path, kind: str
) -> None:
    def statements_for(rows: int) -> int:
        ws = make_workspace(f"{kind}{rows}")
        customers = "".join(f"C{i},Customer {i}\n" for i in range(rows))
        run(ws, "customers", write(tmp_path, f"c{rows}.csv", "external_id,name\n" + customers))
        receivables = "".join(f"R{i},C{i},2026-01-01,10.00\n" for i in range(rows))
        header = "external_id,customer,due_on,amount\n"
        run(ws, "receivables", write(tmp_path, f"r{rows}.csv", header + receivables))
        body = {
            "customers": ("external_id,name\n", "C{i},Renamed {i}\n"),
            "contacts": ("external_id,customer,name,email\n", "K{i},C{i},N,k{i}@example.com\n"),
            "receivables": (header, "R{i},C{i},2026-01-01,12.00\n"),
            "payments": ("external_id,customer,paid_on,amount\n", "P{i},C{i},2026-02-01,4.00\n"),
        }[kind]
        path = write(
            tmp_path,
            f"{kind}{rows}.csv",
            body[0] + "".join(body[1].format(i=i) for i in range(rows)),
        )
        count = 0

        def counter(*_: object) -> None:
            nonlocal count
            count += 1

        event.listen(ws.engine, "before_cursor_execute", counter)
        report = run(ws, kind, path)
        event.remove(ws.engine, "before_cursor_execute", counter)
        assert report.inserted + report.updated == rows and not report.rejected
        return count

    assert statements_for(5) == statements_for(300)


def test_report_to_json_lists_counts_and_problems(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "external_id,name,kind\nC1,Acme,\nC2,,alien\n")
    report = run(workspace, "customers", path)

    assert report.to_json() == {
        "kind": "customers",
        "source": "c.csv",
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected_rows": 1,
        "rejected": [
            {"line": 3, "field": "name", "problem": "is required"},
            {"line": 3, "field": "kind", "problem": "'alien' is not one of: person, business"},
        ],
        "warnings": [],
    }
    assert str(RowProblem(7, "amount", "is required", "p.csv")) == "p.csv:7: amount: is required"


def test_sample_files_import_cleanly_in_order(workspace: Workspace) -> None:
    reports = [run(workspace, kind, SAMPLES / f"{kind}.csv") for kind in KINDS]

    assert [r.rejected for r in reports] == [[], [], [], []]
    assert [r.inserted for r in reports] == [3, 3, 4, 2]
    customers = by_ext(workspace, t.customers)
    assert customers["C-1001"]["effective_policy"] == "b2b"
    assert customers["C-1003"]["effective_policy"] == "consumer"
    assert balances(workspace) == {
        "INV-2026-0001": 71000,
        "INV-2026-0002-1": 0,
        "INV-2026-0002-2": 5000,
        "INV-2026-0003": 1500000,
    }


def test_internationalised_addresses_are_kept_as_punycode_or_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "c.csv",
        "external_id,name,email\nC1,Uno,user@bücher.de\nC2,Dos,josé@example.com\n",
    )
    report = run(workspace, "customers", path)
    assert (report.inserted, report.rejected) == (2, [])
    [warning] = report.warnings
    assert (warning.line, warning.field) == (3, "email")
    rows = by_ext(workspace, t.customers)
    assert rows["C1"]["email"] == "user@xn--bcher-kva.de"
    assert (rows["C2"]["email"], rows["C2"]["invalid_email"]) == (None, "josé@example.com")


def test_phone_numbers_are_stored_in_e164_and_national_ones_read_in_the_company_country(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "external_id,name,phone\n"
        "C1,Ana,612 34 56 78\n"  # national: the starter company is es_ES
        "C2,Bob,+44 20 7946 0958\n"
        "C3,Cai,12345\n"
        "C4,Dee,call me\n",
    )
    report = run(workspace, "customers", path)
    assert (report.inserted, report.rejected) == (4, [])
    rows = by_ext(workspace, t.customers)
    assert (rows["C1"]["phone"], rows["C2"]["phone"]) == ("+34612345678", "+442079460958")
    assert [(p.line, p.field) for p in report.warnings] == [(4, "phone"), (5, "phone")]
    assert "'12345' is not a valid phone number (national numbers are read as ES)" in str(
        report.warnings[0]
    )
    assert (rows["C3"]["phone"], rows["C3"]["invalid_phone"]) == (None, "12345")
    assert (rows["C4"]["phone"], rows["C4"]["invalid_phone"]) == (None, "call me")
