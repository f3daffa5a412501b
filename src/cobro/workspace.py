"""A workspace: a directory holding cobro.yaml, the database and caught mail.

This is the bootstrap: the one place where settings become an engine, a
configuration and a company row. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cobro.errors import WorkspaceError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from cobro.config import CobroConfig

CONFIG_FILE = "cobro.yaml"
SECRET_FILE = ".cobro-secret"
# What `cobro init` keeps out of git: secrets, keys, personal data, caught mail.
IGNORED = (".cobro-secret", ".cobro-evidence-key", "vapid_private.pem", "cobro.db*", "mail/")


def utcnow() -> datetime:
    """The real clock; only the command-line shell calls it, never the engine."""
    return datetime.now(UTC)


@dataclass
class Workspace:
    """An opened workspace: its directory, configuration, engine and company."""

    root: Path
    config: CobroConfig
    engine: Engine
    company_id: int
    secret: str

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def close(self) -> None:
        self.engine.dispose()


def database_url(root: Path, override: str | None = None) -> str:
    """``--db``, then ``COBRO_DATABASE_URL``, then ``cobro.db`` in the workspace."""
    url = override or os.environ.get("COBRO_DATABASE_URL")
    return url or f"sqlite:///{(root / 'cobro.db').resolve()}"


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


def ensure_company(conn: Connection, config: CobroConfig, now: datetime) -> int:
    """The id of the configured company, created on first use."""
    from sqlalchemy import insert, select, update

    from cobro.store import tables as t

    slug = config.company.id
    row = conn.execute(select(t.companies.c.id).where(t.companies.c.slug == slug)).first()
    if row:
        conn.execute(
            update(t.companies).where(t.companies.c.id == row.id).values(name=config.company.name)
        )
        return int(row.id)
    result = conn.execute(
        insert(t.companies).values(slug=slug, name=config.company.name, created_at=now)
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def open_workspace(root: Path | str, db_url: str | None = None) -> Workspace:
    """Open the workspace at ``root``: validate config, migrate, find the company."""
    from cobro.config import load_config
    from cobro.store.db import make_engine, migrate, reaching

    root = Path(root).resolve()
    cfg_path = root / CONFIG_FILE
    if not cfg_path.exists():
        raise WorkspaceError(
            f"no {CONFIG_FILE} in {root}: run 'cobro init {root}' or pass --workspace DIR"
        )
    config = load_config(cfg_path)
    url = database_url(root, db_url)
    engine = make_engine(url)
    try:
        with reaching(url):
            migrate(engine)
            with engine.begin() as conn:
                company_id = ensure_company(conn, config, utcnow())
    except BaseException:
        engine.dispose()
        raise
    return Workspace(root, config, engine, company_id, _secret(root))
