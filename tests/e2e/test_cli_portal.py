"""``cobro portal link`` and ``cobro serve`` as a user runs them: a link printed for staff,
and the page it opens served by a real server process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .cli import ENV, copy_workspace, run_cobro, start_serving

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_portal.py")


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose run sent B1 a claim; B2 has never been sent one."""
    parent = tmp_path_factory.mktemp("cli-portal")
    root = parent / "acme"
    run_cobro(parent, "init", str(root))
    write(
        root / "customers.csv",
        """
external_id,name,kind,language,email
B1,Ferretería Norte S.L.,business,en,pagos@norte.example
B2,Atlantic Tools Ltd,business,en,ap@atlantic.example
""",
    )
    write(
        root / "receivables.csv",
        """
external_id,customer,number,due_on,currency,amount
R1,B1,F-001,2026-03-01,EUR,1200.00
""",
    )
    run_cobro(root, "import", "customers", "customers.csv")
    run_cobro(root, "import", "receivables", "receivables.csv")
    run_cobro(root, "run", "--date", "2026-02-22")  # phase 00: 7 days before due
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


@pytest.fixture
def server(ws: Path) -> Iterator[str]:
    """``cobro serve`` on a free port; its base URL once it says it is listening."""
    proc, port, line = start_serving(ws)
    try:
        assert f"on http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_portal_link_prints_a_fresh_link_to_the_debtors_latest_claim(ws: Path) -> None:
    url = run_cobro(ws, "portal", "link", "B1").stdout.strip()
    assert url.startswith("https://pagos.demo.example/portal/") and " " not in url

    data = json.loads(
        run_cobro(ws, "portal", "link", "B1", "--json", "--base", "http://x.test/portal").stdout
    )
    assert data["customer"] == "B1" and data["phase"] == "b2b/00"
    assert data["phase_name"] == "Debt due in the next 7 days"
    assert data["date"] == "2026-02-22"
    assert data["url"].startswith("http://x.test/portal/")
    assert data["expires_at"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("B2",), "B2: no such debtor, or no claim has been sent to them yet"),
        (("NOPE",), "NOPE: no such debtor, or no claim has been sent to them yet"),
        (("B1", "--base", "ftp://x"), "--base: 'ftp://x' is not an http(s) URL"),
    ],
)
def test_portal_link_refuses_what_it_cannot_link_to(
    ws: Path, args: tuple[str, ...], message: str
) -> None:
    proc = run_cobro(ws, "portal", "link", *args, ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {message}"


def test_serve_answers_the_link_printed_for_a_debtor(ws: Path, server: str) -> None:
    url = run_cobro(ws, "portal", "link", "B1", "--base", f"{server}/portal").stdout.strip()

    page = httpx.get(url, timeout=30)

    assert page.status_code == 200
    assert "Ferretería Norte S.L." in page.text and "F-001" in page.text
    assert "Your open items" in page.text  # the debtor's language
    assert httpx.get(f"{server}/healthz", timeout=30).text == "ok\n"
    assert httpx.get(f"{server}/portal/not-a-token", timeout=30).status_code == 404
    assert "server" not in page.headers  # uvicorn does not announce itself


def test_serve_on_a_port_in_use_says_so_on_one_line(ws: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run_cobro(ws, "serve", "--port", str(port), ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: --port {port}: another program is listening on 127.0.0.1:{port}"
    )


def test_serve_help_is_quick_to_load() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cobro", "serve", "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0 and "--port" in proc.stdout
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert not loaded & {"uvicorn", "fastapi", "starlette", "sqlalchemy", "jinja2"}


def test_the_demo_ends_with_a_link_that_opens_a_debtors_page(tmp_path: Path) -> None:
    import re

    import anyio

    from cobro.web.app import create_app
    from cobro.workspace import open_workspace

    root = tmp_path / "demo"
    proc = run_cobro(tmp_path, "demo", str(root), "--days", "30", "--debtors", "20")
    found = re.search(
        r"open http://127\.0\.0\.1:8000(/portal/\S+) \((\w+)'s latest claim", proc.stdout
    )
    assert found, proc.stdout
    ws = open_workspace(root)
    try:

        async def get() -> httpx.Response:
            transport = httpx.ASGITransport(app=create_app(ws))
            async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as c:
                return await c.get(found.group(1))

        page = anyio.run(get)
    finally:
        ws.close()
    assert page.status_code == 200
    assert f"({found.group(2)})" in page.text
