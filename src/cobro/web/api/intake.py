"""Records coming in through the API, one or a batch, read by the same importer as a CSV
file: the same checks, the same per-row errors (row index, field, problem), good rows
kept, an existing ``external_id`` updated (upsert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cobro.errors import ImportError_
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


async def take(who: Caller, kind: str, records: Sequence[BaseModel]) -> ImportReport:
    """Import ``records`` of ``kind`` for the caller's company (rows numbered from 0)."""
    rows = [(i, _cells(r)) for i, r in enumerate(records)]

    def work() -> ImportReport:
        try:
            return import_records(who.state.ws, kind, rows, who.state.now(), "api")
        except ImportError_ as exc:  # the whole request refused (nothing was kept)
            raise Problem(422, "invalid-record", str(exc).removeprefix("api: ")) from None

    return await run_in_threadpool(work)


def batch_report(report: ImportReport) -> BatchReport:
    return BatchReport(
        inserted=report.inserted,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=[RowError(row=p.line, field=p.field, problem=p.problem) for p in report.rejected],
    )


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
