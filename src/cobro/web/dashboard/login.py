"""Logging in and out of the dashboard, the language chosen, and the refusal pages.

One login page serves every company of the server: a user gives their email and password
only, and the company is the one whose user they are. When the same email and password
open several companies, the page asks which (among those only, so the page never lists
the companies a server holds). ``/dashboard/login?company=SLUG`` logs in to that company
alone and shows its look.

Failed attempts are counted per client address and per email (the app's clock, sliding
windows): past the limits, 429 and nothing is checked until the window has passed.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cobro.engine.users import (
    StaffUser,
    authenticate,
    end_session,
    raise_hash_cost,
    start_session,
)
from cobro.web.api.auth import FailedAuth
from cobro.web.csrf import form_token, tokens_match
from cobro.web.dashboard.labels import LANGUAGES, words
from cobro.web.dashboard.session import (
    LANGUAGE_COOKIE,
    MAX_FORM,
    PREFIX,
    SESSION_COOKIE,
    KnownSessions,
    LoginNeeded,
    Refused,
    StaffDep,
    language_of,
    posted,
)
from cobro.web.dashboard.view import company_look, render
from cobro.web.deps import Site, WebState, client_of, site_of
from cobro.web.pages import Pages

router = APIRouter(prefix=PREFIX)

LOGIN_COOKIE = "cobro_staff_login"  # the login form's browser key, before a session exists
LOGIN_SCOPE = "cobro.dashboard.login"
ADDRESS_FAILURES = 30  # failed logins per client address ...
ACCOUNT_FAILURES = 10  # ... and per email, in WINDOW
WINDOW_MINUTES = 15


def install(app: FastAPI) -> None:
    """The login limits and the refusal pages (called by the app factory)."""
    from datetime import timedelta

    window = timedelta(minutes=WINDOW_MINUTES)
    app.state.staff_failures_by_address = FailedAuth(ADDRESS_FAILURES, window)
    app.state.staff_failures_by_account = FailedAuth(ACCOUNT_FAILURES, window)
    app.state.staff_sessions = KnownSessions()

    async def login_needed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginNeeded)
        target = f"{PREFIX}/login?next={quote(exc.next_path, safe='')}"
        response = RedirectResponse(target + ("&ended=1" if exc.ended else ""), status_code=303)
        if exc.ended:
            _forget(response, request, SESSION_COOKIE)
        return response

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        who = getattr(request.state, "staff", None)
        if who is not None:
            return render(who, request, "refused.j2", _reason(who.language, exc), status=exc.status)
        site = site_of(request)
        state = site.default
        language, locale = language_of(request, state.ws.config.company.locale)
        look = state if len(site.companies) == 1 else None
        context = _reason(language, exc)
        return _plain(state.pages, look, "refused.j2", language, locale, context, exc.status)

    app.add_exception_handler(LoginNeeded, login_needed)
    app.add_exception_handler(Refused, refused)


def _reason(language: str, exc: Refused) -> dict[str, Any]:
    return {"reason": words(language)[exc.reason].format(**exc.values), "status": exc.status}


def _plain(
    pages: Pages,
    look: WebState | None,
    template: str,
    language: str,
    locale: str,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    """A page outside the frame (login, a refusal before login), in the look of ``look``'s
    company, or Cobro's own when no company is known yet."""
    full = {
        "L": words(language),
        "language": language,
        "locale": locale,
        "company": company_look(look) if look is not None else None,
        "brand": company_look(look)["brand"] if look is not None else None,
        "prefix": PREFIX,
        "languages": [],
        **context,
    }
    response = pages.render(f"dashboard/{template}", full, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _keep(response: Response, request: Request, name: str, value: str, strict: bool) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="strict" if strict else "lax",
        secure=_secure(request),
    )


def _forget(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=PREFIX, httponly=True, secure=_secure(request))


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path of this site, never elsewhere."""
    if (
        value
        and value.startswith(PREFIX)
        and not value.startswith("//")
        and "\\" not in value
        and all(32 < ord(ch) < 127 for ch in value)
        and not value.startswith(f"{PREFIX}/login")
    ):
        return value
    return f"{PREFIX}/"


def _chosen(site: Site, slug: str | None) -> WebState | None:
    return site.company(slug) if slug else None


def _look(site: Site, slug: str | None) -> WebState | None:
    """Whose look the login page wears: the company asked for, or the only one served."""
    chosen = _chosen(site, slug)
    if chosen is not None:
        return chosen
    return site.default if len(site.companies) == 1 else None


def _login_page(
    request: Request,
    site: Site,
    *,
    slug: str | None,
    next_path: str,
    email: str = "",
    message: str | None = None,
    choices: list[WebState] | None = None,
    status: int = 200,
) -> Response:
    look = _look(site, slug)
    state = look or site.default
    language, locale = language_of(request, state.ws.config.company.locale)
    key = request.cookies.get(LOGIN_COOKIE)
    if not key or len(key) > 64:
        key = secrets.token_urlsafe(24)
    context = {
        "csrf": form_token(site.default.ws.secret, key, LOGIN_SCOPE),
        "next": next_path,
        "email": email,
        "message": message,
        "slug": slug if _chosen(site, slug) is not None else None,
        "choices": [(s.ws.config.company.id, s.ws.config.company.name) for s in choices or []],
        "languages": [
            (code, f"{PREFIX}/language/{code}?next={quote(str(request.url.path), safe='')}")
            for code in LANGUAGES
            if code != language
        ],
    }
    response = _plain(state.pages, look, "login.j2", language, locale, context, status)
    _keep(response, request, LOGIN_COOKIE, key, strict=True)
    return response


@router.get("/login", name="dashboard_login")
def login_page(
    request: Request,
    next: str | None = None,
    company: str | None = None,
    ended: str | None = None,
    out: str | None = None,
) -> Response:
    site = site_of(request)
    said = words(language_of(request, site.default.ws.config.company.locale)[0])
    message = said["session_ended"] if ended else said["logged_out"] if out else None
    return _login_page(request, site, slug=company, next_path=_safe_next(next), message=message)


def _text(form: Any, name: str, limit: int = 1100) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


@router.post("/login", name="dashboard_login_post")
async def login(request: Request) -> Response:
    site = site_of(request)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_FORM:
        raise Refused(413 if declared.isdigit() else 411, "bad_form")
    form = await request.form(max_files=0, max_fields=20)
    key = request.cookies.get(LOGIN_COOKIE)
    sent = form.get("csrf")
    if not key or not isinstance(sent, str):
        raise Refused(403, "forbidden_form")
    if not tokens_match(site.default.ws.secret, key, LOGIN_SCOPE, sent):
        raise Refused(403, "forbidden_form")
    email, password = _text(form, "email").strip(), _text(form, "password")
    slug = _text(form, "company", 100) or None
    next_path = _safe_next(_text(form, "next", 2000))
    chosen = _chosen(site, slug)
    candidates = [chosen] if chosen is not None else list(site.companies.values())
    now = site.default.now()
    address = client_of(request).ip or "unknown"
    account = email.lower()
    by_address: FailedAuth = request.app.state.staff_failures_by_address
    by_account: FailedAuth = request.app.state.staff_failures_by_account
    language = language_of(request, (chosen or site.default).ws.config.company.locale)[0]
    said = words(language)
    wait = max(by_address.blocked_for(address, now) or 0, by_account.blocked_for(account, now) or 0)
    if wait:
        response = _login_page(
            request,
            site,
            slug=slug,
            next_path=next_path,
            email=email,
            message=said["login_limited"].format(seconds=wait),
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def check() -> list[tuple[WebState, StaffUser]]:
        found: list[tuple[WebState, StaffUser]] = []
        readers = {id(s.reader): s.reader for s in candidates}
        for reader in readers.values():
            mine = {s.ws.company_id: s for s in candidates if s.reader is reader}
            with reader.connect() as conn:
                users = authenticate(conn, mine, email, password)
            found += [(mine[u.company_id], u) for u in users]
        return found

    matched = await run_in_threadpool(check)
    if not matched:
        by_address.failed(address, now)
        by_account.failed(account, now)
        return _login_page(
            request,
            site,
            slug=slug,
            next_path=next_path,
            email=email,
            message=said["login_failed"],
            status=401,
        )
    if len(matched) > 1:
        return _login_page(
            request,
            site,
            slug=None,
            next_path=next_path,
            email=email,
            message=said["login_choose"],
            choices=[state for state, _ in matched],
        )
    state, user = matched[0]
    client = client_of(request)

    def begin() -> str:
        with state.ws.engine.begin() as conn:
            return start_session(conn, user, now, client.ip, client.user_agent)

    token = await run_in_threadpool(begin)
    # A hash made at less than today's cost is made again, now the password is known.
    await run_in_threadpool(raise_hash_cost, state.ws.engine, user.id, password)
    response = RedirectResponse(next_path, status_code=303)
    _keep(response, request, SESSION_COOKIE, token, strict=False)
    _forget(response, request, LOGIN_COOKIE)
    return response


@router.post("/logout", name="dashboard_logout")
async def logout(request: Request, who: StaffDep) -> Response:
    await posted(request, who, "read-only")

    def end() -> None:
        with who.state.ws.engine.begin() as conn:
            end_session(conn, who.token)

    await run_in_threadpool(end)
    known: KnownSessions = request.app.state.staff_sessions
    known.forget(who.session.digest)
    response = RedirectResponse(f"{PREFIX}/login?out=1", status_code=303)
    _forget(response, request, SESSION_COOKIE)
    return response


@router.get("/language/{code}", name="dashboard_language")
def language(request: Request, code: str, next: str | None = None) -> Response:
    """Show the dashboard in ``code`` from now on (a cookie), and go back."""
    if code not in LANGUAGES:
        raise Refused(404, "not_found")
    target = next if next and next.startswith(f"{PREFIX}/login") else _safe_next(next)
    if "//" in target or "\\" in target:
        target = f"{PREFIX}/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        LANGUAGE_COOKIE,
        code,
        path=PREFIX,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response
