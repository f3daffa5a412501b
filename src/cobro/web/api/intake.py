"""Records coming in through the API, one or a batch, read by the same importer as a CSV
file: the same checks, the same per-row errors (row index, field, problem), good rows
kept, an existing ``external_id`` updated (upsert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from starlette.concurrency import run_in_threadpool

from cobro.errors import ImportError_
from cobro.intake.columns import COLUMNS
from cobro.intake.importer import ImportReport, import_records
from cobro.web.api.auth import Caller
from cobro.web.api.problems import FieldError, Problem

MAX_BATCH = 10_000
ATTRIBUTES = "attributes"  # custom attributes: the CSV's attr_NAME columns


class RowError(BaseModel):
    row: int = Field(description="Index of the row in `rows` (0-based).")
    field: str
    problem: str


class BatchReport(BaseModel):
    inserted: int
    updated: int
    unchanged: int
    rejected: list[RowError]
    warnings: list[RowError] = Field(
        default=[],
        description="Rows kept with a value left out (an unusable email or phone), and why.",
    )


def _cells(record: BaseModel) -> dict[str, str | None]:
    cells: dict[str, str | None] = {}
    for name, value in record.model_dump(exclude_unset=True, by_alias=True).items():
        if name == ATTRIBUTES:
            for attr, attr_value in (value or {}).items():
                cells[f"attr_{attr}"] = None if attr_value is None else str(attr_value)
        elif isinstance(value, list):
            cells[name] = "|".join(str(v) for v in value)
        else:
            cells[name] = None if value is None else str(value)
    return cells


def _numbered_import(
    who: Caller, kind: str, records: Sequence[tuple[int, BaseModel]]
) -> ImportReport:
    """Import ``(row index, record)`` pairs for the caller's company. A column the importer
    requires but a record leaves out is given empty, so that the row, not the batch, is
    refused."""
    required = [col for col, needed in COLUMNS[kind].items() if needed]
    rows = []
    for i, record in records:
        cells = _cells(record)
        for col in required:
            cells.setdefault(col, None)
        rows.append((i, cells))
    try:
        return import_records(who.state.ws, kind, rows, who.state.now(), "api", unit="row")
    except ImportError_ as exc:  # the whole request refused (nothing was kept)
        raise Problem(422, "invalid-record", str(exc).removeprefix("api: ")) from None


async def take(who: Caller, kind: str, records: Sequence[BaseModel]) -> ImportReport:
    """Import ``records`` of ``kind`` for the caller's company (rows numbered from 0)."""
    numbered = list(enumerate(records))
    return await run_in_threadpool(_numbered_import, who, kind, numbered)


def batch_report(report: ImportReport, refused: Sequence[RowError] = ()) -> BatchReport:
    """The report of a batch: the importer's counts, its problems and ``refused`` (rows
    that did not get as far as the importer) by row."""
    rejected = [RowError(row=p.line, field=p.field, problem=p.problem) for p in report.rejected]
    return BatchReport(
        inserted=report.inserted,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=sorted([*refused, *rejected], key=lambda e: e.row),
        warnings=[RowError(row=p.line, field=p.field, problem=p.problem) for p in report.warnings],
    )


class RowOf:
    """A batch row: any JSON object, documented as ``model`` and checked against it row by
    row (``take_rows``), so that one bad row is refused alone rather than the batch."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(self.model.__pydantic_core_schema__)


def _row_errors(row: int, exc: ValidationError) -> list[RowError]:
    return [
        RowError(
            row=row,
            field=".".join(str(part) for part in e.get("loc", ())),
            problem=str(e.get("msg", "invalid")).removeprefix("Value error, "),
        )
        for e in exc.errors()
    ]


async def take_rows(
    who: Caller, kind: str, model: type[BaseModel], rows: Sequence[Any]
) -> BatchReport:
    """Check each of ``rows`` against ``model`` and import the good ones as ``kind``; every
    refused row is reported with its index, field and problem, the others are kept."""

    def work() -> BatchReport:
        valid: list[tuple[int, BaseModel]] = []
        refused: list[RowError] = []
        for i, raw in enumerate(rows):
            try:
                valid.append((i, model.model_validate(raw)))
            except ValidationError as exc:
                refused.extend(_row_errors(i, exc))
        return batch_report(_numbered_import(who, kind, valid), refused)

    return await run_in_threadpool(work)


async def take_one(who: Caller, kind: str, record: BaseModel) -> ImportReport:
    """Import one record; refused as 422 problem details naming its fields."""
    report = await take(who, kind, [record])
    if report.rejected:
        raise Problem(
            422,
            "invalid-record",
            f"the {kind[:-1]} was refused; nothing was changed",
            [
                FieldError(field=f"body.{p.field}" if p.field else "body", problem=p.problem)
                for p in report.rejected
            ],
        )
    return report


def created_status(report: ImportReport) -> int:
    """201 when the record is new, 200 when an existing one was updated or unchanged."""
    return 201 if report.inserted else 200


def rows_field(model: Any) -> Any:
    return Field(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} records.")
