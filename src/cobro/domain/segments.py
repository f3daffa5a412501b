"""Segments: named filters over debtor attributes, amounts and days overdue (pure specs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """Debtors matching every given condition; ``None`` means "any".

    Amounts are minor units of the company currency; overdue amounts and days
    are measured on the date the segment is evaluated.
    """

    name: str
    description: str | None = None
    kind: str | None = None
    groups: tuple[str, ...] = ()
    language: str | None = None
    tags: tuple[str, ...] = ()  # every tag must be present
    attributes: tuple[tuple[str, str], ...] = ()  # custom fields, compared as text
    policy: str | None = None
    blocked: bool | None = None
    overdue_min: int | None = None
    overdue_max: int | None = None
    open_min: int | None = None
    open_max: int | None = None
    days_overdue_min: int | None = None
    days_overdue_max: int | None = None

    @property
    def needs_overdue(self) -> bool:
        """Whether membership requires some overdue debt."""
        return bool(
            (self.overdue_min is not None and self.overdue_min > 0)
            or self.days_overdue_min is not None
        )
