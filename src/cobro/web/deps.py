"""What every route may ask for: the application's state, as ``Annotated`` dependencies."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, cast
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from sqlalchemy import Engine

from cobro.engine.responses import Client
from cobro.web.pagecache import PageCache, RecentlySeen
from cobro.web.pages import Pages
from cobro.workspace import Workspace

if TYPE_CHECKING:
    from cobro.web.portal.queries import Debtor

# The same browser opening a claim's page again is recorded as opened again after this.
OPENED_AGAIN = timedelta(hours=1)


@dataclass(frozen=True)
class WebState:
    """One workspace served: its database, configuration and secret, the clock the routes
    read (tests set it), the compiled pages, and an engine for reading."""

    ws: Workspace
    clock: Callable[[], datetime]
    pages: Pages
    reader: Engine  # for pages that only read: on SQLite, beside the writers (WAL)
    rendered: PageCache[str] = field(default_factory=PageCache)  # debtors' pages, by version
    # The debtor a link named when last looked up, by (claim, debtor's external id): a
    # page's version query proves it still holds (``page_version``).
    linked: PageCache[Debtor] = field(default_factory=lambda: PageCache(16384))
    # Claims' pages this process knows were recorded as opened, by address and browser.
    opened: RecentlySeen = field(default_factory=lambda: RecentlySeen(OPENED_AGAIN))
    # The dashboard overview's figures, by company, currency, day and time zone, kept
    # while ``data_version`` has not moved; computed by one request at a time.
    figures: PageCache[Any] = field(default_factory=lambda: PageCache(16))
    computing: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        """The company's date now."""
        return self.now().astimezone(ZoneInfo(self.ws.config.company.timezone)).date()


@dataclass(frozen=True)
class Site:
    """Every company one server serves, by slug (``company.id``). Each route finds its
    company from what the request carries (a link's token, an API key, a path) and never
    reaches another's."""

    companies: dict[str, WebState]

    @property
    def default(self) -> WebState:
        """The first company: what a page with no company of its own (a refused link)
        borrows its language and look from; it shows none of its data."""
        return next(iter(self.companies.values()))

    def company(self, slug: str | None) -> WebState | None:
        return self.companies.get(slug) if slug is not None else None


def site_of(request: Request) -> Site:
    return cast(Site, request.app.state.cobro)


def web_state(request: Request) -> WebState:
    """The company a portal or brand route is for: the one its link's token names (or,
    for the brand files, its path), else the first (a link refused anyway)."""
    from cobro.engine.links import token_company

    site = site_of(request)
    params = request.path_params
    slug = token_company(params["token"]) if "token" in params else params.get("company")
    return site.company(slug) or site.default


def client_of(request: Request) -> Client:
    """Who is asking: the network address (the proxy's client when it is trusted) and the
    browser's user agent."""
    return Client(
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )


async def _web_state(request: Request) -> WebState:
    """``web_state`` as a dependency: on the event loop (it reads no database), so that a
    route asking for it costs no trip to a worker thread."""
    return web_state(request)


State = Annotated[WebState, Depends(_web_state)]
