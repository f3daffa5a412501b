"""A real browser for the web pages: Playwright driving Debian's chromium, and
``cobro serve`` running in its own process.

Chromium is the Debian package (``apt install chromium``; ``make`` installs it when it runs
as root): ``playwright install`` downloads browsers, which this project does not do. With
``CI=true`` a missing chromium fails the run instead of skipping these tests. Screenshots
are kept in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.cli import COBRO, ENV, clock_env

CHROMIUM = Path(os.environ.get("COBRO_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Without these, chromium reaches out to Google's services at start (refused offline).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = {"phone": 390, "desktop": 1280}


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"no chromium at {CHROMIUM}: install Debian's package (`apt install chromium`) "
        "or set COBRO_TEST_CHROMIUM"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for the tests of one module: Playwright's synchronous API runs an event
    loop in this thread while it is open, so it is closed before other tests run theirs."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artifact; its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """``cobro serve`` on a workspace, in its own process."""

    url: str
    process: subprocess.Popen[str]
    log: list[str]


def serve(ws: Path, env: dict[str, str] | None = None) -> Served:
    """Start ``cobro serve`` for ``ws`` and return once it accepts requests (it says so
    on standard output). A free port can be taken by another process (another
    pytest-xdist worker) before the server binds it: then it starts again on another."""
    for _attempt in range(3):
        port = free_port()
        process = subprocess.Popen(
            [*COBRO, "--workspace", str(ws), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **ENV,
                "HOME": str(ws),
                "PYTHONPATH": os.pathsep.join(sys.path),
                **clock_env(),
                **(env or {}),
            },
            cwd=ws,
        )
        assert process.stdout is not None
        seen: list[str] = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Serving "):  # printed once the socket listens
                break
        else:
            process.wait(30)
            if f"another program is listening on 127.0.0.1:{port}" in "".join(seen):
                continue
            raise AssertionError("cobro serve did not start:\n" + "".join(seen))
        # Keep reading its log, so that a full pipe never stops the server.
        threading.Thread(target=seen.extend, args=(process.stdout,), daemon=True).start()
        return Served(f"http://127.0.0.1:{port}", process, seen)
    raise AssertionError("cobro serve found each free port taken:\n" + "".join(seen))


def stop(served: Served) -> None:
    served.process.send_signal(signal.SIGINT)
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait(30)
