"""Running the ``cobro`` command as a user would: a subprocess with a bare environment."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
COBRO = [sys.executable, "-m", "cobro"]


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
        env={**ENV, "HOME": str(ws), **(env or {})},
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


def start_serving(ws: Path, *args: str) -> tuple[subprocess.Popen[str], int, str]:
    """``cobro --workspace WS serve --port PORT ARGS`` on a free port: the process, the port
    and the line it printed once it listens. A free port can be taken by another process
    (another pytest-xdist worker) before the server binds it: then it starts on another."""
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [*COBRO, "--workspace", str(ws), "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**ENV, "HOME": str(ws)},
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
