"""Import customers, contacts, receivables and payments from CSV or JSON files.

Rows are upserted by the company's own ``external_id``. A file that cannot be
read at all (unknown format, not UTF-8, missing or unknown columns) raises
``ImportError_`` before anything is written; a bad row is reported with its line,
field and reason while the good rows are kept. Work is done in batches: for each
batch one query finds the existing rows, then new rows are inserted and changed
rows updated in bulk, in one transaction per batch.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    Connection,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    union_all,
    update,
)

from cobro.config.schema import ImportMapping
from cobro.domain.assignment import resolve_policy
from cobro.domain.money import Money, currency_exponent
from cobro.engine.debtor_terms import index_debtors
from cobro.errors import ImportError_
from cobro.evidence.chain import EvidenceEntry, append
from cobro.intake import jsontext, readers
from cobro.intake.columns import (
    ATTR_PREFIX,
    COLUMNS,
    CONTACT_ROLES,
    CREDIT_NOTE,
    CUSTOMER_KINDS,
    RECEIVABLE_KINDS,
    is_column,
)
from cobro.intake.columns import KINDS as KINDS  # re-exported: the import kinds
from cobro.intake.credits import apply_credits
from cobro.intake.formats import PLAIN, FormatProblem, Reading, read_amount, read_date
from cobro.progress import SILENT, Progress
from cobro.store import tables as t
from cobro.workspace import Workspace

BATCH_SIZE = 1000

_LIST_SEP = re.compile(r"[|,]")
_MAX_DIGITS = 15  # digits before the point: amounts stay well inside a 64-bit integer


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class RowProblem:
    """Why one row was rejected: its line (or JSON record number), the field and the reason."""

    line: int
    field: str
    problem: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.source else f"line {self.line}"
        return (
            f"{where}: {self.field}: {self.problem}" if self.field else f"{where}: {self.problem}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "problem": self.problem}


# A row as read from a file: its line and cells, or the problem that refused it alone.
_Row = tuple[int, Mapping[str, object]] | RowProblem


@dataclass(frozen=True)
class ImportReport:
    """What one import did. ``rejected`` may hold several problems for the same row."""

    kind: str
    source: str
    inserted: int
    updated: int
    unchanged: int
    rejected: list[RowProblem]
    # Rows imported with a value left out (an unusable email or phone), and why.
    warnings: list[RowProblem] = field(default_factory=list)

    @property
    def rejected_rows(self) -> int:
        """How many rows were rejected (a row can have several problems)."""
        return len({p.line for p in self.rejected})

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected_rows": self.rejected_rows,
            "rejected": [p.to_json() for p in self.rejected],
            "warnings": [p.to_json() for p in self.warnings],
        }


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
    _check_kind(kind)
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
    reading = _reading(ws, mapping, text_cells=suffix == ".csv")
    if suffix == ".csv":
        header, rows = _csv_file(path, source)
        header, named = _mapped(kind, mapping, header, rows, str(path))
        _check_columns(kind, header, str(path), required=True)
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
            columns.update((_norm_key(k), None) for k in value)
    found, named = _mapped(
        kind, mapping, list(columns), _json_rows(read(path), source, unit), str(path)
    )
    _check_columns(kind, found, str(path), required=bool(objects))
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
    _check_kind(kind)
    rows: list[tuple[int, Mapping[str, object]]] = [
        (line, {_norm_key(k): v for k, v in rec.items()}) for line, rec in records
    ]
    _check_columns(kind, _union_keys(rows), source, required=bool(rows))
    return _import(ws, kind, rows, now, source, [], unit, reading=reading)


# --------------------------------------------------------------------------- mappings and formats


def _reading(ws: Workspace, mapping: ImportMapping | None, *, text_cells: bool) -> Reading:
    """How a file's amounts and dates are read: as declared, else (for text files such as
    CSV, whose cells are all text) also as the company's locale writes them."""
    return Reading(
        locale=ws.config.company.locale if text_cells else None,
        decimal=mapping.decimal if mapping else None,
        date_format=mapping.date_format if mapping else None,
    )


def _mapped(
    kind: str,
    mapping: ImportMapping | None,
    columns: Sequence[str],
    rows: Iterable[_Row],
    where: str,
) -> tuple[list[str], Iterable[_Row]]:
    """The columns and rows of a file as Cobro names them.

    A column the mapping names is read as its Cobro column; a column already named as
    Cobro's is read as it is (unless the mapping reads that Cobro column from another);
    with a mapping, every other column is left out.
    """
    if mapping is None or not mapping.columns:
        return list(columns), rows
    renames = {_norm_key(header): col for col, header in mapping.columns.items()}
    missing = [h for h in mapping.columns.values() if _norm_key(h) not in columns]
    if missing:
        raise ImportError_(
            f"{where}: the mapping reads column {', '.join(repr(m) for m in missing)} but the "
            f"file has no such column; its columns are {', '.join(columns)}"
        )
    mapped = set(renames.values())
    keep: dict[str, str] = {}
    for name in columns:
        if name in renames:
            keep[name] = renames[name]
        elif is_column(kind, name) and name not in mapped:
            keep[name] = name

    def rename(data: Mapping[str, object]) -> Mapping[str, object]:
        return {keep[k]: v for k, v in data.items() if k in keep}

    return list(keep.values()), (
        row if isinstance(row, RowProblem) else (row[0], rename(row[1])) for row in rows
    )


# --------------------------------------------------------------------------- reading files


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ImportError_(f"unknown import kind {kind!r}: use one of {', '.join(KINDS)}")


def _norm_key(key: str) -> str:
    key = str(key).strip()
    if key[: len(ATTR_PREFIX)].lower() == ATTR_PREFIX:
        return ATTR_PREFIX + key[len(ATTR_PREFIX) :]
    return key.lower()


def _union_keys(rows: Sequence[tuple[int, Mapping[str, object]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _check_columns(kind: str, columns: Sequence[str], where: str, *, required: bool) -> None:
    known = COLUMNS[kind]
    unknown = []
    for col in columns:
        if col in known:
            continue
        if kind == "customers" and col.startswith(ATTR_PREFIX) and len(col) > len(ATTR_PREFIX):
            continue
        unknown.append(col)
    if unknown:
        hints = []
        for col in unknown:
            close = difflib.get_close_matches(col, list(known), n=1)
            hints.append(f"{col!r} (did you mean {close[0]!r}?)" if close else repr(col))
        extra = " or attr_NAME for a custom attribute" if kind == "customers" else ""
        raise ImportError_(
            f"{where}: unknown column {', '.join(hints)} for {kind}; "
            f"the columns are {', '.join(known)}{extra}"
        )
    if required:
        missing = [c for c, req in known.items() if req and c not in columns]
        if missing:
            raise ImportError_(
                f"{where}: missing required column {', '.join(repr(c) for c in missing)} for {kind}"
            )


def _csv_file(path: Path, source: str) -> tuple[list[str], Iterator[_Row]]:
    """The header of a CSV file, and its rows as a stream (each with its physical line)."""
    delimiter = readers.csv_delimiter(path)
    if delimiter is None:
        raise ImportError_(f"{path}: the file is empty; a header row is required")
    records = readers.csv_rows(path, delimiter)
    for line, cells in records:
        if isinstance(cells, readers.Refused):
            raise ImportError_(f"{path}:{line}: the header cannot be read: {cells}")
        header = _csv_header(path, cells, line)
        return header, _csv_body(records, header, delimiter, source)
    raise ImportError_(f"{path}: the file has no header row naming its columns")


def _csv_body(
    records: Iterator[readers.Record], header: list[str], delimiter: str, source: str
) -> Iterator[_Row]:
    for line, cells in records:
        if isinstance(cells, readers.Refused):
            yield RowProblem(line, "", str(cells), source)
            continue
        if len(cells) > len(header) and not any(c.strip() for c in cells[len(header) :]):
            cells = cells[: len(header)]
        if len(cells) != len(header):
            yield RowProblem(
                line,
                "",
                f"the row has {len(cells)} fields but the header has {len(header)} "
                f"(separator {delimiter!r})",
                source,
            )
            continue
        yield line, dict(zip(header, cells, strict=True))


def _csv_header(path: Path, cells: list[str], line: int) -> list[str]:
    names = [_norm_key(c) for c in cells]
    while names and not names[-1]:
        names.pop()  # trailing empty columns written by spreadsheets
    for i, name in enumerate(names, 1):
        if not name:
            raise ImportError_(f"{path}:{line}: column {i} of the header has no name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ImportError_(
            f"{path}:{line}: column {', '.join(repr(d) for d in dupes)} appears twice in the header"
        )
    return names


def _json_rows(records: Iterator[readers.Record], source: str, unit: str) -> Iterator[_Row]:
    """The objects of a JSON file as rows; anything else is a problem of its line/record."""
    for number, value in records:
        if isinstance(value, readers.Refused):
            yield RowProblem(number, "", str(value), source)
        elif not isinstance(value, dict):
            yield RowProblem(number, "", f"the {unit} is not a JSON object", source)
        elif jsontext.depth(value) > jsontext.MAX_DEPTH:
            yield RowProblem(
                number, "", f"nested more than {jsontext.MAX_DEPTH} levels deep", source
            )
        else:
            yield number, {_norm_key(k): v for k, v in value.items()}


# --------------------------------------------------------------------------- validating cells


@functools.cache
def _max_len(table: Table, column: str) -> int:
    typ = table.c[column].type
    assert isinstance(typ, String) and typ.length is not None
    return int(typ.length)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class _Fields:
    """Reads and checks the cells of one row, collecting every problem found."""

    def __init__(self, line: int, data: Mapping[str, object], reading: Reading = PLAIN) -> None:
        self.line = line
        self.data = data
        self.reading = reading
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []  # values left out; the row is kept

    def fail(self, col: str, problem: str) -> None:
        self.problems.append((col, problem))

    def has(self, col: str) -> bool:
        return col in self.data

    def _scalar(self, col: str, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, int | Decimal):
            text = str(value)
        elif isinstance(value, float):
            self.fail(col, "floating-point numbers are not exact: give the value as text")
            return None
        else:
            self.fail(col, f"expected a single value, got {_describe(value)}")
            return None
        text = text.strip()
        if "\x00" in text:
            self.fail(col, "contains a NUL character")
            return None
        return text or None

    def raw(self, col: str) -> str | None:
        """The cell's trimmed text; None when the column is absent or the cell empty."""
        return self._scalar(col, self.data.get(col))

    def required(self, col: str) -> str | None:
        """Like ``raw``, reporting "is required" when the cell is empty or absent."""
        before = len(self.problems)
        value = self.raw(col)
        if value is None and len(self.problems) == before:
            self.fail(col, "is required")
        return value

    def items(self, col: str) -> list[str]:
        """A list cell: a JSON list, or text separated by ``|`` or ``,``."""
        value = self.data.get(col)
        if isinstance(value, list | tuple):
            parts = [self._scalar(col, v) for v in value]
        else:
            text = self._scalar(col, value)
            parts = _LIST_SEP.split(text) if text else []
        out: list[str] = []
        for part in parts:
            item = (part or "").strip().lower()
            if item and item not in out:
                out.append(item)
        return out

    def text(self, col: str, max_len: int, *, required: bool = False) -> str | None:
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        if len(value) > max_len:
            self.fail(col, f"is longer than {max_len} characters")
            return None
        return value

    def choice(self, col: str, allowed: Sequence[str], default: str) -> str:
        value = self.raw(col)
        if value is None:
            return default
        if value.lower() not in allowed:
            self.fail(col, f"{value!r} is not one of: {', '.join(allowed)}")
            return default
        return value.lower()

    def date(self, col: str, *, required: bool = False) -> date | None:
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        try:
            return read_date(value, self.reading)
        except FormatProblem as exc:
            self.fail(col, str(exc))
            return None

    def decimal(
        self, col: str, *, required: bool = False, positive: bool = False, signed: bool = False
    ) -> Decimal | None:
        """An amount; ``signed`` lets it be negative (the caller decides what that means)."""
        value = self.required(col) if required else self.raw(col)
        if value is None:
            return None
        try:
            amount = read_amount(value, self.reading)
        except FormatProblem as exc:
            self.fail(col, str(exc))
            return None
        if amount.adjusted() >= _MAX_DIGITS:
            self.fail(col, f"{value} is too large")
            return None
        if signed and positive and amount == 0:
            self.fail(col, f"{value} must not be 0")
            return None
        if signed:
            return amount
        if positive and amount <= 0:
            self.fail(col, f"{value} must be greater than 0")
            return None
        if amount < 0:
            self.fail(col, f"{value} must not be negative")
            return None
        return amount

    def currency(self, col: str, default: str) -> str:
        value = self.raw(col)
        if value is None:
            return default
        code = value.upper()
        try:
            Money.of("0", code)
            if not is_currency(code):
                raise ValueError(code)
        except ValueError:
            self.fail(col, f"{value!r} is not a currency code (ISO 4217, e.g. EUR)")
            return default
        return code

    def phone(self, col: str, region: str | None) -> str | None:
        """A phone number in E.164 (+34600111222); national numbers are read in ``region``."""
        value = self.raw(col)
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException as exc:
            self.fail(col, f"{value!r} is not a phone number: {exc}")
            return None
        if not phonenumbers.is_valid_number(number):
            national = region and not value.startswith(("+", "00"))
            where = f" (national numbers are read as {region})" if national else ""
            self.fail(col, f"{value!r} is not a valid phone number{where}")
            return None
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    def email(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            normalized = str(
                validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
            )
        except EmailNotValidError as exc:
            self.fail(col, f"{value!r} is not an email address: {exc}")
            return None
        if len(normalized) > _max_len(t.customers, "email"):
            self.fail(col, "is too long for an email address")
            return None
        return str(normalized)

    def address(
        self, col: str, read: Callable[[str], str | None], whose: str, v: dict[str, Any]
    ) -> None:
        """Read an email or phone cell into ``v``; an unusable one does not reject the row.

        The address is then stored empty, the cell's text kept as ``invalid_<col>`` for
        staff, and a warning names the row and field: the other channels still work.
        """
        v[f"invalid_{col}"] = None
        raw = self.data.get(col)
        before = len(self.problems)
        v[col] = read(col)
        if len(self.problems) == before or not isinstance(raw, str) or "\x00" in raw:
            return  # valid, or not plain text (a list, a float, a NUL): the row is rejected
        _, problem = self.problems.pop()
        v[f"invalid_{col}"] = raw.strip()[: _max_len(t.customers, f"invalid_{col}")]
        self.warnings.append((col, f"{problem}; {whose} is stored without it"))

    def timezone(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(col, f"{value!r} is not a time zone (e.g. Europe/Madrid, America/Bogota)")
            return None
        if len(value) > _max_len(t.customers, "timezone"):
            self.fail(col, f"{value!r} is too long for a time zone")
            return None
        return value

    def language(self, col: str) -> str | None:
        value = self.raw(col)
        if value is None:
            return None
        try:
            code = str(Locale.parse(value.replace("-", "_")))
        except (UnknownLocaleError, ValueError, TypeError):
            self.fail(col, f"{value!r} is not a language code (e.g. es, en, es_ES)")
            return None
        if len(code) > _max_len(t.customers, "language"):
            self.fail(col, f"{value!r} is too long for a language code")
            return None
        return code


def _to_minor(f: _Fields, col: str, amount: Decimal | None, currency: str) -> int | None:
    """``amount`` in minor units of ``currency``; refuses more decimals than it has."""
    if amount is None:
        return None
    money = Money.of(amount, currency)
    if money.amount != amount:
        f.fail(
            col,
            f"{amount} has more decimal places than {currency} allows "
            f"({currency_exponent(currency)})",
        )
        return None
    return money.minor


def _fmt(minor: int, currency: str) -> str:
    return str(Money.from_minor(minor, currency))


def _same_amount(a: int, a_cur: str, b: int, b_cur: str) -> bool:
    return Money.from_minor(a, a_cur).amount == Money.from_minor(b, b_cur).amount


# --------------------------------------------------------------------------- the run


@dataclass
class _Parsed:
    line: int
    external_id: str
    values: dict[str, Any]
    fields: _Fields


@dataclass
class _Run:
    ws: Workspace
    kind: str
    source: str
    now: datetime
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    unit: str = "line"  # what the numbers count: lines, or records of a JSON array
    problems: list[RowProblem] = field(default_factory=list)
    first_line: dict[str, int] = field(default_factory=dict)
    reading: Reading = PLAIN
    warnings: list[RowProblem] = field(default_factory=list)

    @property
    def company_id(self) -> int:
        return self.ws.company_id

    @property
    def currency(self) -> str:
        return self.ws.config.company.currency

    @property
    def phone_region(self) -> str | None:
        return self.ws.config.company.region

    def reject(self, line: int, col: str, problem: str) -> None:
        self.problems.append(RowProblem(line, col, problem, self.source))

    def warn(self, line: int, col: str, problem: str) -> None:
        self.warnings.append(RowProblem(line, col, problem, self.source))

    def report(self) -> ImportReport:
        return ImportReport(
            kind=self.kind,
            source=self.source,
            inserted=self.inserted,
            updated=self.updated,
            unchanged=self.unchanged,
            rejected=sorted(self.problems, key=lambda p: p.line),
            warnings=sorted(self.warnings, key=lambda p: p.line),
        )


def _import(
    ws: Workspace,
    kind: str,
    rows: Iterable[_Row],
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
    run = _Run(ws, kind, source, now, unit=unit, problems=list(problems), reading=reading)
    parse, store = _HANDLERS[kind]
    batch: list[_Parsed] = []
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
        f = _Fields(line, data, reading)
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
        batch.append(_Parsed(line, ext, values, f))
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


def _bulk_update(
    conn: Connection, table: Table, cols: Sequence[str], rows: list[dict[str, Any]]
) -> None:
    """UPDATE ``cols`` of many rows by id in one executemany."""
    if not rows:
        return
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({c: bindparam(f"b_{c}", type_=table.c[c].type) for c in cols})
    )
    conn.execute(stmt, [{"b_id": r["id"], **{f"b_{c}": r[c] for c in cols}} for r in rows])


def _customer_ids(conn: Connection, run: _Run, refs: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    rows = conn.execute(
        select(t.customers.c.id, t.customers.c.external_id).where(
            t.customers.c.company_id == run.company_id, t.customers.c.external_id.in_(wanted)
        )
    )
    return {r.external_id: int(r.id) for r in rows}


def _no_customer(ref: str) -> str:
    return f"no customer with external_id {ref!r} (import the customers first)"


def _existing(
    conn: Connection, run: _Run, table: Table, batch: list[_Parsed], *, lock: bool = False
) -> dict[str, dict[str, Any]]:
    stmt = select(table).where(
        table.c.company_id == run.company_id,
        table.c.external_id.in_([p.external_id for p in batch]),
    )
    if lock:
        stmt = stmt.with_for_update()
    return {r.external_id: dict(r._mapping) for r in conn.execute(stmt)}


# --------------------------------------------------------------------------- customers

OPTOUT_CHANNELS = ("email", "sms", "push", "voice")

_CUSTOMER_COLS = (
    "name",
    "kind",
    "group_name",
    "language",
    "timezone",
    "email",
    "phone",
    "invalid_email",
    "invalid_phone",
    "tags",
    "attributes",
    "policy",
    "effective_policy",
)


def _parse_customer(f: _Fields, run: _Run) -> dict[str, Any]:
    c = t.customers
    v: dict[str, Any] = {
        "external_id": f.text("external_id", _max_len(c, "external_id"), required=True),
        "name": f.text("name", _max_len(c, "name"), required=True),
    }
    if f.has("kind"):
        v["kind"] = f.choice("kind", CUSTOMER_KINDS, "person")
    if f.has("group"):
        v["group_name"] = f.text("group", _max_len(c, "group_name"))
    if f.has("language"):
        v["language"] = f.language("language")
    if f.has("timezone"):
        v["timezone"] = f.timezone("timezone")
    if f.has("email"):
        f.address("email", f.email, "the customer", v)
    if f.has("phone"):
        f.address("phone", lambda col: f.phone(col, run.phone_region), "the customer", v)
    if f.has("tags"):
        tags = ",".join(f.items("tags"))
        if len(tags) > _max_len(c, "tags"):
            f.fail("tags", f"are longer than {_max_len(c, 'tags')} characters in all")
        v["tags"] = tags
    if f.has("policy"):
        policy = f.raw("policy")
        policies = run.ws.config.policies
        if policy is not None and policy not in policies:
            f.fail("policy", f"{policy!r} is not a policy of cobro.yaml ({', '.join(policies)})")
        v["policy"] = policy
    if f.has("optouts"):
        channels = f.items("optouts")
        bad = [x for x in channels if x not in OPTOUT_CHANNELS]
        if bad:
            f.fail(
                "optouts",
                f"unknown channel {', '.join(repr(x) for x in bad)}; "
                f"the channels are {', '.join(OPTOUT_CHANNELS)}",
            )
        v["optouts"] = channels
    attrs = {k[len(ATTR_PREFIX) :]: f.raw(k) for k in f.data if k.startswith(ATTR_PREFIX)}
    if attrs:
        v["attributes"] = attrs
    return v


def _store_customers(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    cfg = run.ws.config
    rules = cfg.assignment_rules()
    existing = _existing(conn, run, t.customers, batch)
    defaults: dict[str, Any] = {
        "kind": "person",
        "group_name": None,
        "language": None,
        "timezone": None,
        "email": None,
        "phone": None,
        "invalid_email": None,
        "invalid_phone": None,
        "tags": "",
        "attributes": {},
        "policy": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    updated_from: list[dict[str, Any]] = []
    for p in batch:
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _CUSTOMER_COLS}
        row.update({k: v for k, v in p.values.items() if k in row and k != "attributes"})
        attrs: dict[str, Any] = dict(base.get("attributes") or {})
        for key, value in (p.values.get("attributes") or {}).items():
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
        row["attributes"] = attrs
        row["effective_policy"] = resolve_policy(
            rules,
            cfg.default_policy,
            explicit=row["policy"],
            kind=row["kind"],
            group=row["group_name"],
            language=row["language"],
            tags=row["tags"].split(",") if row["tags"] else [],
        )
        if old is None:
            row.update(
                company_id=run.company_id,
                external_id=p.external_id,
                created_at=run.now,
                updated_at=run.now,
            )
            inserts.append(row)
        elif any(row[c] != old[c] for c in _CUSTOMER_COLS if c != "attributes") or (
            attrs != (old["attributes"] or {})
        ):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
            updated_from.append(old)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.customers), inserts)
    _bulk_update(conn, t.customers, (*_CUSTOMER_COLS, "updated_at"), updates)
    searched = [
        int(row["id"])
        for row, old in zip(updates, updated_from, strict=True)
        if any(row[c] != old[c] for c in ("name", "email", "phone"))
    ]
    searched += _customer_ids(conn, run, (row["external_id"] for row in inserts)).values()
    index_debtors(conn, run.company_id, searched)
    run.inserted += len(inserts)
    run.updated += len(updates)
    _store_optouts(conn, run, batch)


def _store_optouts(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    """The opt-outs an ``optouts`` column lists, added (one the file leaves out is kept:
    a STOP reply is not undone by an export that does not know of it)."""
    from cobro.engine.optouts import add_optout

    wanted = [p for p in batch if p.values.get("optouts")]
    if not wanted:
        return
    ids = _customer_ids(conn, run, (p.external_id for p in wanted))
    for p in wanted:
        for channel in p.values["optouts"]:
            add_optout(
                conn, run.company_id, ids[p.external_id], channel, "import", run.now,
                f"import line {p.line}",
            )  # fmt: skip


# --------------------------------------------------------------------------- contacts

_CONTACT_COLS = (
    "customer_id",
    "name",
    "email",
    "phone",
    "invalid_email",
    "invalid_phone",
    "roles",
    "language",
)


def _parse_contact(f: _Fields, run: _Run) -> dict[str, Any]:
    c = t.contacts
    v: dict[str, Any] = {
        "external_id": f.text("external_id", _max_len(c, "external_id"), required=True),
        "customer": f.text("customer", _max_len(t.customers, "external_id"), required=True),
        "name": f.text("name", _max_len(c, "name"), required=True),
    }
    if f.has("email"):
        f.address("email", f.email, "the contact", v)
    if f.has("phone"):
        f.address("phone", lambda col: f.phone(col, run.phone_region), "the contact", v)
    if f.has("roles"):
        roles = f.items("roles")
        bad = [r for r in roles if r not in CONTACT_ROLES]
        if bad:
            f.fail(
                "roles",
                f"unknown role {', '.join(repr(r) for r in bad)}; "
                f"the roles are {', '.join(CONTACT_ROLES)}",
            )
        ordered = [r for r in CONTACT_ROLES if r in roles]
        v["roles"] = f",{','.join(ordered)}," if ordered else ""
    if f.has("language"):
        v["language"] = f.language("language")
    return v


def _store_contacts(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    customer_ids = _customer_ids(conn, run, (p.values["customer"] for p in batch))
    existing = _existing(conn, run, t.contacts, batch)
    defaults: dict[str, Any] = {
        "email": None,
        "phone": None,
        "invalid_email": None,
        "invalid_phone": None,
        "roles": "",
        "language": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in batch:
        ref = p.values["customer"]
        if ref not in customer_ids:
            run.reject(p.line, "customer", _no_customer(ref))
            continue
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _CONTACT_COLS}
        row.update({k: v for k, v in p.values.items() if k in row})
        row["customer_id"] = customer_ids[ref]
        given = ("email", "phone", "invalid_email", "invalid_phone")
        if not any(row[c] for c in given):
            run.reject(p.line, "email", "a contact needs an email or a phone")
            continue
        if old is None:
            row.update(company_id=run.company_id, external_id=p.external_id, updated_at=run.now)
            inserts.append(row)
        elif any(row[c] != old[c] for c in _CONTACT_COLS):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.contacts), inserts)
    _bulk_update(conn, t.contacts, (*_CONTACT_COLS, "updated_at"), updates)
    run.inserted += len(inserts)
    run.updated += len(updates)


# --------------------------------------------------------------------------- receivables

_RECEIVABLE_COLS = (
    "customer_id",
    "kind",
    "number",
    "invoice_number",
    "issued_on",
    "due_on",
    "currency",
    "amount_minor",
    "balance_minor",
    "description",
)


def _parse_receivable(f: _Fields, run: _Run) -> dict[str, Any]:
    r = t.receivables
    v: dict[str, Any] = {
        "external_id": f.text("external_id", _max_len(r, "external_id"), required=True),
        "customer": f.text("customer", _max_len(t.customers, "external_id"), required=True),
        "due_on": f.date("due_on", required=True),
        "amount": f.decimal("amount", required=True, positive=True, signed=True),
    }
    if f.has("kind"):
        v["kind"] = f.choice("kind", RECEIVABLE_KINDS, "invoice")
    if v["amount"] is not None and v["amount"] < 0:
        # A negative amount is a credit note, as accounting systems export them.
        if f.raw("kind") is not None and v.get("kind") != CREDIT_NOTE:
            f.fail("amount", f"{v['amount']} is negative: only a credit_note has a negative amount")
        v["kind"] = CREDIT_NOTE
        v["amount"] = -v["amount"]
    if f.has("number"):
        v["number"] = f.text("number", _max_len(r, "number"))
    if f.has("invoice"):
        v["invoice_number"] = f.text("invoice", _max_len(r, "invoice_number"))
    if f.has("issued_on"):
        v["issued_on"] = f.date("issued_on")
    if f.has("currency"):
        v["currency"] = f.currency("currency", run.currency)
    if f.has("description"):
        v["description"] = f.text("description", _max_len(r, "description"))
    v["balance"] = f.decimal("balance")
    return v


def _store_receivables(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    customer_ids = _customer_ids(conn, run, (p.values["customer"] for p in batch))
    existing = _existing(conn, run, t.receivables, batch, lock=True)
    allocated: dict[int, int] = {}  # paid or credited on each receivable; applied of a credit
    if existing:
        a, ca = t.allocations, t.credit_applications
        ids = [r["id"] for r in existing.values()]
        taken = union_all(
            select(a.c.receivable_id.label("rid"), a.c.amount_minor).where(
                a.c.receivable_id.in_(ids)
            ),
            select(ca.c.receivable_id, ca.c.amount_minor).where(ca.c.receivable_id.in_(ids)),
            select(ca.c.credit_note_id, ca.c.amount_minor).where(ca.c.credit_note_id.in_(ids)),
        ).subquery()
        rows = conn.execute(
            select(taken.c.rid, func.sum(taken.c.amount_minor)).group_by(taken.c.rid)
        )
        allocated = {int(rid): int(total or 0) for rid, total in rows}
    defaults: dict[str, Any] = {
        "kind": "invoice",
        "number": None,
        "invoice_number": None,
        "issued_on": None,
        "currency": run.currency,
        "description": None,
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in batch:
        f = _Fields(p.line, p.fields.data)
        ref = p.values["customer"]
        if ref not in customer_ids:
            f.fail("customer", _no_customer(ref))
        old = existing.get(p.external_id)
        base = old if old is not None else defaults
        row: dict[str, Any] = {c: base.get(c) for c in _RECEIVABLE_COLS}
        row.update({k: v for k, v in p.values.items() if k in row})
        row["customer_id"] = customer_ids.get(ref)
        row["number"] = row["number"] or p.external_id
        paid = allocated.get(old["id"], 0) if old is not None else 0
        cur = row["currency"]
        credit = row["kind"] == CREDIT_NOTE
        if old is not None and credit != (old["kind"] == CREDIT_NOTE):
            f.fail(
                "kind",
                f"{p.external_id} is stored as {old['kind']}: an invoice and a credit note "
                "are different documents, each with its own external_id",
            )
        if row["invoice_number"] and row["kind"] not in ("instalment", CREDIT_NOTE):
            f.fail(
                "invoice",
                "only an instalment or a credit note refers to an invoice "
                "(set kind to instalment or credit_note)",
            )
        if row["issued_on"] and row["issued_on"] > row["due_on"]:
            f.fail("issued_on", f"{row['issued_on']} is after due_on {row['due_on']}")
        if old is not None and paid and cur != old["currency"]:
            f.fail(
                "currency",
                f"cannot change {p.external_id} from {old['currency']} to {cur}: "
                "payments are already allocated to it",
            )
        if (
            old is not None
            and paid
            and ref in customer_ids
            and row["customer_id"] != old["customer_id"]
        ):
            f.fail(
                "customer",
                f"cannot move {p.external_id} to another customer: "
                "payments of its customer are already allocated to it",
            )
        amount = _to_minor(f, "amount", p.values["amount"], cur)
        balance = _to_minor(f, "balance", p.values["balance"], cur)
        if credit and balance is not None:
            f.fail(
                "balance", "a credit note has no balance: Cobro applies it to the debtor's items"
            )
        if amount is not None and credit:
            # Stored negative, with the credit not yet applied as a negative balance: the
            # planner only claims positive balances, and sums of balances net the credit.
            row["amount_minor"] = -amount
            row["balance_minor"] = -(amount - paid)
            if amount < paid:
                f.fail(
                    "amount",
                    f"{_fmt(amount, cur)} is less than the {_fmt(paid, cur)} of this credit note "
                    "already applied",
                )
        elif amount is not None:
            row["amount_minor"] = amount
            if balance is not None:
                if balance > amount:
                    f.fail("balance", f"{_fmt(balance, cur)} is more than the amount")
                row["balance_minor"] = balance
            else:
                row["balance_minor"] = amount - paid
                if amount < paid:
                    f.fail(
                        "amount",
                        f"{_fmt(amount, cur)} is less than the {_fmt(paid, cur)} "
                        "already paid on it",
                    )
        if f.problems:
            for col, problem in f.problems:
                run.reject(p.line, col, problem)
            continue
        if old is None:
            row.update(company_id=run.company_id, external_id=p.external_id, updated_at=run.now)
            inserts.append(row)
        elif any(row[c] != old[c] for c in _RECEIVABLE_COLS):
            row.update(id=old["id"], updated_at=run.now)
            updates.append(row)
        else:
            run.unchanged += 1
    if inserts:
        conn.execute(insert(t.receivables), inserts)
    _bulk_update(conn, t.receivables, (*_RECEIVABLE_COLS, "updated_at"), updates)
    run.inserted += len(inserts)
    run.updated += len(updates)
    apply_credits(conn, sorted(set(customer_ids.values())), run.now)


# --------------------------------------------------------------------------- payments


def _parse_payment(f: _Fields, run: _Run) -> dict[str, Any]:
    p = t.payments
    v: dict[str, Any] = {
        "external_id": f.text("external_id", _max_len(p, "external_id"), required=True),
        "customer": f.text("customer", _max_len(t.customers, "external_id"), required=True),
        "receivable": f.text("receivable", _max_len(t.receivables, "external_id")),
        "paid_on": f.date("paid_on", required=True),
        "currency": f.currency("currency", run.currency),
        "reverses": f.text("reverses", _max_len(p, "external_id")),
    }
    if v["reverses"] is None:
        amount = f.decimal("amount", required=True, positive=True)
    else:
        # A reversal returns a whole payment: its amount may be left empty or given with
        # either sign, as bank statements write a returned debit.
        amount = f.decimal("amount", positive=True, signed=True)
        v["currency_given"] = f.raw("currency") is not None
        if v["receivable"] is not None:
            f.fail("receivable", "a reversal names only the payment it reverses (reverses)")
    v["amount_minor"] = _to_minor(f, "amount", abs(amount) if amount else amount, v["currency"])
    return v


@dataclass
class _Open:
    """A customer's open receivables in one currency, oldest due first."""

    ids: list[int] = field(default_factory=list)
    next: int = 0  # the ones before this index are paid in full


def _allocate(
    amount: int, target: int | None, queue: _Open | None, balance: dict[int, int]
) -> tuple[list[tuple[int, int]], int]:
    """Allocate ``amount`` to ``target`` first, then oldest due first; lowers ``balance``.

    Returns the ``(receivable_id, minor)`` allocations and what is left unallocated.
    """
    left = amount
    allocs: list[tuple[int, int]] = []

    def take(rid: int) -> None:
        nonlocal left
        part = min(left, balance.get(rid, 0))
        if part > 0:
            allocs.append((rid, part))
            balance[rid] -= part
            left -= part

    if target is not None:
        take(target)
    if queue is not None:
        while left > 0 and queue.next < len(queue.ids):
            rid = queue.ids[queue.next]
            take(rid)
            if balance[rid] == 0:
                queue.next += 1
    return allocs, left


def _store_payments(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    """Payments and reversals, in the order of the file (a reversal may follow its payment)."""
    for reversals, rows in itertools.groupby(batch, key=lambda p: p.values["reverses"] is not None):
        store = _store_reversals if reversals else _store_new_payments
        store(conn, run, list(rows))


def _recorded(conn: Connection, run: _Run, external_ids: Sequence[str]) -> dict[str, Any]:
    """The payments (and reversals) already recorded under these external ids."""
    pay, rec, cus = t.payments, t.receivables, t.customers
    undone = pay.alias("undone")
    return {
        r.external_id: r
        for r in conn.execute(
            select(
                pay.c.external_id,
                pay.c.paid_on,
                pay.c.currency,
                pay.c.amount_minor,
                cus.c.external_id.label("customer"),
                rec.c.external_id.label("receivable"),
                undone.c.external_id.label("reverses"),
            )
            .join(cus, cus.c.id == pay.c.customer_id)
            .outerjoin(rec, rec.c.id == pay.c.receivable_id)
            .outerjoin(undone, undone.c.id == pay.c.reverses_id)
            .where(pay.c.company_id == run.company_id, pay.c.external_id.in_(external_ids))
        )
    }


def _store_new_payments(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    pay, rec, cus = t.payments, t.receivables, t.customers
    customer_ids = _customer_ids(conn, run, (p.values["customer"] for p in batch))
    recorded = _recorded(conn, run, [p.external_id for p in batch])

    named_refs = sorted({p.values["receivable"] for p in batch if p.values["receivable"]})
    named: dict[str, Any] = {}
    if named_refs:
        named = {
            r.external_id: r
            for r in conn.execute(
                select(
                    rec.c.id,
                    rec.c.external_id,
                    rec.c.customer_id,
                    rec.c.currency,
                    rec.c.kind,
                    cus.c.external_id.label("customer"),
                )
                .join(cus, cus.c.id == rec.c.customer_id)
                .where(rec.c.company_id == run.company_id, rec.c.external_id.in_(named_refs))
            )
        }

    # Every open receivable of the batch's customers, locked while we allocate. The
    # customer ids are this company's, so filtering on them alone lets the database
    # use the customer_id index rather than scan the company's open receivables.
    balance: dict[int, int] = {}
    open_by: dict[tuple[int, str], _Open] = {}
    wanted = sorted(
        {customer_ids[p.values["customer"]] for p in batch if p.values["customer"] in customer_ids}
    )
    if wanted:
        for r in conn.execute(
            select(rec.c.id, rec.c.customer_id, rec.c.currency, rec.c.balance_minor)
            .where(rec.c.customer_id.in_(wanted), rec.c.balance_minor > 0)
            .order_by(rec.c.due_on, rec.c.id)
            .with_for_update()
        ):
            balance[int(r.id)] = int(r.balance_minor)
            open_by.setdefault((int(r.customer_id), r.currency), _Open()).ids.append(int(r.id))

    new_payments: list[dict[str, Any]] = []
    new_allocations: list[list[tuple[int, int]]] = []
    touched: set[int] = set()
    for p in batch:
        v = p.values
        cur, amount = v["currency"], v["amount_minor"]
        old = recorded.get(p.external_id)
        if old is not None:
            differences = [
                (col, was, given)
                for col, was, given in (
                    ("customer", old.customer, v["customer"]),
                    ("reverses", old.reverses, None),
                    ("receivable", old.receivable, v["receivable"]),
                    ("paid_on", old.paid_on, v["paid_on"]),
                    ("currency", old.currency, cur),
                    ("amount", _fmt(old.amount_minor, old.currency), _fmt(amount, cur)),
                )
                if was != given
                and not (
                    col == "amount" and _same_amount(old.amount_minor, old.currency, amount, cur)
                )
            ]
            if not differences:
                run.unchanged += 1
                continue
            detail = "; ".join(
                f"{col} {was or '(none)'}, now {given or '(none)'}"
                for col, was, given in differences
            )
            run.reject(
                p.line,
                differences[0][0],
                f"payment {p.external_id} was already recorded with a different "
                f"{'/'.join(d[0] for d in differences)} ({detail}); "
                "a recorded payment cannot be changed",
            )
            continue

        ref = v["customer"]
        if ref not in customer_ids:
            run.reject(p.line, "customer", _no_customer(ref))
            continue
        customer_id = customer_ids[ref]
        target = None
        if v["receivable"]:
            target = named.get(v["receivable"])
            problem = None
            if target is None:
                problem = f"no receivable with external_id {v['receivable']!r}"
            elif target.customer_id != customer_id:
                problem = f"{v['receivable']} belongs to customer {target.customer}, not {ref}"
            elif target.currency != cur:
                problem = f"{v['receivable']} is in {target.currency} but the payment is in {cur}"
            elif target.kind == CREDIT_NOTE:
                problem = f"{v['receivable']} is a credit note: it is owed to the customer"
            if problem:
                run.reject(p.line, "receivable", problem)
                continue

        allocs, left = _allocate(
            amount,
            int(target.id) if target is not None else None,
            open_by.get((customer_id, cur)),
            balance,
        )
        touched.update(rid for rid, _ in allocs)
        new_payments.append(
            {
                "company_id": run.company_id,
                "customer_id": customer_id,
                "external_id": p.external_id,
                "receivable_id": int(target.id) if target is not None else None,
                "paid_on": v["paid_on"],
                "currency": cur,
                "amount_minor": amount,
                "unallocated_minor": left,
                "created_at": run.now,
            }
        )
        new_allocations.append(allocs)

    if new_payments:
        conn.execute(insert(pay), new_payments)
        ext_ids = [np["external_id"] for np in new_payments]
        ids = {
            r.external_id: int(r.id)
            for r in conn.execute(
                select(pay.c.id, pay.c.external_id).where(
                    pay.c.company_id == run.company_id, pay.c.external_id.in_(ext_ids)
                )
            )
        }
        rows = [
            {"payment_id": ids[ext], "receivable_id": rid, "amount_minor": part}
            for ext, allocs in zip(ext_ids, new_allocations, strict=True)
            for rid, part in allocs
        ]
        if rows:
            conn.execute(insert(t.allocations), rows)
    _bulk_update(
        conn,
        rec,
        ("balance_minor", "updated_at"),
        [
            {"id": rid, "balance_minor": balance[rid], "updated_at": run.now}
            for rid in sorted(touched)
        ],
    )
    run.inserted += len(new_payments)


def _store_reversals(conn: Connection, run: _Run, batch: list[_Parsed]) -> None:
    """Undo payments (a returned direct debit): what they paid is owed again.

    A reversal is stored as a payment with negative amounts that names the payment it
    undoes; each allocation of that payment gets a negative twin, the receivables get
    their balances back (never above their amount), and the reversal is appended to the
    evidence chain. The planner sees the reopened balances: dunning resumes.
    """
    pay, alloc, rec, cus = t.payments, t.allocations, t.receivables, t.customers
    recorded = _recorded(conn, run, [p.external_id for p in batch])
    undone = pay.alias("undone")
    reversal = pay.alias("reversal")
    targets = {
        r.external_id: r
        for r in conn.execute(
            select(
                undone.c.id,
                undone.c.external_id,
                undone.c.customer_id,
                undone.c.receivable_id,
                undone.c.currency,
                undone.c.amount_minor,
                undone.c.unallocated_minor,
                undone.c.reverses_id,
                cus.c.external_id.label("customer"),
                reversal.c.external_id.label("reversed_by"),
            )
            .join(cus, cus.c.id == undone.c.customer_id)
            .outerjoin(reversal, reversal.c.reverses_id == undone.c.id)
            .where(
                undone.c.company_id == run.company_id,
                undone.c.external_id.in_(sorted({p.values["reverses"] for p in batch})),
            )
            .with_for_update(of=undone)
        )
    }
    paid: dict[int, list[tuple[int, int]]] = {}
    for a in conn.execute(
        select(alloc.c.payment_id, alloc.c.receivable_id, alloc.c.amount_minor)
        .where(alloc.c.payment_id.in_([int(x.id) for x in targets.values()]))
        .order_by(alloc.c.id)
    ):
        paid.setdefault(int(a.payment_id), []).append((int(a.receivable_id), int(a.amount_minor)))
    receivables = {
        int(r.id): r
        for r in conn.execute(
            select(rec.c.id, rec.c.external_id, rec.c.amount_minor, rec.c.balance_minor)
            .where(rec.c.id.in_(sorted({rid for parts in paid.values() for rid, _ in parts})))
            .with_for_update()
        )
    }
    balance = {rid: int(r.balance_minor) for rid, r in receivables.items()}

    reversals: list[dict[str, Any]] = []
    reopened: list[list[tuple[int, int]]] = []
    evidence: list[EvidenceEntry] = []
    reversed_now: dict[str, str] = {}
    for p in batch:
        v = p.values
        ref = v["reverses"]
        target = targets.get(ref)
        old = recorded.get(p.external_id)
        if old is not None:
            same = (
                old.reverses == ref
                and old.customer == v["customer"]
                and old.paid_on == v["paid_on"]
                and (not v["currency_given"] or old.currency == v["currency"])
                and v["amount_minor"] in (None, -int(old.amount_minor))
            )
            if same:
                run.unchanged += 1
            else:
                run.reject(
                    p.line,
                    "reverses",
                    f"{p.external_id} was already recorded "
                    + (f"as the reversal of {old.reverses}" if old.reverses else "as a payment")
                    + f" (customer {old.customer}, on {old.paid_on}, "
                    f"{_fmt(abs(int(old.amount_minor)), old.currency)}); "
                    "a recorded payment cannot be changed",
                )
            continue
        problem = None
        if target is None:
            problem = f"no payment with external_id {ref!r}"
        elif target.customer != v["customer"]:
            problem = f"payment {ref} is of customer {target.customer}, not {v['customer']}"
        elif target.reverses_id is not None:
            problem = f"{ref} is itself a reversal"
        elif target.reversed_by or ref in reversed_now:
            problem = (
                f"payment {ref} was already reversed by {target.reversed_by or reversed_now[ref]}"
            )
        elif v["currency_given"] and v["currency"] != target.currency:
            problem = f"payment {ref} is in {target.currency}, not {v['currency']}"
        elif v["amount_minor"] not in (None, int(target.amount_minor)):
            problem = (
                f"a reversal returns the whole payment: {ref} was "
                f"{_fmt(int(target.amount_minor), target.currency)}"
            )
        if problem is not None:
            run.reject(p.line, "reverses", problem)
            continue
        assert target is not None
        reversed_now[ref] = p.external_id
        back: list[tuple[int, int]] = []
        for rid, part in paid.get(int(target.id), []):
            restored = min(part, int(receivables[rid].amount_minor) - balance[rid])
            balance[rid] += restored
            back.append((rid, part))
        reopened.append(back)
        reversals.append(
            {
                "company_id": run.company_id,
                "customer_id": int(target.customer_id),
                "external_id": p.external_id,
                "receivable_id": target.receivable_id,
                "paid_on": v["paid_on"],
                "currency": target.currency,
                "amount_minor": -int(target.amount_minor),
                "unallocated_minor": -int(target.unallocated_minor),
                "reverses_id": int(target.id),
                "created_at": run.now,
            }
        )
        evidence.append(
            EvidenceEntry(
                "payment.reversed",
                f"payment:{int(target.id)}",
                int(target.customer_id),
                run.now,
                {
                    "payment": ref,
                    "reversal": p.external_id,
                    "returned_on": v["paid_on"].isoformat(),
                    "amount": str(Money.from_minor(int(target.amount_minor), target.currency)),
                    "reopened": [
                        {
                            "receivable": receivables[rid].external_id,
                            "amount": _fmt(part, target.currency),
                        }
                        for rid, part in back
                    ],
                },
            )
        )

    if reversals:
        conn.execute(insert(pay), reversals)
        ids = {
            r.external_id: int(r.id)
            for r in conn.execute(
                select(pay.c.id, pay.c.external_id).where(
                    pay.c.company_id == run.company_id,
                    pay.c.external_id.in_([x["external_id"] for x in reversals]),
                )
            )
        }
        rows = [
            {"payment_id": ids[x["external_id"]], "receivable_id": rid, "amount_minor": -part}
            for x, back in zip(reversals, reopened, strict=True)
            for rid, part in back
        ]
        if rows:
            conn.execute(insert(alloc), rows)
        touched = sorted({rid for back in reopened for rid, _ in back})
        _bulk_update(
            conn,
            rec,
            ("balance_minor", "updated_at"),
            [{"id": rid, "balance_minor": balance[rid], "updated_at": run.now} for rid in touched],
        )
        append(conn, run.company_id, evidence)
    run.inserted += len(reversals)


_Parse = Callable[[_Fields, _Run], dict[str, Any]]
_Store = Callable[[Connection, _Run, list[_Parsed]], None]

_HANDLERS: dict[str, tuple[_Parse, _Store]] = {
    "customers": (_parse_customer, _store_customers),
    "contacts": (_parse_contact, _store_contacts),
    "receivables": (_parse_receivable, _store_receivables),
    "payments": (_parse_payment, _store_payments),
}
