"""Helpers shared by the command-line modules: options, errors, output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cobro.errors import CobroError, ConfigError

if TYPE_CHECKING:
    from cobro.workspace import Workspace


def _console(stderr: bool) -> Console:
    """A console for a terminal, or, when the stream is piped or redirected, one that
    never wraps or cuts a line (a key, a path, an error stays whole for the reader)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=100_000)


out = _console(stderr=False)
err = _console(stderr=True)


# Exit codes (README, "Exit codes"): 0 when everything due was sent.
NOT_SENT = 1  # messages that were due failed or are still being retried
BAD_INPUT = 2  # bad input, configuration, workspace or database: nothing was done
MAX_ID = 2**31 - 1  # the largest id a row can have (PostgreSQL's integer columns)


# The --quiet option of the commands that show progress (cobro.cli.progress).
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress and no summary (for cron); problems still go to stderr."
    ),
]


@dataclass
class Options:
    workspace: Path
    db: str | None


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def parse_date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not a date (YYYY-MM-DD)", 2)


def open_ws(ctx: typer.Context) -> Workspace:
    from cobro.workspace import open_workspace

    opts: Options = ctx.obj
    try:
        return open_workspace(opts.workspace, opts.db, recall=True)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail(f"{len(exc.problems)} configuration problem(s); nothing was done", 2)
    except CobroError as exc:
        fail(str(exc), 2)


def add_row(table: Table, *values: object) -> None:
    """A table row whose cells are shown as they are (data is never read as markup)."""
    table.add_row(*(Text("" if v is None else str(v)) for v in values))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=None, default=str) + "\n")


def report_not_sent(errors: list[str] | tuple[str, ...], failed: int, retrying: int) -> None:
    """Print each failure (it names the debtor) and exit with ``NOT_SENT`` when something
    due was not sent; return when everything was."""
    for line in errors:
        err.print(f"  {line}", highlight=False, markup=False)
    if failed or retrying:
        parts = [f"{failed} failed"] if failed else []
        parts += [f"{retrying} to be retried (`cobro dispatch` sends them)"] if retrying else []
        err.print(f"not sent: {', '.join(parts)}", highlight=False, markup=False)
        raise typer.Exit(NOT_SENT)


def by_channel(counts: dict[str, int]) -> str:
    """``"; delivered 2 by email, 1 by sms"``, or nothing when there were no deliveries."""
    if not counts:
        return ""
    return "; delivered " + ", ".join(f"{n} by {ch}" for ch, n in sorted(counts.items()))
