"""Who is using the dashboard: the staff session of the request's cookie, its company and
role; the refusals every screen shares (log in first, not your role, not your company's,
a form without its token).

The session cookie (``cobro_staff``) holds a random token; the database keeps its SHA-256
(``cobro.engine.users``). It is ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the request
came over https, and sent for ``/dashboard`` only. Every form carries a token signed over
the session's token (``cobro.web.csrf``); a POST without it is refused and changes
nothing. The session names the company: every query is scoped to it, so another
company's debtors and ids are simply not found (404).

A session found once is kept per process (``KnownSessions``); on SQLite each later request
reads its row again by primary key on the event loop (still there, same user and role,
neither idle too long nor past its end), so a session ended from any process (logout, a
new password, the user removed) is refused from the next request on, without a trip to a
worker thread. Every other case (a session not seen before, its last activity to write,
PostgreSQL) finds the session in a worker thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cobro.engine.apikeys import Role, allows
from cobro.engine.users import (
    SEEN_EVERY,
    SESSION_IDLE,
    Session,
    find_session,
    seen,
    token_digest,
)
from cobro.web.csrf import form_token, tokens_match
from cobro.web.dashboard.labels import LANGUAGES
from cobro.web.deps import Site, WebState, site_of
from cobro.web.pages import reader_language

PREFIX = "/dashboard"
SESSION_COOKIE = "cobro_staff"
LANGUAGE_COOKIE = "cobro_staff_lang"
FORM_SCOPE = "cobro.dashboard"
MAX_FORM = 64 * 1024


class LoginNeeded(Exception):
    """No live session: the login page, then back to ``next``."""

    def __init__(self, next_path: str, ended: bool) -> None:
        super().__init__(next_path)
        self.next_path, self.ended = next_path, ended


class Refused(Exception):
    """A refusal shown as a page: status and the words that say why."""

    def __init__(self, status: int, reason: str, **values: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.values = status, reason, values


def not_found() -> Refused:
    return Refused(404, "not_found")


@dataclass(frozen=True)
class Staff:
    """A request of a logged-in user: their company's state, session and language."""

    state: WebState
    session: Session
    token: str  # the cookie's token, which forms are signed over
    language: str
    locale: str

    @property
    def company_id(self) -> int:
        return self.state.ws.company_id

    @property
    def role(self) -> Role:
        return self.session.user.role

    def can(self, role: Role) -> bool:
        return allows(self.role, role)

    @property
    def csrf(self) -> str:
        return form_token(self.state.ws.secret, self.token, FORM_SCOPE)


def language_of(request: Request, company_locale: str) -> tuple[str, str]:
    """(language, formatting locale): the one chosen on the dashboard, else the company's."""
    return reader_language(company_locale, LANGUAGES, request.cookies.get(LANGUAGE_COOKIE))


def _find(site: Site, token: str, now: datetime) -> tuple[WebState, Session] | None:
    """The live session of ``token`` and its company, among the companies served; its
    last activity written when it is due (``SEEN_EVERY``)."""
    readers = {id(s.reader): s.reader for s in site.companies.values()}
    for reader in readers.values():
        with reader.connect() as conn:
            session = find_session(conn, token, now)
        if session is None:
            continue
        for state in site.companies.values():
            if state.reader is reader and state.ws.company_id == session.user.company_id:
                if session.last_seen_at <= now - SEEN_EVERY:
                    with state.ws.engine.begin() as conn:
                        seen(conn, session, now)
                    session = replace(session, last_seen_at=now)
                return state, session
    return None


# A kept session's row read again: it is still there, for this digest, with its user in
# its company (``find_session``'s join), and when it was last used and ends.
_SQLITE_STILL_LIVE = (
    "SELECT s.last_seen_at, s.expires_at, u.email, u.role"
    " FROM staff_sessions AS s JOIN staff_users AS u ON u.id = s.user_id"
    " WHERE s.id = ? AND s.digest = ? AND s.company_id = u.company_id"
)


def _stored_time(value: str) -> datetime:
    """A time as SQLAlchemy keeps it on SQLite (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class KnownSessions:
    """The sessions this process has found live, by digest (at most ``size``, the least
    recently used out), with their company; on SQLite only (elsewhere every request finds
    its session in a worker thread). A token that found no session is never kept."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._known: OrderedDict[str, tuple[WebState, Session]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, state: WebState, session: Session) -> None:
        if state.reader.dialect.name != "sqlite":
            return
        with self._lock:
            self._known[session.digest] = (state, session)
            self._known.move_to_end(session.digest)
            while len(self._known) > self.size:
                self._known.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._known.pop(digest, None)

    def live(self, digest: str, now: datetime) -> tuple[WebState, Session] | None:
        """The kept session of ``digest`` when its row, read now, says it is live and its
        last activity need not be written yet; None otherwise (then ``_find`` decides,
        and writes the activity)."""
        with self._lock:
            kept = self._known.get(digest)
            if kept is not None:
                self._known.move_to_end(digest)
        if kept is None:
            return None
        state, session = kept
        with state.loop_reads.connection(state.reader) as conn:
            assert conn is not None  # kept on SQLite only
            row = conn.execute(_SQLITE_STILL_LIVE, (session.id, digest)).fetchone()
        if row is None or (row[2], row[3]) != (session.user.email, session.user.role):
            self.forget(digest)
            return None
        last_seen, expires = _stored_time(row[0]), _stored_time(row[1])
        if expires <= now or last_seen <= now - SESSION_IDLE:
            self.forget(digest)
            return None
        if last_seen <= now - SEEN_EVERY:
            return None
        return state, replace(session, last_seen_at=last_seen)


def _here(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def staff(request: Request) -> Staff:
    """The logged-in user of the request, or ``LoginNeeded``. On the event loop; the
    session is read there when it is kept (``KnownSessions``), else in a worker thread."""
    token = request.cookies.get(SESSION_COOKIE)
    here = _here(request) if request.method == "GET" else PREFIX + "/"
    if not token or len(token) > 100:
        raise LoginNeeded(here, ended=False)
    site = site_of(request)
    now = site.default.now()
    known: KnownSessions = request.app.state.staff_sessions
    digest = token_digest(token)
    found = known.live(digest, now)
    if found is None:
        found = await run_in_threadpool(_find, site, token, now)
        if found is None:
            known.forget(digest)
            raise LoginNeeded(here, ended=True)
        known.put(*found)
    state, session = found
    language, locale = language_of(request, state.ws.config.company.locale)
    who = Staff(state, session, token, language, locale)
    request.state.staff = who
    return who


StaffDep = Annotated[Staff, Depends(staff)]


async def posted(
    request: Request, who: Staff, needs: Role, *, files: int = 0, limit: int = MAX_FORM
) -> FormData:
    """The form of a POST by ``who``, once their role allows ``needs`` and the form
    carries its token; a refusal (403) otherwise. ``files`` and ``limit``: the uploads
    a form may carry, and its largest size in bytes."""
    if not who.can(needs):
        raise Refused(403, "forbidden_role", role=who.role)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit:
        raise Refused(413 if declared.isdigit() else 411, "bad_form")
    form = await request.form(max_files=files, max_fields=200)
    sent = form.get("csrf")
    if not isinstance(sent, str) or not tokens_match(
        who.state.ws.secret, who.token, FORM_SCOPE, sent
    ):
        raise Refused(403, "forbidden_form")
    return form
