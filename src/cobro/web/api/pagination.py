"""Cursor pagination: a list answers ``data`` and ``next_cursor``, an opaque string that
asks for the rows after the last one given (stable while rows are added)."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from cobro.web.api.problems import FieldError, Problem

T = TypeVar("T")
MAX_LIMIT = 500
# A cursor carries row ids: INTEGER columns, 32 bits on PostgreSQL. A larger number is
# no cursor of a list (and would make the database refuse the query).
MAX_INT = 2**31 - 1


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[type, ...]) -> list[Any] | None:
    """The values a cursor carries, each checked against ``shape``; None for no cursor."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        ok = (
            isinstance(values, list)
            and len(values) == len(shape)
            and all(
                isinstance(v, kind)
                and not isinstance(v, bool)
                and (not isinstance(v, int) or -MAX_INT <= v <= MAX_INT)
                and (not isinstance(v, str) or "\x00" not in v)
                for v, kind in zip(values, shape, strict=True)
            )
        )
    except ValueError:
        ok = False
    if not ok:
        raise Problem(
            400,
            "invalid-cursor",
            "the cursor was not given by this list; start again without one",
            [FieldError(field="query.cursor", problem="not a cursor of this list")],
        )
    assert isinstance(values, list)
    return values


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=500, description="The `next_cursor` of the previous page."),
]
