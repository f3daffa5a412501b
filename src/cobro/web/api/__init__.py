"""The REST API for integrators, ``/api/v1``: a FastAPI application of its own (its
OpenAPI 3.1 document at ``/api/v1/openapi.json``, its docs at ``/api/v1/docs``), mounted
in the server's application. Every route acts for the company of the caller's key."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, Response

from cobro.web.api import (
    banking,
    charges,
    claims,
    contacts,
    customers,
    disputes,
    events,
    payments,
    problems,
    promises,
    receivables,
    runs,
    segments,
    simulation,
    subscriptions,
    tasks,
    webhooks,
)
from cobro.web.api.auth import FailedAuth, KnownKeys
from cobro.web.deps import Site

PREFIX = "/api/v1"
VERSION = "1.0.0"
DESCRIPTION = """\
The Cobro REST API: a company's debtors, contacts, receivables, payments, subscriptions,
events, claims, disputes, promises, tasks, segments, runs and simulations.

**Keys.** Send `Authorization: Bearer <key>`; keys are made with `cobro keys create
--role admin|collector|read-only` and act for their company only.

**Conventions.** Lists are paginated with `limit` and `cursor` (give the `next_cursor`
of a page to get the next); money is a decimal string with its currency; times are
RFC 3339 with their offset; errors are RFC 9457 problem details; every `POST` honours
an `Idempotency-Key` header (kept 24 hours).
"""

# The docs page runs Swagger UI (vendored in the package): scripts and styles from this
# server only.
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cobro API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css"></head>
<body data-openapi="{openapi}"><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script></body></html>
"""


# Every resource's router, in the order the docs show them.
ROUTERS = (
    customers.router,
    contacts.router,
    banking.router,
    receivables.router,
    payments.router,
    subscriptions.router,
    charges.router,
    events.router,
    claims.router,
    disputes.router,
    promises.router,
    tasks.router,
    segments.router,
    runs.router,
    simulation.router,
    webhooks.router,
)


def _operation_id(route: APIRoute) -> str:
    return route.name


# FastAPI tries the routers in turn, at a cost for each route it tries: those of the reads
# asked for most (a debtor's claims, receivables and record) are tried first. The document
# lists them in ROUTERS' order all the same.
MATCH_FIRST = (claims.router, receivables.router, customers.router)


def _application() -> FastAPI:
    return FastAPI(
        title="Cobro API",
        version=VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        # Operation ids are the route functions' names (``list_customers``): what a client
        # generated from the document calls its methods.
        generate_unique_id_function=_operation_id,
    )


def _include(api: FastAPI, routers: Sequence[APIRouter]) -> None:
    for router in routers:
        # Every route depends on ``caller`` (Reader, Collector or Admin), which also refuses a
        # NUL character (``auth.without_nul``); tests/integration/api checks each route does.
        api.include_router(router, responses=problems.ERRORS)


def create_api(site: Site) -> FastAPI:
    """The API application for the companies of ``site``."""
    api = _application()
    api.state.cobro = site
    api.state.failed_auth = FailedAuth()
    api.state.known_keys = KnownKeys()
    problems.install(api)
    _include(api, [*MATCH_FIRST, *(r for r in ROUTERS if r not in MATCH_FIRST)])
    documented = _application()  # never served: the document, in ROUTERS' order
    _include(documented, ROUTERS)
    api.openapi = documented.openapi  # type: ignore[method-assign]

    @api.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return HTMLResponse(
            DOCS_PAGE.format(openapi=f"{PREFIX}/openapi.json"),
            headers={"Content-Security-Policy": DOCS_POLICY},
        )

    return api
