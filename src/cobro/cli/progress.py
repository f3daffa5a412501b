"""Progress of long commands: a live Rich display on a terminal, one line per phase otherwise.

``progress_for(quiet)`` picks how: with ``--quiet`` (cron) nothing is shown; on a
terminal each phase has a live bar (steps done of all, rate, time left, and what
it has done so far, e.g. per channel), replaced by its summary line when it ends;
when standard error is not a terminal only the summary lines are written, one per
phase, as each phase ends.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from cobro.progress import SILENT, Progress


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


class PhaseLines:
    """One line per phase, written when it ends: what it did, how long it took, how fast."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.phase = ""
        self.began = 0.0
        self.done = 0

    def start(self, phase: str, total: int | None = None) -> None:
        self.phase, self.began, self.done = phase, time.monotonic(), 0

    def advance(self, done: int, detail: str = "") -> None:
        self.done = done

    def finish(self, summary: str) -> None:
        took = time.monotonic() - self.began
        rate = f", {self.done / took:,.0f}/s" if self.done and took > 0 else ""
        self.console.print(
            f"{self.phase}: {summary} ({took:.1f} s{rate})", markup=False, highlight=False
        )


class LiveProgress(PhaseLines):
    """A live bar per phase while it runs, then its summary line."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._live: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, phase: str, total: int | None = None) -> None:
        super().start(phase, total)
        self._live = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=self.console,
            transient=True,
        )
        self._live.start()
        self._task = self._live.add_task(phase, total=total, detail="")

    def advance(self, done: int, detail: str = "") -> None:
        super().advance(done, detail)
        if self._live is not None and self._task is not None:
            self._live.update(self._task, completed=done, detail=detail)

    def finish(self, summary: str) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        super().finish(summary)


def progress_for(quiet: bool, console: Console) -> Progress:
    """Nothing with ``quiet``; a live display on a terminal; else a line per phase."""
    if quiet:
        return SILENT
    if console.is_terminal:
        return LiveProgress(console)
    return PhaseLines(console)
