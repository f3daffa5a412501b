"""Reading an import file into rows: the CSV header and rows or the JSON objects, each with
its line (or record number), the columns renamed by a mapping, and the columns checked
against the kind's before anything is written."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from cobro.config.schema import ImportMapping
from cobro.errors import ImportError_
from cobro.intake import jsontext, readers
from cobro.intake.columns import ATTR_PREFIX, COLUMNS, KINDS, is_column
from cobro.intake.formats import Reading
from cobro.intake.import_report import Row, RowProblem
from cobro.workspace import Workspace


def file_reading(ws: Workspace, mapping: ImportMapping | None, *, text_cells: bool) -> Reading:
    """How a file's amounts and dates are read: as declared, else (for text files such as
    CSV, whose cells are all text) also as the company's locale writes them."""
    return Reading(
        locale=ws.config.company.locale if text_cells else None,
        decimal=mapping.decimal if mapping else None,
        date_format=mapping.date_format if mapping else None,
    )


def mapped_rows(
    kind: str,
    mapping: ImportMapping | None,
    columns: Sequence[str],
    rows: Iterable[Row],
    where: str,
) -> tuple[list[str], Iterable[Row]]:
    """The columns and rows of a file as Cobro names them.

    A column the mapping names is read as its Cobro column; a column already named as
    Cobro's is read as it is (unless the mapping reads that Cobro column from another);
    with a mapping, every other column is left out.
    """
    if mapping is None or not mapping.columns:
        return list(columns), rows
    renames = {norm_key(header): col for col, header in mapping.columns.items()}
    missing = [h for h in mapping.columns.values() if norm_key(h) not in columns]
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


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ImportError_(f"unknown import kind {kind!r}: use one of {', '.join(KINDS)}")


def norm_key(key: str) -> str:
    key = str(key).strip()
    if key[: len(ATTR_PREFIX)].lower() == ATTR_PREFIX:
        return ATTR_PREFIX + key[len(ATTR_PREFIX) :]
    return key.lower()


def union_keys(rows: Sequence[tuple[int, Mapping[str, object]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def check_columns(kind: str, columns: Sequence[str], where: str, *, required: bool) -> None:
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


def csv_file(path: Path, source: str) -> tuple[list[str], Iterator[Row]]:
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
) -> Iterator[Row]:
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
    names = [norm_key(c) for c in cells]
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


def json_rows(records: Iterator[readers.Record], source: str, unit: str) -> Iterator[Row]:
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
            yield number, {norm_key(k): v for k, v in value.items()}
