"""What an import tells: each rejected row's line, field and reason, and the counts of rows
inserted, updated, unchanged and rejected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
Row = tuple[int, Mapping[str, object]] | RowProblem


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
