"""Who calls the API: a company's key (``Authorization: Bearer cobro_...``) with its role.

No key, a malformed, unknown or revoked one: 401. A role too weak for the route: 403.
Failed attempts are counted per client address: past ``FAILURES`` in ``WINDOW``, that
address gets 429 (with ``Retry-After``) until the window has passed, whatever it sends.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from starlette.concurrency import run_in_threadpool

from cobro.engine.apikeys import ApiKey, Role, allows, authenticate
from cobro.store import tables as t
from cobro.web.api.problems import Problem
from cobro.web.deps import Site, WebState, site_of

FAILURES = 10
WINDOW = timedelta(minutes=1)
USED_EVERY = timedelta(hours=1)  # ``last_used_at`` is written at most this often per key


@dataclass(frozen=True)
class Caller:
    """An authenticated request: its company (``state``) and key."""

    state: WebState
    key: ApiKey

    @property
    def company_id(self) -> int:
        return self.state.ws.company_id


class FailedAuth:
    """Failed authentications per client address in a sliding window (one process's)."""

    def __init__(self, limit: int = FAILURES, window: timedelta = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: datetime) -> deque[datetime]:
        times = self._seen.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[client]
        return times

    def blocked_for(self, client: str, now: datetime) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.limit:
                return None
            return max(1, int((times[0] + self.window - now).total_seconds()) + 1)

    def failed(self, client: str, now: datetime) -> None:
        with self._lock:
            self._recent(client, now)
            self._seen.setdefault(client, deque()).append(now)
            if len(self._seen) > 100_000:  # a flood of addresses: forget the oldest
                self._seen.pop(next(iter(self._seen)))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def _find(site: Site, given: str) -> tuple[ApiKey, WebState] | None:
    """The live key ``given`` is and the company it belongs to, in the database of a
    company this server serves."""
    readers = {id(s.reader): s.reader for s in site.companies.values()}
    for reader in readers.values():
        with reader.connect() as conn:
            key = authenticate(conn, given)
        if key is None:
            continue
        for state in site.companies.values():
            if state.reader is reader and state.ws.company_id == key.company_id:
                return key, state
    return None


# Documents the scheme in the OpenAPI document; the header is read by ``caller``.
_scheme = HTTPBearer(auto_error=False, bearerFormat="cobro_<prefix>_<secret>")


async def caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
) -> Caller:
    """The company and key of the request, or a refusal (401, 429)."""
    site = site_of(request)
    limiter: FailedAuth = request.app.state.failed_auth
    now = site.default.now()
    client = request.client.host if request.client else "unknown"
    wait = limiter.blocked_for(client, now)
    if wait is not None:
        raise Problem(
            429,
            "too-many-failed-attempts",
            f"too many failed authentications from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    given = _bearer(request)
    if given is None:
        limiter.failed(client, now)
        raise _unauthorized("send a key as 'Authorization: Bearer <key>' (cobro keys create)")

    def check() -> Caller | None:
        found = _find(site, given)
        if found is None:
            return None
        key, state = found
        if key.last_used_at is None or key.last_used_at <= now - USED_EVERY:
            with state.ws.engine.begin() as conn:
                conn.execute(
                    update(t.api_keys).where(t.api_keys.c.id == key.id).values(last_used_at=now)
                )
        return Caller(state, key)

    found = await run_in_threadpool(check)
    if found is None:
        limiter.failed(client, now)
        raise _unauthorized("the key is unknown or revoked")
    return found


def require(role: Role) -> Callable[[Caller], Caller]:
    def allowed(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not allows(who.key.role, role):
            raise Problem(
                403, "forbidden", f"this key's role ({who.key.role}) cannot do this: needs {role}"
            )
        return who

    return allowed


Reader = Annotated[Caller, Depends(require("read-only"))]
Collector = Annotated[Caller, Depends(require("collector"))]
Admin = Annotated[Caller, Depends(require("admin"))]
