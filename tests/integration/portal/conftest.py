"""A workspace with two debtors whose claims a real run sent, and the portal app on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from cobro.web.app import create_app
from cobro.workspace import Workspace

from .helpers import PORTAL_YAML, Browser, Clock, two_debtors_claimed


@dataclass
class Portal:
    ws: Workspace
    app: FastAPI
    clock: Clock
    tokens: dict[str, str]  # debtor -> the token of the link its email carried

    @property
    def token(self) -> str:
        return self.tokens["C1"]

    def browser(self, **kwargs: str) -> Browser:
        return Browser(self.app, **kwargs)


MakePortal = Callable[..., Portal]


@pytest.fixture
def make_portal(make_ws: Callable[..., Workspace]) -> MakePortal:
    """``make_portal(replace={...}, portal_yaml=True)``: the workspace (with the payment page
    and bank details of ``PORTAL_YAML`` unless told not to), its run, and the app on it."""

    def _make(replace: dict[str, str] | None = None, portal_yaml: bool = True) -> Portal:
        ws = make_ws(replace={**(PORTAL_YAML if portal_yaml else {}), **(replace or {})})
        tokens = two_debtors_claimed(ws)
        clock = Clock()
        return Portal(ws, create_app(ws, clock=clock), clock, tokens)

    return _make


@pytest.fixture
def portal(make_portal: MakePortal) -> Portal:
    return make_portal()
