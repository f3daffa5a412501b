"""The web application: one FastAPI app serving one or several companies, one router per
area (the debtor portal, the REST API under ``/api/v1``, the staff dashboard), pages
rendered on the server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

from cobro.store.db import make_engine
from cobro.web import brand
from cobro.web.callbacks import twilio as twilio_callbacks
from cobro.web.callbacks import unsubscribe
from cobro.web.deps import EventLoopReads, Site, WebState
from cobro.web.pages import Pages
from cobro.web.portal import routes as portal
from cobro.web.security import SecurityHeaders, content_security_policy
from cobro.workspace import Workspace, utcnow


def reading_engine(ws: Workspace) -> Engine:
    """An engine for the pages that only read: on SQLite a second one whose transactions
    do not take the write lock (readers then never wait for each other or for a run);
    elsewhere the workspace's own."""
    if ws.engine.dialect.name != "sqlite":
        return ws.engine
    return make_engine(ws.engine.url.render_as_string(hide_password=False), reads_only=True)


def create_app(
    companies: Workspace | Sequence[Workspace], *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """The application serving ``companies`` (one workspace, or the companies of a server
    root, which share one database); ``clock`` (aware UTC) is the time its routes use."""
    served = [companies] if isinstance(companies, Workspace) else list(companies)
    if not served:
        raise ValueError("no company to serve")
    pages = Pages()
    readers: dict[int, tuple[Engine, EventLoopReads]] = {}
    states: dict[str, WebState] = {}
    for ws in served:
        kept = readers.get(id(ws.engine))
        if kept is None:
            kept = readers[id(ws.engine)] = (reading_engine(ws), EventLoopReads())
        reader, loop_reads = kept
        states[ws.config.company.id] = WebState(ws, clock, pages, reader, loop_reads=loop_reads)
    app = FastAPI(
        title="Cobro",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.cobro = Site(states)
    app.add_middleware(
        SecurityHeaders,
        csp=content_security_policy([ws.config.company.branding.logo_url for ws in served]),
    )
    from cobro.web.api import PREFIX, create_api

    app.mount(PREFIX, create_api(app.state.cobro))
    app.mount("/static", StaticFiles(packages=[("cobro.web", "static")]), name="static")
    app.include_router(brand.router)
    app.include_router(portal.router)
    app.include_router(twilio_callbacks.router)
    app.include_router(unsubscribe.router)
    portal.install_handlers(app)
    from cobro.web import dashboard

    dashboard.install(app)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no error in the browser's console

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    from cobro.engine.metrics import app_metrics

    metrics_of = app_metrics(lambda: served, clock)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = metrics_of()
        return Response(body, media_type=content_type)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(PREFIX + "/"):
            # An API path the mount did not take (its pattern stops at a line break
            # in the path, e.g. an id with %0A): answered as the API answers.
            from cobro.web.api.problems import problem_response

            kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
            headers = dict(exc.headers) if exc.headers else None
            return problem_response(exc.status_code, kind, None, (), headers)
        words = {404: "Not found", 405: "Method not allowed"}
        return PlainTextResponse(
            f"{words.get(exc.status_code, 'Error')}\n",
            status_code=exc.status_code,
            headers=exc.headers,
        )

    return app
