"""What every route may ask for: the application's state, as ``Annotated`` dependencies."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class EventLoopReads:
    """A SQLite driver connection of a reading engine, for the short reads a route makes on
    the event loop (a session checked by its key, a bounded search): statements written
    once, run on ``sqlite3`` without SQLAlchemy, where the trip to a worker thread and
    back would cost more than the read. Opened on first use with the engine's file and
    options, read-only, in autocommit mode (each statement its own snapshot; ``BEGIN``
    for several in one). None on another database: its reads go to a worker thread."""

    def __init__(self) -> None:
        self._conns: dict[int, tuple[Engine, sqlite3.Connection]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, reader: Engine) -> Iterator[sqlite3.Connection | None]:
        if reader.dialect.name != "sqlite":
            yield None
            return
        with self._lock:  # one event loop uses it at a time; tests may run several
            kept = self._conns.get(id(reader))
            if kept is None:
                args, kwargs = reader.dialect.create_connect_args(reader.url)
                connect: Any = sqlite3.connect
                options = {**kwargs, "check_same_thread": False, "isolation_level": None}
                conn = connect(*args, **{"timeout": 30, **options})
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA cache_size=-16384")
                kept = self._conns[id(reader)] = (reader, conn)
            yield kept[1]


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
    # The dashboard overview's figures, by company, currency, day and time zone, with the
    # ``data_version`` they were computed at; computed in a thread of their own, one at a
    # time per key (``refreshing``, guarded by ``computing``).
    figures: PageCache[Any] = field(default_factory=lambda: PageCache(16))
    computing: threading.Lock = field(default_factory=threading.Lock)
    refreshing: dict[Any, threading.Thread] = field(default_factory=dict)
    # Reads made on the event loop, on SQLite (shared by the companies of one database).
    loop_reads: EventLoopReads = field(default_factory=EventLoopReads)

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
