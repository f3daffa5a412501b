"""Two companies (acme, beta) of one server root on the test's database, a key of each
role for each, and the server's application with a clock the tests move."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from cobro.engine.apikeys import ROLES, create_key
from cobro.web.app import create_app
from cobro.workspace import SERVER_FILE, Workspace, open_companies

from ..conftest import STARTER_CONFIG, WITHOUT_ACTIONS

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
COMPANIES = ("acme", "beta")


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Client:
    """An integrator: its key (or none) sent as a bearer token, from a given address."""

    app: FastAPI
    key: str | None
    ip: str = "198.51.100.20"
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(self.headers)
        if self.key is not None:
            headers["authorization"] = f"Bearer {self.key}"
        headers.update(kwargs.pop("headers", {}) or {})

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.ip, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
                return await c.request(method, url, headers=headers, **kwargs)

        return anyio.run(go)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", "/api/v1" + url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", "/api/v1" + url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", "/api/v1" + url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", "/api/v1" + url, **kwargs)


@dataclass
class Server:
    """The served companies by slug, their keys by role, the app and its clock."""

    companies: dict[str, Workspace]
    keys: dict[str, dict[str, str]]  # company -> role -> key
    app: FastAPI
    clock: Clock

    def client(self, company: str = "acme", role: str = "admin", **kwargs: Any) -> Client:
        return Client(self.app, self.keys[company][role], **kwargs)

    def anonymous(self, **kwargs: Any) -> Client:
        return Client(self.app, None, **kwargs)


def server_root(path: Path, replace: dict[str, str] | None = None) -> Path:
    """A server root at ``path`` with the companies acme and beta (starter config)."""
    path.mkdir()
    (path / SERVER_FILE).write_text("# test server root\n", encoding="utf-8")
    for slug in COMPANIES:
        shutil.copytree(STARTER_CONFIG.parent, path / slug)
        cfg = path / slug / "cobro.yaml"
        text = cfg.read_text(encoding="utf-8")
        for old, new in {
            **WITHOUT_ACTIONS,
            "  id: demo ": f"  id: {slug} ",
            **(replace or {}),
        }.items():
            assert old in text, old
            text = text.replace(old, new)
        cfg.write_text(text, encoding="utf-8")
    return path


MakeServer = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path, db_url: str) -> Iterator[MakeServer]:
    opened: list[Workspace] = []

    def _make(replace: dict[str, str] | None = None) -> Server:
        root = server_root(tmp_path / f"root{len(opened)}", replace)
        served = open_companies(root, db_url)
        opened.extend(served)
        keys: dict[str, dict[str, str]] = {}
        for ws in served:
            with ws.engine.begin() as conn:
                keys[ws.config.company.id] = {
                    role: create_key(conn, ws.company_id, f"test {role}", role, NOW)[1]
                    for role in ROLES
                }
        clock = Clock()
        app = create_app(served, clock=clock)
        return Server({ws.config.company.id: ws for ws in served}, keys, app, clock)

    yield _make
    for ws in opened:
        ws.close()


@pytest.fixture
def server(make_server: MakeServer) -> Server:
    return make_server()
