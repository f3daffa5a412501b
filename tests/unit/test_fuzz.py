"""Property-based fuzzing of everything a user feeds Cobro: import files, cobro.yaml, events.

The invariant: no traceback (only Cobro's own errors, for a file as a whole), every
bad row or field reported with where and what, every good row stored.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cobro.config import parse_config
from cobro.config.loader import load_config
from cobro.errors import CobroError, ConfigError
from cobro.intake.events import EVENT_TYPES, EventError, parse_event, post_event
from cobro.intake.importer import ImportReport, import_file
from cobro.store import tables as t
from cobro.workspace import Workspace

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_counter = itertools.count()

# Any character but lone surrogates (which no UTF-8 file can hold).
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
cell = st.one_of(any_text, st.sampled_from(["", " ", "x" * 300, '"', ",", "\n", "\x00", "C1"]))
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    any_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)


def customers(ws: Workspace, prefix: str) -> dict[str, str]:
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(t.customers.c.external_id, t.customers.c.name).where(
                t.customers.c.external_id.startswith(prefix)
            )
        )
        return {ext: name for ext, name in rows}


def check_report(
    report: ImportReport, rows: dict[int, tuple[str, str] | None], ws: Workspace, prefix: str
) -> None:
    """Every problem names a row of the file; a row without a problem is stored as given."""
    for problem in report.rejected:
        assert problem.line in rows, problem
        assert problem.problem and "\n" not in str(problem), problem
        assert problem.field in ("", "external_id", "name"), problem
    rejected = {p.line for p in report.rejected}
    stored = customers(ws, prefix)
    first_seen: dict[str, int] = {}
    for line, row in rows.items():
        if row is None or line in rejected:
            continue
        ext, name = row
        first_seen.setdefault(ext, line)
        assert first_seen[ext] == line, f"line {line}: a repeated id was not refused"
        assert stored.get(ext) == name, (line, ext, name, stored.get(ext))
    accepted = report.inserted + report.updated + report.unchanged
    assert accepted == len([r for ln, r in rows.items() if r is not None and ln not in rejected])


@FUZZ
@given(st.lists(st.tuples(cell, cell), max_size=12))
def test_fuzzed_csv_imports_report_every_bad_row_and_store_every_good_one(
    workspace: Workspace, tmp_path: Path, cells: list[tuple[str, str]]
) -> None:
    prefix = f"F{next(_counter)}-"
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")  # quotes fields holding \r or \n
    writer.writerow(["external_id", "name"])
    rows: dict[int, tuple[str, str] | None] = {}
    for ext, name in cells:
        line = len(re.findall(r"\r\n|\r|\n", out.getvalue())) + 1
        full = prefix + ext
        writer.writerow([full, name])
        rows[line] = (full.strip(), name.strip())
    path = tmp_path / "fuzz.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    report = import_file(workspace, "customers", path, NOW)
    check_report(report, rows, workspace, prefix)


records = st.lists(
    st.one_of(
        st.fixed_dictionaries({"external_id": any_text, "name": json_value}),
        st.fixed_dictionaries({"external_id": json_value, "name": any_text}),
        json_value,
    ),
    max_size=8,
)


def _expected(record: Any, prefix: str) -> tuple[str, str] | None:
    """The stored (external_id, name) of a record that is plainly valid text, else None."""
    if not isinstance(record, dict):
        return None
    ext, name = record.get("external_id"), record.get("name")
    if isinstance(ext, str) and isinstance(name, str):
        return ext.strip(), name.strip()
    return None


def _prefixed(record: Any, prefix: str) -> Any:
    if isinstance(record, dict) and isinstance(record.get("external_id"), str):
        return {**record, "external_id": prefix + record["external_id"]}
    return record


@FUZZ
@given(records, st.booleans())
def test_fuzzed_json_imports_report_every_bad_record_and_store_every_good_one(
    workspace: Workspace, tmp_path: Path, items: list[Any], lines: bool
) -> None:
    prefix = f"J{next(_counter)}-"
    items = [_prefixed(r, prefix) for r in items]
    if lines:
        path = tmp_path / "fuzz.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    else:
        path = tmp_path / "fuzz.json"
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    try:
        report = import_file(workspace, "customers", path, NOW)
    except CobroError as exc:  # a whole file refused: only for columns it does not know
        assert "unknown column" in str(exc) or "missing required column" in str(exc), exc
        return
    # What the importer may refuse is its business; what it keeps must be as given.
    rejected = {p.line for p in report.rejected}
    stored = customers(workspace, prefix)
    seen: set[str] = set()
    for number, record in enumerate(items, 1):
        expected = _expected(record, prefix)
        if number in rejected or expected is None:
            continue
        if expected[0] in seen:
            raise AssertionError(f"record {number}: a repeated id was not refused")
        seen.add(expected[0])
        assert stored.get(expected[0]) == expected[1], (number, record)
    for problem in report.rejected:
        assert 1 <= problem.line <= len(items) and "\n" not in str(problem), problem


@FUZZ
@given(st.lists(st.text(max_size=60), max_size=6))
def test_fuzzed_jsonl_garbage_lines_are_refused_alone(
    workspace: Workspace, tmp_path: Path, garbage: list[str]
) -> None:
    prefix = f"G{next(_counter)}-"
    lines: list[str] = []
    good: dict[int, str] = {}
    for i, text in enumerate(garbage):
        good[len(lines) + 1] = f"{prefix}{i}"
        lines.append(json.dumps({"external_id": f"{prefix}{i}", "name": "Good"}))
        lines.append(text.replace("\n", " ").replace("\r", " "))
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        report = import_file(workspace, "customers", path, NOW)
    except CobroError as exc:  # a garbage line that is an object with unknown keys
        assert "unknown column" in str(exc), exc
        return
    assert set(customers(workspace, prefix)) >= set(good.values())
    assert not {p.line for p in report.rejected} & set(good)


def _one_line_problems(exc: ConfigError) -> None:
    assert exc.problems
    for problem in exc.problems:
        text = str(problem)
        assert "\n" not in text and text.startswith("cobro.yaml"), text


@FUZZ
@given(st.integers(min_value=0, max_value=STARTER.count("\n")), any_text)
def test_fuzzed_cobro_yaml_is_loaded_or_refused_in_one_line_per_problem(
    line: int, inserted: str
) -> None:
    lines = STARTER.split("\n")
    lines.insert(line, inserted)
    try:
        parse_config("\n".join(lines), "cobro.yaml")
    except ConfigError as exc:
        _one_line_problems(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzzed_cobro_yaml_bytes_are_loaded_or_refused_in_one_line(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "cobro.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            assert "\n" not in str(problem) and str(problem).startswith(str(path))


payload = st.dictionaries(
    st.sampled_from(["id", "customer", "subscription", "charge", "amount", "plan", "price"])
    | any_text,
    json_value,
    max_size=6,
)


@FUZZ
@given(st.sampled_from(sorted(EVENT_TYPES)), payload)
def test_fuzzed_event_payloads_are_refused_field_by_field_or_recorded(
    workspace: Workspace, event_type: str, data: dict[str, Any]
) -> None:
    try:
        parse_event(event_type, data)
    except EventError as exc:
        assert exc.problems and all("\n" not in p and ": " in p for p in exc.problems)
        return
    try:
        post_event(workspace, event_type, data, NOW)
    except EventError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
