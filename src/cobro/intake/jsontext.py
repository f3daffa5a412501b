"""JSON read within limits: nesting at most ``MAX_DEPTH`` levels, found without recursion.

Python's decoder recurses once per level, so a value nested a hundred thousand levels
deep ends in ``RecursionError``. ``too_deep_at`` walks the text's brackets with a
counter instead, and ``loads`` calls it before decoding any text that holds more
brackets than the limit, so ordinary records never pay for the walk.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32

# A JSON string (skipped whole, so that brackets inside it do not count) or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class TooDeep(ValueError):
    """A JSON value nested more than ``MAX_DEPTH`` levels; ``pos`` is where it went too deep."""

    def __init__(self, pos: int, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"nested more than {limit} levels deep")
        self.pos = pos


def too_deep_at(text: str, limit: int = MAX_DEPTH) -> int | None:
    """Where ``text`` goes deeper than ``limit`` levels of arrays and objects, or None."""
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return match.start()
        elif token in "]}":
            depth = max(depth - 1, 0)
    return None


def end_of_value(text: str, start: int) -> int | None:
    """The end of the array or object starting at ``start``; None if it does not end."""
    depth = 0
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth <= 0:
                return match.end()
    return None


def depth(value: object) -> int:
    """How many levels of arrays and objects ``value`` has (a scalar has 0)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads(text: str, *, exact_numbers: bool = False, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` refusing values nested deeper than ``limit`` (``TooDeep``).

    With ``exact_numbers`` numbers are kept as their text, so amounts are never floats.
    """
    if text.count("[") + text.count("{") > limit:
        at = too_deep_at(text, limit)
        if at is not None:
            raise TooDeep(at, limit)
    if exact_numbers:
        return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
    return json.loads(text)
