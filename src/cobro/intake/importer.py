"""Import customers, contacts, receivables and payments from CSV or JSON files.

Rows are upserted by the company's own ``external_id``. A file that cannot be
read at all (unknown format, not UTF-8, missing or unknown columns) raises
``ImportError_`` before anything is written; a bad row is reported with its line,
field and reason while the good rows are kept. Work is done in batches: for each
batch one query finds the existing rows, then new rows are inserted and changed
rows updated in bulk, in one transaction per batch.

This module holds the entry points and the loop over batches. The parts: ``import_files``
reads a file's rows and names its columns, ``import_cells`` checks the cells of a row,
``import_customers``, ``import_contacts``, ``import_receivables``, ``import_payments``
and ``import_reversals`` check and write each kind, ``import_run`` holds the state of one
import and the queries the writers share, and ``import_report`` what an import tells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from cobro.config.schema import ImportMapping
from cobro.errors import ImportError_
from cobro.intake import readers
from cobro.intake.columns import KINDS as KINDS  # re-exported: the import kinds
from cobro.intake.formats import PLAIN, Reading
from cobro.intake.import_cells import Fields
from cobro.intake.import_contacts import parse_contact, store_contacts
from cobro.intake.import_customers import OPTOUT_CHANNELS as OPTOUT_CHANNELS
from cobro.intake.import_customers import parse_customer, store_customers
from cobro.intake.import_files import (
    check_columns,
    check_kind,
    csv_file,
    file_reading,
    json_rows,
    mapped_rows,
    norm_key,
    union_keys,
)
from cobro.intake.import_payments import parse_payment, store_payments
from cobro.intake.import_receivables import parse_receivable, store_receivables
from cobro.intake.import_report import ImportReport as ImportReport
from cobro.intake.import_report import Row
from cobro.intake.import_report import RowProblem as RowProblem
from cobro.intake.import_run import Parsed, Run
from cobro.progress import SILENT, Progress
from cobro.workspace import Workspace

BATCH_SIZE = 1000


# --------------------------------------------------------------------------- public API


def import_file(
    ws: Workspace,
    kind: str,
    path: Path,
    now: datetime,
    mapping: ImportMapping | None = None,
    progress: Progress = SILENT,
) -> ImportReport:
    """Import ``path`` (``.csv``, ``.json`` or ``.jsonl``) as records of ``kind``.

    ``mapping`` names the file's columns and declares how it writes amounts and dates;
    without a declared format a CSV file may also write them as the company's locale does.

    The file is read as a stream, twice at most: once to check it as a whole (UTF-8;
    for JSON, the columns every record uses), then row by row into batches, so
    memory stays bounded whatever its size. ``progress`` follows the phase ``import``
    batch by batch, counting lines (records of a ``.json`` array).
    """
    check_kind(kind)
    if mapping is not None and mapping.kind not in (None, kind):
        raise ImportError_(f"the mapping is for {mapping.kind}, not {kind}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl"):
        raise ImportError_(
            f"{path}: unknown file format {path.suffix or '(no extension)'!r}; "
            "use .csv, .json (an array of objects) or .jsonl (one object per line)"
        )
    lines = readers.check_utf8(path)
    source = path.name
    reading = file_reading(ws, mapping, text_cells=suffix == ".csv")
    if suffix == ".csv":
        header, rows = csv_file(path, source)
        header, named = mapped_rows(kind, mapping, header, rows, str(path))
        check_columns(kind, header, str(path), required=True)
        return _import(
            ws, kind, named, now, source, [], reading=reading, progress=progress, total=lines
        )
    read = readers.json_array_values if suffix == ".json" else readers.jsonl_values
    unit = "record" if suffix == ".json" else "line"
    columns: dict[str, None] = {}
    objects = total = 0
    for number, value in read(path):
        total = number
        if isinstance(value, dict):
            objects += 1
            columns.update((norm_key(k), None) for k in value)
    found, named = mapped_rows(
        kind, mapping, list(columns), json_rows(read(path), source, unit), str(path)
    )
    check_columns(kind, found, str(path), required=bool(objects))
    return _import(
        ws, kind, named, now, source, [], unit, reading=reading, progress=progress, total=total
    )


def import_records(
    ws: Workspace,
    kind: str,
    records: Iterable[tuple[int, dict[str, str | None]]],
    now: datetime,
    source: str,
    reading: Reading = PLAIN,
    unit: str = "line",
) -> ImportReport:
    """Import ``(line_number, row)`` pairs as records of ``kind``.

    The rows are checked for unknown or missing columns before anything is written;
    ``source`` names them in the report (e.g. a file name). Amounts and dates are plain
    (``1234.50``, ``2026-03-30``) unless ``reading`` says otherwise. ``unit`` is what the
    numbers count (``line``; ``row`` for the rows of an API batch).
    """
    check_kind(kind)
    rows: list[tuple[int, Mapping[str, object]]] = [
        (line, {norm_key(k): v for k, v in rec.items()}) for line, rec in records
    ]
    check_columns(kind, union_keys(rows), source, required=bool(rows))
    return _import(ws, kind, rows, now, source, [], unit, reading=reading)


# --------------------------------------------------------------------------- the run


def _import(
    ws: Workspace,
    kind: str,
    rows: Iterable[Row],
    now: datetime,
    source: str,
    problems: list[RowProblem],
    unit: str = "line",
    reading: Reading = PLAIN,
    *,
    progress: Progress = SILENT,
    total: int = 0,
) -> ImportReport:
    if now.tzinfo is None:
        raise ValueError("import needs an aware datetime for 'now'")
    run = Run(ws, kind, source, now, unit=unit, problems=list(problems), reading=reading)
    parse, store = _HANDLERS[kind]
    batch: list[Parsed] = []
    last = 0
    progress.start("import", total or None)

    def flush() -> None:
        if batch:
            with ws.engine.begin() as conn, _planned_afresh(conn):
                store(conn, run, batch)
            batch.clear()
        progress.advance(
            last,
            f"{run.inserted} inserted, {run.updated} updated, {run.unchanged} unchanged, "
            f"{len(run.problems)} problem(s)",
        )

    for row in rows:
        if isinstance(row, RowProblem):
            run.problems.append(row)
            continue
        line, data = row
        last = line
        f = Fields(line, data, reading)
        values = parse(f, run)
        ext = values.get("external_id")
        if isinstance(ext, str):
            if ext in run.first_line:
                first = run.first_line[ext]
                f.fail(
                    "external_id",
                    f"{ext!r} appears again in this {'batch' if run.unit == 'row' else 'file'} "
                    f"(first on {run.unit} {first})",
                )
            else:
                run.first_line[ext] = line
        if f.problems:
            for col, problem in f.problems:
                run.reject(line, col, problem)
            continue
        for col, problem in f.warnings:
            run.warn(line, col, problem)
        assert isinstance(ext, str)
        batch.append(Parsed(line, ext, values, f))
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    report = run.report()
    progress.finish(
        f"{kind}: {report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.rejected_rows} rejected"
    )
    return report


@contextmanager
def _planned_afresh(conn: Connection) -> Iterator[None]:
    """Plan this batch's queries afresh rather than reuse prepared statements.

    psycopg prepares a statement once it has run a few times, and PostgreSQL may
    then keep the plan it made for the tables as they were: a sequential scan,
    chosen while a table being filled was still small, makes every later batch
    slower than the one before. Other drivers are left alone.
    """
    dbapi: Any = conn.connection.dbapi_connection
    if not hasattr(dbapi, "prepare_threshold"):
        yield
        return
    threshold = dbapi.prepare_threshold
    dbapi.prepare_threshold = None
    try:
        yield
    finally:
        dbapi.prepare_threshold = threshold


_Parse = Callable[[Fields, Run], dict[str, Any]]
_Store = Callable[[Connection, Run, list[Parsed]], None]

_HANDLERS: dict[str, tuple[_Parse, _Store]] = {
    "customers": (parse_customer, store_customers),
    "contacts": (parse_contact, store_contacts),
    "receivables": (parse_receivable, store_receivables),
    "payments": (parse_payment, store_payments),
}
