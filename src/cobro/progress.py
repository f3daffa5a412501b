"""How long work reports how far it has gone: a small port that the command line fills in.

The engine calls ``start`` when a phase begins (with how many steps it has, when
known), ``advance`` as steps are done, and ``finish`` with a one-line summary; it
never prints. ``SILENT`` does nothing, for callers that do not watch.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total: int | None = None) -> None:
        """A phase begins: ``plan``, ``send``, ``import``, ``simulate``..."""

    def advance(self, done: int, detail: str = "") -> None:
        """``done`` steps of the phase are done; ``detail`` says more (e.g. per channel)."""

    def finish(self, summary: str) -> None:
        """The phase is over; ``summary`` says what it did, in one line."""


class _Silent:
    def start(self, phase: str, total: int | None = None) -> None:
        pass

    def advance(self, done: int, detail: str = "") -> None:
        pass

    def finish(self, summary: str) -> None:
        pass


SILENT: Progress = _Silent()
