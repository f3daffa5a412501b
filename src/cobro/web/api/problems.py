"""Errors as RFC 9457 problem details: ``type``, ``title``, ``status``, ``detail`` and, for
input that was refused, ``errors`` (each with the field's path and what is wrong)."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

MEDIA_TYPE = "application/problem+json"
TYPES = "/api/v1/problems/"  # + a slug: what kind of problem (docs/api.md lists them)


class FieldError(BaseModel):
    """One refused input: where (``body.rows.3.amount``, ``query.limit``) and why."""

    field: str
    problem: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] = []


def _documented(description: str) -> dict[str, Any]:
    return {
        "model": ProblemDetails,
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


# The errors any route of the API may answer, documented on every operation.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _documented("A header or cursor that cannot be read"),
    401: _documented("No key, or an unknown or revoked one"),
    403: _documented("The key's role cannot do this"),
    404: _documented("No such record in the caller's company"),
    409: _documented("Conflict (an Idempotency-Key reused or in progress, a state change)"),
    422: _documented("Refused input: `errors` names each field"),
    429: _documented("Too many failed authentications from this address"),
}


class Problem(Exception):
    """An answer that is not the resource: raised by a route, sent as problem details."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or kind)
        self.status, self.kind, self.detail = status, kind, detail
        self.errors, self.headers = list(errors), headers


def not_found(what: str) -> Problem:
    """404: the company has no such thing (another company's ids are not revealed)."""
    return Problem(404, "not-found", f"no {what} in this company")


def problem_response(
    status: int,
    kind: str,
    detail: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    body = ProblemDetails(
        type=TYPES + kind,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=list(errors),
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _path(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Pydantic's errors as field paths and messages (no input echoed back)."""
    return [
        FieldError(field=_path(e.get("loc", ())), problem=str(e.get("msg", "invalid")))
        for e in errors
    ]


def install(app: FastAPI) -> None:
    """Every error of the API as problem details."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.kind, exc.detail, exc.errors, exc.headers)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = field_errors(exc.errors())
        return problem_response(
            422, "invalid-request", f"{len(errors)} field(s) refused; nothing was done", errors
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kinds = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == HTTPStatus(exc.status_code).phrase:
            detail = None
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(
            exc.status_code, kinds.get(exc.status_code, "http-error"), detail, (), headers
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
