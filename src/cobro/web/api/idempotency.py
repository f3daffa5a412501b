"""``Idempotency-Key`` on every POST of the API: a retried request gets the first answer.

The first request with a key claims it (a row, committed before the work starts); the
answer (status, body) is kept with it once given. The same key again, with the same
method, path and body, gets that answer again (``Idempotent-Replayed: true``); with
another body, 409; while the first is still being answered, 409 and ``Retry-After``.
A failure of the server (5xx) or a refused request (an error raised before any answer)
gives the key back, so a retry runs again. Keys are kept ``KEPT`` (at least 24 hours).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cobro.engine.apikeys import ROLES, Role
from cobro.store import tables as t
from cobro.web.api.auth import ROLE_NEEDED, Caller, caller, check_role
from cobro.web.api.problems import FieldError, Problem

HEADER = "Idempotency-Key"
KEPT = timedelta(hours=24)
MAX_KEY = 255

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _fingerprint(request: Request, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY or not key.isprintable() or not key.isascii():
        raise Problem(
            400,
            "invalid-idempotency-key",
            f"{HEADER} must be 1 to {MAX_KEY} printable ASCII characters",
            [FieldError(field=f"header.{HEADER}", problem="not a valid key")],
        )


def _claim(who: Caller, key: str, fingerprint: str) -> Response | None:
    """Claim ``key`` for this request (None), or the answer a retry gets instead."""
    i = t.idempotency_keys.c
    now = who.state.now()
    engine = who.state.ws.engine
    with engine.begin() as conn:
        conn.execute(delete(t.idempotency_keys).where(i.created_at < now - KEPT))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(t.idempotency_keys).values(
                    company_id=who.company_id, key=key, request=fingerprint, created_at=now
                )
            )
        return None
    except IntegrityError:
        pass
    with engine.connect() as conn:
        row = conn.execute(
            select(t.idempotency_keys).where(i.company_id == who.company_id, i.key == key)
        ).first()
    if row is None:  # given back in between: this request may go ahead
        return _claim(who, key, fingerprint)
    if row.request != fingerprint:
        raise Problem(
            409,
            "idempotency-key-reused",
            f"this {HEADER} was used for another request; use a new key for a new request",
        )
    if row.status is None:
        raise Problem(
            409,
            "request-in-progress",
            f"a request with this {HEADER} is being answered; retry shortly",
            headers={"Retry-After": "1"},
        )
    return Response(
        row.body,
        status_code=row.status,
        media_type=row.content_type,
        headers={"Idempotent-Replayed": "true"},
    )


def _keep(who: Caller, key: str, response: Response | None) -> None:
    """Keep ``response`` as the key's answer, or give the key back (None, or a 5xx)."""
    i = t.idempotency_keys.c
    where = (i.company_id == who.company_id) & (i.key == key)
    with who.state.ws.engine.begin() as conn:
        body = getattr(response, "body", None) if response is not None else None
        if response is None or response.status_code >= 500 or not isinstance(body, bytes):
            conn.execute(delete(t.idempotency_keys).where(where))
            return
        conn.execute(
            update(t.idempotency_keys)
            .where(where)
            .values(
                status=response.status_code,
                body=body,
                content_type=response.headers.get("content-type"),
            )
        )


def _role_needed(dependant: Dependant) -> Role:
    """The strongest role the route's dependencies ask for (read-only when none does)."""
    needed: Role = "read-only"
    for dependency in dependant.dependencies:
        role = ROLE_NEEDED.get(dependency.call) if dependency.call is not None else None
        for found in (role, _role_needed(dependency)):
            if found is not None and ROLES.index(found) > ROLES.index(needed):
                needed = found
    return needed


class IdempotentRoute(APIRoute):
    """A route whose POSTs honour ``Idempotency-Key``. The key's role is checked before
    the key is claimed or its answer given again: a key too weak for the route gets 403,
    never the answer a stronger key was given (a webhook endpoint's secret)."""

    def get_route_handler(self) -> Handler:
        original: Handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return original
        needed = _role_needed(self.dependant)

        async def handler(request: Request) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                return await original(request)
            _check_key(key)
            who = await caller(request, None)
            check_role(who, needed)
            fingerprint = _fingerprint(request, await request.body())
            replay = await run_in_threadpool(_claim, who, key, fingerprint)
            if replay is not None:
                return replay
            response: Response | None = None
            try:
                response = await original(request)
            finally:
                await run_in_threadpool(_keep, who, key, response)
            return response

        return handler
