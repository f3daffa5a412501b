"""Who calls the API: a company's key (``Authorization: Bearer cobro_...``) with its role.

No key, a malformed, unknown or revoked one: 401. A role too weak for the route: 403.
Failed attempts are counted per client address: past ``FAILURES`` in ``WINDOW``, that
address gets 429 (with ``Retry-After``) until the window has passed, whatever it sends.

A key found once is kept per process (``KnownKeys``); on SQLite each later request reads
its row again on the event loop (is it still live?), so a key revoked from any process is
refused from the next request on, without a trip to a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, update
from starlette.concurrency import run_in_threadpool

from cobro.engine.apikeys import (
    SQLITE_STILL_LIVE,
    ApiKey,
    Role,
    allows,
    authenticate,
    key_digest,
)
from cobro.store import tables as t
from cobro.web.api.problems import FieldError, Problem
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


class KnownKeys:
    """The keys this process has found live, by digest (at most ``size``, the least
    recently used out), with their company. Only a key that proved itself is kept: an
    unknown or wrong one never is.

    On SQLite a known key is checked again on each request, on the event loop, by reading
    its row on a driver connection kept for this (``SQLITE_STILL_LIVE``, a primary-key
    read of a local file: microseconds, where the trip to a worker thread and back costs
    more than the read). Elsewhere (PostgreSQL: the network) every request finds its key
    in a worker thread, as the first request of a key does everywhere."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._known: OrderedDict[str, tuple[ApiKey, WebState]] = OrderedDict()
        self._checkers: dict[int, tuple[Engine, sqlite3.Connection]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[ApiKey, WebState] | None:
        with self._lock:
            found = self._known.get(digest)
            if found is not None:
                self._known.move_to_end(digest)
            return found

    def put(self, digest: str, key: ApiKey, state: WebState) -> None:
        if state.reader.dialect.name != "sqlite":
            return  # checked in a worker thread anyway: nothing to keep
        with self._lock:
            self._known[digest] = (key, state)
            self._known.move_to_end(digest)
            while len(self._known) > self.size:
                self._known.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._known.pop(digest, None)

    def still_live(self, key: ApiKey, digest: str, reader: Engine) -> bool:
        """Whether ``key``'s row still holds ``digest`` and is not revoked, read now."""
        with self._lock:
            checker = self._checkers.get(id(reader))
            if checker is None:
                args, kwargs = reader.dialect.create_connect_args(reader.url)
                connect: Any = sqlite3.connect  # the file and options the engine uses
                conn = connect(*args, **{**kwargs, "check_same_thread": False})
                conn.execute("PRAGMA query_only=ON")
                checker = self._checkers[id(reader)] = (reader, conn)
            params: dict[str, Any] = {"id": key.id, "digest": digest}
            return bool(checker[1].execute(SQLITE_STILL_LIVE, params).fetchall())


# Documents the scheme in the OpenAPI document; the header is read by ``caller``.
_scheme = HTTPBearer(auto_error=False, bearerFormat="cobro_<prefix>_<secret>")


async def caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
) -> Caller:
    """The company and key of the request, or a refusal (401, 429); then, the key being
    good, a NUL character in its path (404) or query (422) refused (``without_nul``)."""
    who = await _authenticated(request)
    without_nul(request)
    return who


NUL = "\x00"


def without_nul(request: Request) -> None:
    """No database stores a NUL character (PostgreSQL refuses one in any text): an id
    holding one names nothing (404), a query parameter holding one is refused (422).
    Checked once the key is (an unknown key still gets 401). It reads nothing."""
    if any(NUL in str(value) for value in request.path_params.values()):
        raise Problem(404, "not-found", "no such record in this company")
    refused = [
        FieldError(field=f"query.{name}", problem="contains a NUL character")
        for name, value in request.query_params.multi_items()
        if NUL in name or NUL in value
    ]
    if refused:
        raise Problem(422, "invalid-request", f"{len(refused)} field(s) refused", refused)


async def _authenticated(request: Request) -> Caller:
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
    known: KnownKeys = request.app.state.known_keys
    digest = key_digest(given)
    kept = known.get(digest) if digest is not None else None
    if kept is not None and digest is not None:
        key, state = kept
        if known.still_live(key, digest, state.reader):
            if not _used_long_ago(key, now):
                return Caller(state, key)
        else:
            known.forget(digest)

    def check() -> Caller | None:
        found = _find(site, given)
        if found is None:
            return None
        key, state = found
        if _used_long_ago(key, now):
            with state.ws.engine.begin() as conn:
                conn.execute(
                    update(t.api_keys).where(t.api_keys.c.id == key.id).values(last_used_at=now)
                )
            key = replace(key, last_used_at=now)
        if digest is not None:
            known.put(digest, key, state)
        return Caller(state, key)

    found = await run_in_threadpool(check)
    if found is None:
        limiter.failed(client, now)
        raise _unauthorized("the key is unknown or revoked")
    return found


def _used_long_ago(key: ApiKey, now: datetime) -> bool:
    """Whether ``key``'s ``last_used_at`` is to be written again."""
    return key.last_used_at is None or key.last_used_at <= now - USED_EVERY


ROLE_CHECKS: set[Callable[..., Awaitable[Caller]]] = set()  # what ``require`` made
ROLE_NEEDED: dict[Callable[..., Awaitable[Caller]], Role] = {}  # each one's role


def check_role(who: Caller, role: Role) -> None:
    """403 unless ``who``'s key may do what ``role`` may."""
    if not allows(who.key.role, role):
        raise Problem(
            403, "forbidden", f"this key's role ({who.key.role}) cannot do this: needs {role}"
        )


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """The dependency of a route that needs ``role``: ``caller``, then the role checked
    (no I/O: no thread). One dependency, not two nested: FastAPI solves each per request."""

    async def allowed(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
    ) -> Caller:
        who = await caller(request, credentials)
        check_role(who, role)
        return who

    ROLE_CHECKS.add(allowed)
    ROLE_NEEDED[allowed] = role
    return allowed


Reader = Annotated[Caller, Depends(require("read-only"))]
Collector = Annotated[Caller, Depends(require("collector"))]
Admin = Annotated[Caller, Depends(require("admin"))]
