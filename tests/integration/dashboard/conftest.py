"""Two companies of one server root on the test's database: acme with the fixed data set
(and a real run that sent its claims), beta with a debtor of its own; users of every role
in each; the server's app with a clock the tests move."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from cobro.web.app import create_app
from cobro.workspace import Workspace, open_companies

from ..support import load
from .helpers import RUN_DAY, Browser, Clock, acme_data, server_root, users


@dataclass
class Site:
    companies: dict[str, Workspace]
    users: dict[str, dict[str, str]]  # company -> role -> email
    app: FastAPI
    clock: Clock

    @property
    def acme(self) -> Workspace:
        return self.companies["acme"]

    @property
    def beta(self) -> Workspace:
        return self.companies["beta"]

    def browser(self, **kwargs: str) -> Browser:
        return Browser(self.app, **kwargs)

    def staff(self, role: str = "collector", company: str = "acme") -> Browser:
        """A browser logged in as the company's user of ``role``."""
        browser = self.browser()
        done = browser.login(self.users[company][role])
        assert done.status_code == 303, done.text
        return browser


@pytest.fixture
def make_site(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Site]]:
    opened: list[Workspace] = []

    def _make(replace: dict[str, str] | None = None, run: bool = True) -> Site:
        from cobro.engine.runs import run_day

        root = server_root(tmp_path / f"root{len(opened)}", replace or {})
        served = open_companies(root, db_url)
        opened.extend(served)
        by_slug = {ws.config.company.id: ws for ws in served}
        acme_data(by_slug["acme"])
        load(
            by_slug["beta"],
            "customers",
            {
                "external_id": "B1",
                "name": "Beta's Own Debtor",
                "kind": "business",
                "email": "owner@beta-debtor.example",
            },
        )
        load(
            by_slug["beta"],
            "receivables",
            {"external_id": "BX-1", "customer": "B1", "due_on": "2025-02-01", "amount": "999.00"},
        )
        if run:
            for ws in served:
                run_day(ws, RUN_DAY)
        clock = Clock()
        return Site(
            by_slug,
            {slug: users(ws) for slug, ws in by_slug.items()},
            create_app(served, clock=clock),
            clock,
        )

    yield _make
    for ws in opened:
        ws.close()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()
