"""Running the ``cobro`` command as a user would: a subprocess with a bare environment."""

from __future__ import annotations

import shutil
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
