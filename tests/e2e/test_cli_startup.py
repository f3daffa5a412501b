"""A command imports only what it uses: the PDF, SMS, push and HTTP libraries (about a
second of start-up between them) are loaded by the commands that send or render with them,
and a command's module is imported (and the command built) only when it is run or a help
page lists it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .cli import ENV, copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_startup.py")

HEAVY = (
    "weasyprint",
    "twilio",
    "pywebpush",
    "py_vapid",
    "aiohttp",
    "httpx",
    "requests",
    "fastapi",
    "starlette",
    "uvicorn",
)
# Runs the command as `python -m cobro` does, then lists every top-level module loaded.
PROBE = """
import json, runpy, sys

sys.argv = ["cobro", *sys.argv[1:]]
try:
    runpy.run_module("cobro", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def loaded(ws: Path, *args: str) -> set[str]:
    """The top-level packages the command loaded."""
    return {name.split(".")[0] for name in loaded_modules(ws, *args)}


def loaded_modules(ws: Path, *args: str) -> set[str]:
    """Every module the command loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--workspace", str(ws), *args],
        capture_output=True,
        text=True,
        env={**ENV, "HOME": str(ws)},
        cwd=ws,
        timeout=120,
    )
    marker = proc.stderr.rpartition("\nMODULES ")
    assert marker[1], proc.stderr
    return set(json.loads(marker[2]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("cli-startup")
    root = parent / "acme"
    run_cobro(parent, "init", str(root))
    run_cobro(root, "contacts", "list")  # the database exists and is migrated
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


# The modules of the command-line groups other than `contacts` (cobro.cli.events).
OTHER_COMMANDS = {
    "cobro.cli.api",
    "cobro.cli.channels",
    "cobro.cli.demo",
    "cobro.cli.dispatch",
    "cobro.cli.progress",
    "cobro.cli.responses",
    "cobro.cli.staff",
    "cobro.cli.users",
    "cobro.cli.web",
    "cobro.cli.webhooks",
    "cobro.cli.workers",
}


def test_help_loads_neither_the_database_nor_any_channel_or_pdf_library(ws: Path) -> None:
    modules = loaded(ws, "--help")
    assert "typer" in modules  # the probe did run the command
    assert not modules & {*HEAVY, "sqlalchemy", "alembic", "pydantic", "jinja2"}
    # nor the validators of the configuration, nor what only sending or progress needs
    assert not modules & {"email_validator", "babel", "phonenumbers", "yaml", "multiprocessing"}
    assert "rich.progress" not in loaded_modules(ws, "--help")


def test_listing_contacts_loads_no_channel_pdf_or_migration_library(ws: Path) -> None:
    modules = loaded(ws, "contacts", "list")
    assert "sqlalchemy" in modules
    assert not modules & {*HEAVY, "alembic"}  # a database already migrated is left alone
    # nor what help pages and the other commands use
    assert not modules & {"multiprocessing", "markdown_it", "pygments"}
    # the starter's plain addresses are checked without email-validator (cobro.domain.addresses)
    assert not modules & {"email_validator", "idna"}


def test_a_command_that_does_not_read_the_configuration_validates_it_once(ws: Path) -> None:
    # `built` listed the contacts once: cobro.yaml was validated and recorded then
    # (cobro.validated); the same bytes are not validated again
    assert not loaded(ws, "contacts", "list") & {"pydantic", "yaml", "babel"}
    cfg = ws / "cobro.yaml"
    good = cfg.read_text(encoding="utf-8")
    cfg.write_text(good.replace("timezone: Europe/Madrid", "timezone: Mars/Olympus"), "utf-8")
    proc = run_cobro(ws, "contacts", "list", ok=False)
    assert proc.returncode == 2
    assert "company.timezone: unknown time zone 'Mars/Olympus'" in proc.stderr
    cfg.write_text(good.replace("name: Distribuciones Demo S.L.", "name: Demo Dos S.L."), "utf-8")
    assert {"pydantic", "yaml"} <= loaded(ws, "contacts", "list")  # a new file is validated
    assert not loaded(ws, "contacts", "list") & {"pydantic", "yaml", "babel"}  # and recorded


def test_a_command_loads_no_other_command_module(ws: Path) -> None:
    modules = loaded_modules(ws, "contacts", "list")
    assert "cobro.cli.events" in modules
    assert not modules & {*OTHER_COMMANDS, "rich.progress", "typer.rich_utils"}


def test_a_mistyped_command_is_still_matched_to_the_nearest_name(ws: Path) -> None:
    proc = run_cobro(ws, "contcts", "list", ok=False)
    assert proc.returncode == 2
    assert "No such command 'contcts'. Did you mean 'contacts'?" in proc.stderr


def test_a_command_on_sqlite_does_not_load_the_postgresql_dialect(ws: Path) -> None:
    modules = loaded_modules(ws, "contacts", "list")
    assert "sqlalchemy.dialects.sqlite" in modules
    assert not {m for m in modules if m.startswith("sqlalchemy.dialects.postgresql")}


def test_an_email_only_run_loads_no_sms_push_or_pdf_library(ws: Path) -> None:
    modules = loaded(ws, "run", "--date", "2026-02-22")
    assert "aiosmtplib" in modules
    assert not modules & set(HEAVY)
