"""The REST API for integrators, ``/api/v1``: a FastAPI application of its own (its
OpenAPI 3.1 document at ``/api/v1/openapi.json``, its docs at ``/api/v1/docs``), mounted
in the server's application. Every route acts for the company of the caller's key."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import HTMLResponse, Response

from cobro.web.api import (
    claims,
    customers,
    disputes,
    problems,
    promises,
    runs,
    segments,
    simulation,
    tasks,
)
from cobro.web.api.auth import FailedAuth
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


def create_api(site: Site) -> FastAPI:
    """The API application for the companies of ``site``."""
    api = FastAPI(
        title="Cobro API",
        version=VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    api.state.cobro = site
    api.state.failed_auth = FailedAuth()
    problems.install(api)
    api.include_router(customers.router)
    for collections in (claims, disputes, promises, tasks, segments, runs, simulation):
        api.include_router(collections.router)

    @api.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return HTMLResponse(
            DOCS_PAGE.format(openapi=f"{PREFIX}/openapi.json"),
            headers={"Content-Security-Policy": DOCS_POLICY},
        )

    return api
