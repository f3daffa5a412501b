"""What every route may ask for: the application's state, as ``Annotated`` dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, cast
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from sqlalchemy import Engine

from cobro.engine.responses import Client
from cobro.web.pages import Pages
from cobro.workspace import Workspace


@dataclass(frozen=True)
class WebState:
    """One workspace served: its database, configuration and secret, the clock the routes
    read (tests set it), the compiled pages, and an engine for reading."""

    ws: Workspace
    clock: Callable[[], datetime]
    pages: Pages
    reader: Engine  # for pages that only read: on SQLite, beside the writers (WAL)

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        """The company's date now."""
        return self.now().astimezone(ZoneInfo(self.ws.config.company.timezone)).date()


def web_state(request: Request) -> WebState:
    return cast(WebState, request.app.state.cobro)


def client_of(request: Request) -> Client:
    """Who is asking: the network address (the proxy's client when it is trusted) and the
    browser's user agent."""
    return Client(
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )


State = Annotated[WebState, Depends(web_state)]
