"""One import as it goes: its counts and problems, each row read and checked, and the
queries the writers of every kind share (the rows already stored under the batch's
external ids, the customers they name, the payments already recorded, updates in bulk)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update

from cobro.intake.formats import PLAIN, Reading
from cobro.intake.import_cells import Fields
from cobro.intake.import_report import ImportReport, RowProblem
from cobro.store import tables as t
from cobro.workspace import Workspace


@dataclass
class Parsed:
    line: int
    external_id: str
    values: dict[str, Any]
    fields: Fields


@dataclass
class Run:
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


def bulk_update(
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


def customer_ids_of(conn: Connection, run: Run, refs: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    rows = conn.execute(
        select(t.customers.c.id, t.customers.c.external_id).where(
            t.customers.c.company_id == run.company_id, t.customers.c.external_id.in_(wanted)
        )
    )
    return {r.external_id: int(r.id) for r in rows}


def no_customer(ref: str) -> str:
    return f"no customer with external_id {ref!r} (import the customers first)"


def existing_rows(
    conn: Connection, run: Run, table: Table, batch: list[Parsed], *, lock: bool = False
) -> dict[str, dict[str, Any]]:
    stmt = select(table).where(
        table.c.company_id == run.company_id,
        table.c.external_id.in_([p.external_id for p in batch]),
    )
    if lock:
        stmt = stmt.with_for_update()
    return {r.external_id: dict(r._mapping) for r in conn.execute(stmt)}


def recorded_payments(conn: Connection, run: Run, external_ids: Sequence[str]) -> dict[str, Any]:
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
