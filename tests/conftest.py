"""Shared fixtures: temporary workspaces on SQLite (and PostgreSQL, see integration/)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from cheap_passwords import CHEAP
from cobro.workspace import Workspace, open_workspace
from migrated import copy_sqlite

STARTER = Path(str(resources.files("cobro") / "starter"))

for _variable, _least in CHEAP.items():  # before any test: every process started inherits it
    os.environ.setdefault(_variable, _least)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (pyproject.toml) with the groups honoured.

    pytest-xdist names a test's ``xdist_group`` by appending it to the test's id, which
    pytest 9 no longer lets a plugin change: every test was handed out on its own. Here a
    test of a file that marks its tests ``xdist_group`` (``pytestmark``) is given to the
    worker that runs that file, in order; every other test goes on its own to the worker
    that is free. Groups are handed out first, those of the most tests first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    root = config.rootpath
    grouped: dict[str, bool] = {}

    class FileGroups(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope = str(super()._split_scope(nodeid))
            if scope != nodeid:  # a group pytest-xdist could name
                return scope
            path = nodeid.split("::")[0]
            if path not in grouped:
                try:
                    text = (root / path).read_text(encoding="utf-8")
                except OSError:
                    text = ""
                grouped[path] = "pytest.mark.xdist_group(" in text
            return path if grouped[path] else nodeid

    return FileGroups(config, log)


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
