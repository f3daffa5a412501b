"""`cobro import` with what ERPs export: mappings, declared formats, warnings, credit notes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .cli import copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_import.py")

SAMPLES = Path(__file__).parent.parent / "data" / "import"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-import") / "ebro"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    for name in ("customers_es.csv", "receivables_es.csv", "payments_es.csv"):
        shutil.copy(SAMPLES / name, root / name)
    shutil.copy(SAMPLES / "sage_receivables.csv", root / "sage.csv")
    shutil.copy(SAMPLES / "sage_map.yaml", root / "sage_map.yaml")
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "ebro")


def test_an_unusable_email_is_a_warning_and_the_import_succeeds(ws: Path) -> None:
    proc = run_cobro(ws, "import", "customers", "customers_es.csv")

    assert "customers: 2 inserted, 0 updated, 0 unchanged, 0 rejected, 1 warning(s)" in proc.stdout
    assert "warning: customers_es.csv:3: email: 'talleres duero@example' is not an email" in (
        proc.stderr
    )
    shown = run_cobro(ws, "account", "C-2002").stdout
    assert "unusable email on file: 'talleres duero@example'" in shown


def test_a_file_is_imported_through_a_mapping_file_or_a_named_mapping(ws: Path) -> None:
    run_cobro(ws, "import", "customers", "customers_es.csv")
    proc = run_cobro(ws, "import", "receivables", "sage.csv", "--map", "sage_map.yaml", "--json")
    assert (json.loads(proc.stdout)["inserted"], json.loads(proc.stdout)["rejected"]) == (2, [])

    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(
        text
        + "\nimports:\n  sage:\n    kind: receivables\n"
        + "    columns: {external_id: 'Nº Factura', customer: 'Cód. Cliente', "
        + "due_on: 'Fecha Vto.', amount: Importe}\n    decimal: '.'\n",
        encoding="utf-8",
    )
    again = run_cobro(ws, "import", "receivables", "sage.csv", "--map", "sage", "--json")
    assert json.loads(again.stdout)["unchanged"] == 2


def test_a_wrong_mapping_is_refused_with_where_and_what(ws: Path) -> None:
    unknown = run_cobro(ws, "import", "receivables", "sage.csv", "--map", "nope", ok=False)
    assert unknown.returncode == 2
    assert "--map: no mapping 'nope' under imports: in cobro.yaml" in unknown.stderr

    (ws / "bad_map.yaml").write_text("columns:\n  amont: Importe\n", encoding="utf-8")
    bad = run_cobro(ws, "import", "receivables", "sage.csv", "--map", "bad_map.yaml", ok=False)
    assert bad.returncode == 2
    assert "bad_map.yaml:2: columns.amont: 'amont' is not an import column" in bad.stderr
    assert "Traceback" not in bad.stderr

    flag = run_cobro(ws, "import", "receivables", "sage.csv", "--decimal", ";", ok=False)
    assert flag.returncode == 2 and "--decimal: Input should be ',' or '.'" in flag.stderr


def test_a_declared_decimal_separator_reads_thousands_without_ambiguity(ws: Path) -> None:
    run_cobro(ws, "import", "customers", "customers_es.csv")
    (ws / "r.csv").write_text(
        "external_id;customer;due_on;amount\nR1;C-2001;30/03/2026;1.500\n", encoding="utf-8"
    )
    refused = run_cobro(ws, "import", "receivables", "r.csv", ok=False)
    assert refused.returncode == 1
    assert "r.csv:2: amount: '1.500' is ambiguous" in refused.stderr

    run_cobro(ws, "import", "receivables", "r.csv", "--decimal", ",")
    shown = json.loads(run_cobro(ws, "account", "C-2001", "--json").stdout)
    assert [(x["number"], x["balance"]) for x in shown["statement"]] == [("R1", "1500.00")]


def test_the_statement_shows_the_credit_note_and_the_reopened_item(ws: Path) -> None:
    for kind in ("customers", "receivables", "payments"):
        run_cobro(ws, "import", kind, f"{kind}_es.csv")

    ebro = json.loads(run_cobro(ws, "account", "C-2001", "--date", "2026-04-10", "--json").stdout)
    assert [(x["number"], x["kind"], x["balance"]) for x in ebro["statement"]] == [
        ("AB26/0007", "credit_note", "0.00"),
        ("FV26/0101", "invoice", "1000.00"),
        ("FV26/0102", "invoice", "15000.00"),
    ]
    duero = json.loads(run_cobro(ws, "account", "C-2002", "--date", "2026-04-10", "--json").stdout)
    assert [(x["number"], x["balance"]) for x in duero["statement"]] == [("FV26/0103", "860.75")]
    assert "credit note, applied" in run_cobro(ws, "account", "C-2001").stdout
