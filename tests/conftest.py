"""Shared fixtures: temporary workspaces on SQLite (and PostgreSQL, see integration/)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from cobro.workspace import Workspace, open_workspace
from migrated import copy_sqlite

STARTER = Path(str(resources.files("cobro") / "starter"))


@pytest.fixture
def make_workspace(tmp_path: Path) -> Iterator[Callable[..., Workspace]]:
    """Build a workspace from the starter config, with optional YAML text replacements."""
    opened: list[Workspace] = []

    def _make(
        name: str = "ws", replace: dict[str, str] | None = None, db_url: str | None = None
    ) -> Workspace:
        root = tmp_path / name
        shutil.copytree(STARTER, root, dirs_exist_ok=True)
        cfg = root / "cobro.yaml"
        text = cfg.read_text(encoding="utf-8")
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        cfg.write_text(text, encoding="utf-8")
        if db_url is None and "database:" not in text:
            copy_sqlite(root / "cobro.db")  # the workspace's own database, migrated once
        ws = open_workspace(root, db_url)
        opened.append(ws)
        return ws

    yield _make
    for ws in opened:
        ws.close()


@pytest.fixture
def workspace(make_workspace: Callable[..., Workspace]) -> Workspace:
    return make_workspace()
