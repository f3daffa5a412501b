"""Import files read as a stream of records, in bounded memory whatever their size.

``check_utf8`` reads the bytes once (a file that is not UTF-8 is refused before
anything is written, naming the line of the first bad byte). Then each reader
yields ``(line, record)`` pairs one at a time: a CSV row's cells, or a JSON value;
a record that cannot be read on its own — a CSV row with a field over
``MAX_FIELD`` characters or a line over ``MAX_LINE``, a ``.jsonl`` line that is
not JSON or is nested too deeply — comes as ``(line, problem)`` with the problem's
text, and the records around it are read as usual. What makes a whole file
unreadable (a ``.json`` file that is not one valid array) raises ``ImportError_``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

from cobro.errors import ImportError_
from cobro.intake.jsontext import MAX_DEPTH, TooDeep, end_of_value
from cobro.intake.jsontext import loads as json_loads

CHUNK = 1024 * 1024
MAX_LINE = 1024 * 1024  # characters of one physical line (CSV, JSON Lines)
MAX_FIELD = 128 * 1024  # characters of one CSV field (the csv module's own limit)
MAX_RECORD = 1024 * 1024  # characters of one object of a .json array

# One record as read: its cells or JSON value, or the problem that refuses it alone.
Record = tuple[int, Any]


class Refused(str):
    """The text of a problem that refuses one record (its neighbours are read)."""


class _LineTooLong(Exception):
    pass


def check_utf8(path: Path) -> int:
    """The number of lines of ``path``; ``ImportError_`` unless it is UTF-8 text."""
    lines = 0
    carry = b""
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(CHUNK)
                data = carry + chunk
                carry = b""
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    cut = exc.end == len(data) and exc.reason == "unexpected end of data"
                    if not (chunk and cut):
                        line = lines + data.count(b"\n", 0, exc.start) + 1
                        raise ImportError_(
                            f"{path}:{line}: the file is not UTF-8 text; export or save it as UTF-8"
                        ) from None
                    carry, data = data[exc.start :], data[: exc.start]  # a character cut in two
                lines += data.count(b"\n")
                if not chunk:
                    return lines + (1 if data and not data.endswith(b"\n") else 0)
    except OSError as exc:
        raise ImportError_(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def open_text(path: Path, newline: str) -> IO[str]:
    try:
        return path.open(encoding="utf-8-sig", newline=newline)
    except OSError as exc:
        raise ImportError_(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _read_line(fh: IO[str]) -> tuple[str, int]:
    """The next physical line, and how many quotes it holds; a line over ``MAX_LINE``
    is read to its end and refused with ``_LineTooLong`` (carrying its quotes)."""
    line = fh.readline(MAX_LINE)
    if len(line) < MAX_LINE or line.endswith(("\n", "\r")):
        return line, line.count('"')
    quotes = line.count('"')
    while True:
        more = fh.readline(MAX_LINE)
        quotes += more.count('"')
        if len(more) < MAX_LINE or more.endswith(("\n", "\r")):
            raise _LineTooLong(quotes)


class _Lines:
    """The physical lines of a CSV file, counted, with the quotes seen in the current row."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.number = 0
        self.quotes = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            line, quotes = _read_line(self.fh)
        except _LineTooLong as exc:
            self.number += 1
            self.quotes += int(exc.args[0])
            raise
        if not line:
            raise StopIteration
        self.number += 1
        self.quotes += quotes
        return line

    def skip_rest_of_row(self) -> None:
        """After a row that could not be read, the lines still inside its quoted field."""
        while self.quotes % 2:
            try:
                next(self)
            except StopIteration:
                return
            except _LineTooLong:
                continue


def csv_delimiter(path: Path) -> str | None:
    """``;`` or ``,``, whichever the first non-blank line uses more; None for no such line."""
    with open_text(path, "") as fh:
        while True:
            try:
                line, _ = _read_line(fh)
            except _LineTooLong:
                return ","
            if not line:
                return None
            if line.strip():
                return ";" if line.count(";") > line.count(",") else ","


def csv_rows(path: Path, delimiter: str) -> Iterator[Record]:
    """The non-blank rows of a CSV file, each with the physical line it starts on.

    A row that cannot be read (a field over ``MAX_FIELD`` characters, a line over
    ``MAX_LINE``) comes as a ``Refused`` problem; reading resumes after its last line.
    """
    with open_text(path, "") as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=delimiter)
        while True:
            start = lines.number + 1
            lines.quotes = 0
            try:
                cells = next(reader)
            except StopIteration:
                return
            except _LineTooLong:
                lines.skip_rest_of_row()
                yield start, Refused(f"the line is longer than {MAX_LINE} characters; row refused")
                continue
            except csv.Error as exc:
                lines.skip_rest_of_row()
                problem = str(exc)
                if "field limit" in problem:
                    problem = f"a field is longer than {MAX_FIELD} characters; row refused"
                else:
                    problem = f"the row cannot be read as CSV: {problem}"
                yield start, Refused(problem)
                continue
            if any(c.strip() for c in cells):
                yield start, cells


def jsonl_values(path: Path) -> Iterator[Record]:
    """The value of every non-blank line of a JSON Lines file, numbers kept as text."""
    with open_text(path, "\n") as fh:
        number = 0
        while True:
            number += 1
            try:
                line, _ = _read_line(fh)
            except _LineTooLong:
                yield number, Refused(f"the line is longer than {MAX_LINE} characters")
                continue
            if not line:
                return
            if not line.strip():
                continue
            try:
                yield number, json_loads(line, exact_numbers=True)
            except TooDeep as exc:
                yield number, Refused(str(exc))
            except json.JSONDecodeError as exc:
                yield number, Refused(f"not valid JSON: {exc.msg}")
            except RecursionError:  # pragma: no cover - too_deep_at refuses it first
                yield number, Refused(f"nested more than {MAX_DEPTH} levels deep")


_WS = re.compile(r"[ \t\n\r]*")
_VALUE_START = frozenset('{["-0123456789tfnNI')


class _JsonArray:
    """The elements of a file holding one JSON array, decoded one at a time."""

    def __init__(self, fh: IO[str], path: Path) -> None:
        self.fh, self.path = fh, path
        self.decoder = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # the line of buf[0]

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.line_base += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _fail(self, at: int, problem: str) -> NoReturn:
        line = self.line_base + self.buf.count("\n", 0, at)
        raise ImportError_(f"{self.path}:{line}: not valid JSON: {problem}")

    def _next_char(self) -> str | None:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return None

    def _value(self) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos <= MAX_RECORD and self._more():
                    continue
                if not self.eof and (exc.pos >= len(self.buf) - 1 or "Unterminated" in exc.msg):
                    self._fail(self.pos, f"{exc.msg}, or a record over {MAX_RECORD} characters")
                self._fail(exc.pos, exc.msg)
            except RecursionError:
                found = end_of_value(self.buf, self.pos)
                if found is None:
                    if len(self.buf) - self.pos <= MAX_RECORD and self._more():
                        continue
                    self._fail(self.pos, f"nested more than {MAX_DEPTH} levels deep")
                self.pos = found
                return Refused(f"nested more than {MAX_DEPTH} levels deep")
            if end == len(self.buf) and self._more():
                continue  # a number may go on in the next chunk
            self.pos = end
            return value

    def records(self) -> Iterator[Record]:
        first = self._next_char()
        if first != "[":
            if first is not None and first in _VALUE_START:
                raise ImportError_(
                    f"{self.path}: a .json file must hold an array of objects "
                    "([{...}, {...}]); for one object per line name the file .jsonl"
                )
            self._fail(self.pos, "Expecting value")
        self.pos += 1
        if self._next_char() == "]":
            self.pos += 1
        else:
            number = 0
            while True:
                number += 1
                if self._next_char() is None:
                    self._fail(self.pos, "Expecting value")
                yield number, self._value()
                after = self._next_char()
                if after == "]":
                    self.pos += 1
                    break
                if after != ",":
                    self._fail(self.pos, "Expecting ',' delimiter")
                self.pos += 1
        if self._next_char() is not None:
            self._fail(self.pos, "Extra data")


def json_array_values(path: Path) -> Iterator[Record]:
    """The elements of a ``.json`` file's array, numbered from 1, numbers kept as text."""
    with open_text(path, "") as fh:
        yield from _JsonArray(fh, path).records()
