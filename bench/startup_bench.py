"""Start-up benchmark: how long ``cobro --help`` and ``cobro contacts list`` take to run.

1. A fresh workspace in ``bench/out/startup`` made with ``cobro init``; one ``cobro
   contacts list`` creates and migrates its database. Each command is run once more with
   bytecode writing on, so that every module is read from its ``.pyc`` as after an
   ordinary install (``PYTHONDONTWRITEBYTECODE`` would otherwise make each run compile
   Cobro's own modules again).
2. ``--runs`` rounds; each round runs, one after the other, each in a new process:
   * **python**: ``python -c pass``, the interpreter's own start-up (the baseline);
   * **typer**: ``python -c "import typer"``, the command-line library alone;
   * **help**: ``cobro --help`` (the venv's ``cobro`` script), output to /dev/null;
   * **contacts_list**: ``cobro contacts list`` in the workspace: configuration validated,
     database opened, a table printed.
   Wall time of each process (``time.perf_counter`` around it) and its CPU time (user +
   system, from ``RUSAGE_CHILDREN``); medians over the rounds.
3. With ``--instructions`` (needs valgrind), one more run of each under
   ``valgrind --tool=callgrind``: instructions executed, a measure that stays the same
   on a busy machine.

One stdout line: {"bench": "startup", "runs", "loadavg", "python_ms", "typer_ms",
"help_ms", "contacts_list_ms", "help_cpu_ms", "contacts_list_cpu_ms", and with
``--instructions`` "python_ginstr", "typer_ginstr", "help_ginstr",
"contacts_list_ginstr"} (milliseconds; instructions in billions; ``loadavg`` is the
1-minute load average at the end).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import OUT_DIR, emit, median, say

PYTHON = sys.executable
COBRO = str(Path(PYTHON).parent / "cobro")


def commands(ws: Path) -> dict[str, list[str]]:
    return {
        "python": [PYTHON, "-c", "pass"],
        "typer": [PYTHON, "-c", "import typer"],
        "help": [COBRO, "--help"],
        "contacts_list": [COBRO, "--workspace", str(ws), "contacts", "list"],
    }


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``argv`` to completion (output discarded): (wall s, CPU s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def instructions(argv: list[str]) -> float:
    """Instructions executed by ``argv``, in billions (callgrind)."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind {' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return round(int(found[1]) / 1e9, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--instructions", action="store_true", help="also count them")
    args = parser.parse_args()

    root = OUT_DIR / "startup"
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    ws = root / "ws"
    subprocess.run([COBRO, "init", str(ws)], check=True, stdout=subprocess.DEVNULL)
    cases = commands(ws)
    writing = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for argv in cases.values():  # the database migrated, every .pyc written
        run(argv, writing)

    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for n in range(args.runs):
        for name, argv in cases.items():
            w, c = run(argv)
            wall[name].append(w)
            cpu[name].append(c)
        say(
            f"round {n + 1}/{args.runs}: "
            + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in wall.items())
        )
    result: dict[str, object] = {"bench": "startup", "runs": args.runs}
    for name in cases:
        result[f"{name}_ms"] = round(median(wall[name]) * 1000, 1)
    for name in ("help", "contacts_list"):
        result[f"{name}_cpu_ms"] = round(median(cpu[name]) * 1000, 1)
    if args.instructions:
        for name, argv in cases.items():
            result[f"{name}_ginstr"] = instructions(argv)
            say(f"{name}: {result[f'{name}_ginstr']} G instructions")
    result["loadavg"] = float(Path("/proc/loadavg").read_text().split()[0])
    emit(result)


if __name__ == "__main__":
    main()
