"""Who is using the dashboard: the staff session of the request's cookie, its company and
role; the refusals every screen shares (log in first, not your role, not your company's,
a form without its token).

The session cookie (``cobro_staff``) holds a random token; the database keeps its SHA-256
(``cobro.engine.users``). It is ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the request
came over https, and sent for ``/dashboard`` only. Every form carries a token signed over
the session's token (``cobro.web.csrf``); a POST without it is refused and changes
nothing. The session names the company: every query is scoped to it, so another
company's debtors and ids are simply not found (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from cobro.engine.apikeys import Role, allows
from cobro.engine.users import SEEN_EVERY, Session, find_session, seen
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


def _find(site: Site, token: str) -> tuple[WebState, Session] | None:
    """The live session of ``token`` and its company, among the companies served."""
    now = site.default.now()
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
                return state, session
    return None


def _here(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def staff(request: Request) -> Staff:
    """The logged-in user of the request, or ``LoginNeeded``."""
    token = request.cookies.get(SESSION_COOKIE)
    here = _here(request) if request.method == "GET" else PREFIX + "/"
    if not token or len(token) > 100:
        raise LoginNeeded(here, ended=False)
    found = _find(site_of(request), token)
    if found is None:
        raise LoginNeeded(here, ended=True)
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
