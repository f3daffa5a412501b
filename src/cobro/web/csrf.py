"""Forms are accepted only from the page they belong to: a per-browser cookie, and in each
form a signature of that cookie and the link's token, checked on every POST. The
dashboard signs its forms the same way over the session's token."""

from __future__ import annotations

import hmac
import re
import secrets

from itsdangerous import Signer
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "cobro_browser"
FIELD = "csrf"
_KEY = re.compile(r"[A-Za-z0-9_-]{20,64}")


class FormRefused(Exception):
    """A POST without the form token of its page (or without the browser's cookie)."""


def browser_key(request: Request) -> str | None:
    """The browser's key from its cookie, if it sent a well-formed one."""
    value = request.cookies.get(COOKIE)
    return value if value and _KEY.fullmatch(value) else None


def new_browser_key() -> str:
    return secrets.token_urlsafe(24)


def form_token(secret: str, browser: str, link_token: str) -> str:
    """What a page's forms carry: bound to this browser and to this link."""
    signer = Signer(secret, salt="cobro.portal.form")
    return signer.get_signature(f"{browser}\n{link_token}".encode()).decode("ascii")


def tokens_match(secret: str, browser: str, scope: str, sent: str) -> bool:
    """Whether ``sent`` is the form token of ``browser`` (a per-browser secret: the
    portal's browser key, a dashboard session's token) for ``scope``."""
    return hmac.compare_digest(sent.encode(), form_token(secret, browser, scope).encode())


def check_form(secret: str, request: Request, form: FormData, link_token: str) -> None:
    """``FormRefused`` unless ``form`` carries the token of this browser and link."""
    browser = browser_key(request)
    sent = form.get(FIELD)
    if browser is None or not isinstance(sent, str):
        raise FormRefused("no form token or no browser cookie")
    if not tokens_match(secret, browser, link_token, sent):
        raise FormRefused("the form token does not match")


def keep_browser_key(response: Response, request: Request, browser: str) -> None:
    """Set the browser's key: HttpOnly, SameSite=Strict, Secure over https, for the portal's
    paths only; it lasts as long as the browser session."""
    response.set_cookie(
        COOKIE,
        browser,
        path="/portal/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
