"""Databases already brought to the newest schema, for tests that do not test migrating.

Running every migration for each test's fresh database (SQLite rebuilds tables in batch
mode; PostgreSQL runs each revision's DDL) is most of what a short test costs. Each test
process migrates one template per database kind once and copies it: a file copy on
SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. The copy is the same schema the
migrations build (``alembic_version`` at head, no rows), so opening a workspace on it
migrates nothing; tests of the migrations themselves start from an empty database
(``empty_db_url``), and every ``cobro init`` of the end-to-end tests migrates for real.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from cobro.store.db import make_engine, migrate

_LOCK = threading.Lock()
_sqlite_template: Path | None = None
_pg_templates: dict[str, str] = {}  # server URL -> template database name


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def copy_sqlite(target: Path) -> None:
    """Put a migrated, empty SQLite database at ``target`` (readable by its owner only,
    as Cobro creates it)."""
    global _sqlite_template
    with _LOCK:
        if _sqlite_template is None:
            folder = Path(tempfile.mkdtemp(prefix="cobro-template-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            try:
                migrate(engine)
            finally:
                engine.dispose()
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the main file
            _sqlite_template = path
    shutil.copyfile(_sqlite_template, target)
    os.chmod(target, 0o600)


def pg_template(server: str) -> str:
    """The name of this process's migrated template database on ``server``."""
    with _LOCK:
        name = _pg_templates.get(server)
        if name is None:
            name = f"cobro_tpl_{uuid.uuid4().hex[:12]}"
            admin = _libpq_url(server)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            engine = make_engine(make_url(server).set(database=name).render_as_string(False))
            try:
                migrate(engine)
            finally:
                engine.dispose()  # a template must have no session open on it

            def drop() -> None:
                try:
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except psycopg.Error:
                    pass  # the server is gone already (a private one, stopped)

            atexit.register(drop)
            _pg_templates[server] = name
    return name
