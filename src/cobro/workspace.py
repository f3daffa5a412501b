"""A workspace: a directory holding cobro.yaml, the database and caught mail.

This is the bootstrap: the one place where settings become an engine, a
configuration and a company row. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cobro.errors import WorkspaceError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from cobro.config import CobroConfig

CONFIG_FILE = "cobro.yaml"
SECRET_FILE = ".cobro-secret"
# A directory holding this file is a server root: each of its subdirectories with a
# cobro.yaml is one company, and all of them share one database (docs/companies.md).
SERVER_FILE = "cobro-server.yaml"
# What `cobro init` keeps out of git: secrets, keys, personal data, caught mail.
IGNORED = (
    ".cobro-secret",
    ".cobro-evidence-key",
    "vapid_private.pem",
    "cobro.db*",
    "mail/",
    ".cobro-validated",  # cobro.validated.RECORD_FILE
)


# Sets the clock of every command and of ``cobro serve``: the time given is the time when
# the process starts, and the clock runs on from there (docs/operations.md).
CLOCK_VARIABLE = "COBRO_NOW"


def utcnow() -> datetime:
    """The clock: the real one, or the one ``COBRO_NOW`` sets. Only the command-line
    shell and the servers call it; the engine takes the time as an argument."""
    pinned = os.environ.get(CLOCK_VARIABLE)
    shift = timedelta(0)
    if pinned:  # fixed before the real time is read
        held = _held.get(pinned)
        shift = _shift(pinned) if held is None else held
    return datetime.now(UTC) + shift


# The clock of the process that started this one (``hold_clock``), by ``COBRO_NOW``.
_held: dict[str, timedelta] = {}


def clock_held() -> tuple[str, timedelta] | None:
    """``COBRO_NOW`` and how far this process's clock is from the real one, for the
    processes it starts to go on with the same clock (``hold_clock``); None on the real
    clock."""
    pinned = os.environ.get(CLOCK_VARIABLE)
    if not pinned:
        return None
    utcnow()  # fixes the shift when nothing has read the clock yet
    held = _held.get(pinned)
    return pinned, _shift(pinned) if held is None else held


def hold_clock(held: tuple[str, timedelta] | None) -> None:
    """In a process started by another (a worker of ``cobro serve``, however much later):
    the clock of that one (``clock_held``), rather than one starting again at
    ``COBRO_NOW``'s time."""
    _held.clear()
    if held is not None:
        _held[held[0]] = held[1]


def clock_start(value: str) -> datetime:
    """``COBRO_NOW``'s time (aware, UTC); a one-line ``WorkspaceError`` when it is not
    an ISO 8601 time with a UTC offset."""
    example = "give one like 2026-12-04T10:00:00+01:00"
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WorkspaceError(f"{CLOCK_VARIABLE}: {value!r} is not a time; {example}") from None
    if at.tzinfo is None:
        raise WorkspaceError(f"{CLOCK_VARIABLE}: {value!r} has no UTC offset; {example}")
    return at.astimezone(UTC)


@lru_cache(maxsize=4)
def _shift(pinned: str) -> timedelta:
    """How far the set clock is from the real one, fixed once per process."""
    return clock_start(pinned) - datetime.now(UTC)


@dataclass
class Workspace:
    """An opened workspace: its directory, configuration, engine and company.

    ``loaded`` is the validated configuration, or None when the workspace was opened
    from the record of a ``cobro.yaml`` validated before (:mod:`cobro.validated`): the
    configuration is then made from ``config_text``, the file's text when it was opened,
    when it is first read."""

    root: Path
    loaded: CobroConfig | None
    engine: Engine
    company_id: int
    secret: str
    config_text: str = field(default="", repr=False)

    @property
    def config(self) -> CobroConfig:
        if self.loaded is None:
            from cobro.config import parse_config

            self.loaded = parse_config(self.config_text, str(self.root / CONFIG_FILE))
        return self.loaded

    @config.setter
    def config(self, value: CobroConfig) -> None:
        self.loaded = value

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def close(self) -> None:
        self.engine.dispose()


def server_root(root: Path) -> Path | None:
    """The server root ``root`` is a company of (its parent holds ``cobro-server.yaml``),
    or ``root`` itself when it is one; else None (a workspace on its own)."""
    for candidate in (root, root.parent):
        if (candidate / SERVER_FILE).is_file():
            return candidate
    return None


def _server_database(server: Path) -> str | None:
    """The ``database:`` URL of a server root's ``cobro-server.yaml``, if it names one."""
    from cobro.config.loader import read_server_file

    return read_server_file(server / SERVER_FILE).database


def database_url(root: Path, override: str | None = None) -> str:
    """``--db``, then ``COBRO_DATABASE_URL``, then, for a company of a server root, the
    root's ``database:`` or its ``cobro.db``; else ``cobro.db`` in the workspace."""
    url = override or os.environ.get("COBRO_DATABASE_URL")
    if url:
        return url
    server = server_root(root)
    if server is not None:
        return _server_database(server) or f"sqlite:///{(server / 'cobro.db').resolve()}"
    return f"sqlite:///{(root / 'cobro.db').resolve()}"


def _secret(root: Path) -> str:
    env = os.environ.get("COBRO_SECRET")
    if env:
        return env
    path = root / SECRET_FILE
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text(encoding="utf-8").strip()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file readable by its owner only, from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_gitignore(root: Path) -> None:
    """A ``.gitignore`` that keeps the workspace's secrets, key, database and caught mail
    out of git; an existing one gets the entries it lacks."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    missing = [entry for entry in IGNORED if entry not in text.splitlines()]
    if not missing:
        return
    if not text:
        text = "# cobro: secrets, keys, personal data and caught mail stay out of git\n"
    elif not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(f"{entry}\n" for entry in missing), encoding="utf-8")


def ensure_company(conn: Connection, slug: str, name: str, now: datetime) -> int:
    """The id of the company ``slug`` (``company.id``), created on first use; its name
    is set to ``name`` when it differs."""
    from sqlalchemy import insert, select, update

    from cobro.store import tables as t

    c = t.companies.c
    row = conn.execute(select(c.id, c.name).where(c.slug == slug)).first()
    if row:
        if row.name != name:  # unchanged, the row is left alone (no write, no fsync)
            conn.execute(update(t.companies).where(c.id == row.id).values(name=name))
        return int(row.id)
    result = conn.execute(insert(t.companies).values(slug=slug, name=name, created_at=now))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def _config_path(root: Path) -> Path:
    cfg_path = root / CONFIG_FILE
    if not cfg_path.exists():
        raise WorkspaceError(
            f"no {CONFIG_FILE} in {root}: run 'cobro init {root}' or pass --workspace DIR"
        )
    return cfg_path


def _config(root: Path) -> CobroConfig:
    from cobro.config import load_config

    return load_config(_config_path(root))


def _recalled_config(root: Path) -> tuple[CobroConfig | None, str, str, str]:
    """The configuration of ``root`` (None when the record of a validation of the same
    bytes by the same code says it is valid), its text, and its company's id and name.
    A file validated now is recorded for the next command."""
    from cobro import validated

    cfg_path = _config_path(root)
    data = validated.read_limited(cfg_path)
    if data is not None:
        company = validated.recalled(root, validated.digest(data))
        if company is not None:
            try:
                return None, data.decode("utf-8"), company.id, company.name
            except UnicodeDecodeError:  # never validated, then
                pass
    from cobro.config.loader import parse_config, read_config_text

    text = read_config_text(cfg_path)
    config = parse_config(text, str(cfg_path))
    company = validated.Company(config.company.id, config.company.name)
    validated.remember(root, validated.digest(text.encode("utf-8")), company)
    return config, text, company.id, company.name


def open_workspace(
    root: Path | str, db_url: str | None = None, *, recall: bool = False
) -> Workspace:
    """Open the workspace at ``root``: validate config, migrate, find the company.

    With ``recall``, a ``cobro.yaml`` that the record of a previous validation
    (:mod:`cobro.validated`) says is valid is not validated again until its
    configuration is first read, and a file validated now is recorded."""
    from cobro.store.db import count_changes, make_engine, migrate, reaching

    root = Path(root).resolve()
    if recall:
        config, text, slug, name = _recalled_config(root)
    else:
        config = _config(root)
        text, slug, name = "", config.company.id, config.company.name
    url = database_url(root, db_url)
    engine = make_engine(url)
    try:
        with reaching(url):
            migrate(engine)
            count_changes(engine)
            with engine.begin() as conn:
                company_id = ensure_company(conn, slug, name, utcnow())
    except BaseException:
        engine.dispose()
        raise
    return Workspace(root, config, engine, company_id, _secret(root), text)


def company_dirs(server: Path) -> list[Path]:
    """The companies of a server root: its subdirectories holding a cobro.yaml, by name."""
    return sorted(
        child for child in server.iterdir() if child.is_dir() and (child / CONFIG_FILE).is_file()
    )


def open_companies(root: Path | str, db_url: str | None = None) -> list[Workspace]:
    """Every company ``root`` serves: the companies of a server root, sharing one engine,
    or the one workspace at ``root``. Two companies with the same ``company.id`` are
    refused: they would share every record."""
    from cobro.store.db import count_changes, make_engine, migrate, reaching

    root = Path(root).resolve()
    if not (root / SERVER_FILE).is_file():
        return [open_workspace(root, db_url)]
    dirs = company_dirs(root)
    if not dirs:
        raise WorkspaceError(
            f"{root / SERVER_FILE}: no company yet: add one with 'cobro companies add SLUG'"
        )
    configs = [_config(d) for d in dirs]
    seen: dict[str, Path] = {}
    for d, config in zip(dirs, configs, strict=True):
        slug = config.company.id
        if slug in seen:
            raise WorkspaceError(
                f"{d / CONFIG_FILE}: company.id {slug!r} is also the id of "
                f"{seen[slug] / CONFIG_FILE}; each company needs its own id"
            )
        seen[slug] = d
    url = database_url(root, db_url)
    engine = make_engine(url)
    try:
        with reaching(url):
            migrate(engine)
            count_changes(engine)
            with engine.begin() as conn:
                ids = [
                    ensure_company(conn, c.company.id, c.company.name, utcnow()) for c in configs
                ]
    except BaseException:
        engine.dispose()
        raise
    return [
        Workspace(d, config, engine, company_id, _secret(d))
        for d, config, company_id in zip(dirs, configs, ids, strict=True)
    ]
