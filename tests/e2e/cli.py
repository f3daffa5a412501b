"""Running the ``cobro`` command as a user would: a subprocess with a bare environment."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cheap_passwords import CHEAP

ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", **CHEAP}
COBRO = [sys.executable, "-m", "cobro"]
CLOCK = "COBRO_NOW"


# How far the clock of the ``cobro`` processes started now is from the real one.
_shift: list[timedelta] = []


@contextmanager
def clock_set_to(day: date, timezone: str = "Europe/Madrid") -> Iterator[None]:
    """Meanwhile, every ``cobro`` started (commands and servers) reads a clock that was at
    noon of ``day`` in the company's time zone when this began, and runs on: a module
    dated around today sees the same day in the tests and in the program whatever the
    real hour (midnight in Madrid is 23:00 UTC), and what one command records comes
    after what the previous one did."""
    noon = datetime.combine(day, time(12), ZoneInfo(timezone))
    _shift.append(noon - datetime.now(UTC))
    try:
        yield
    finally:
        _shift.pop()


def clock_env() -> dict[str, str]:
    """``COBRO_NOW`` for a process started now, while ``clock_set_to`` holds."""
    if not _shift:
        return {}
    return {CLOCK: (datetime.now(UTC) + _shift[-1]).isoformat()}


def run_cobro(
    ws: Path,
    *args: str,
    ok: bool = True,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``cobro --workspace WS ARGS`` in WS (when it exists), HOME=WS, plus ``env``; with
    ``ok`` it must exit 0."""
    proc = subprocess.run(
        [*COBRO, "--workspace", str(ws), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**ENV, "HOME": str(ws), **clock_env(), **(env or {})},
        cwd=ws if ws.exists() else None,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def copy_workspace(built: Path, to: Path) -> Path:
    """A copy of the workspace ``built`` at ``to``: its files, database and keys as the
    commands that built it left them. A module builds its starting workspace once with the
    real commands, and each test works on a copy of its own."""
    shutil.copytree(built, to, symlinks=True)
    return to


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serving(
    ws: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int, str]:
    """``cobro --workspace WS serve --port PORT ARGS`` on a free port (plus ``env``): the
    process, the port and the first line it printed once it listens. A free port can be
    taken by another process (another pytest-xdist worker) before the server binds it:
    then it starts on another."""
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [*COBRO, "--workspace", str(ws), "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**ENV, "HOME": str(ws), **(env or {})},
            cwd=ws,
        )
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()  # printed once the socket listens
        if line:
            return proc, port, line
        proc.wait(timeout=30)
        error = proc.stderr.read()
        if f"another program is listening on 127.0.0.1:{port}" not in error:
            raise AssertionError(f"cobro serve did not start: {error}")
    raise AssertionError("cobro serve found each free port taken")
