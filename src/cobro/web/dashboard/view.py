"""The dashboard's frame: the screens in its navigation, and the context every page is
rendered with (the company's name, logo and colour, the user, the language, the form
token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse

from cobro.engine.apikeys import Role
from cobro.web.dashboard.labels import LANGUAGES, words
from cobro.web.dashboard.session import PREFIX, Staff
from cobro.web.deps import WebState


@dataclass(frozen=True)
class Screen:
    """An entry of the navigation: its key (``nav_<key>`` is its label), its path, and the
    least role that sees it. A new screen is a router module plus an entry here."""

    key: str
    path: str
    role: Role = "read-only"


SCREENS: list[Screen] = [
    Screen("overview", f"{PREFIX}/"),
    Screen("debtors", f"{PREFIX}/debtors"),
    Screen("messages", f"{PREFIX}/messages"),
    Screen("tasks", f"{PREFIX}/tasks"),
    Screen("queue", f"{PREFIX}/disputes"),
    Screen("simulation", f"{PREFIX}/simulation"),
    Screen("policies", f"{PREFIX}/policies"),
    # Configuration: every role sees it, an admin changes it.
    Screen("actions", f"{PREFIX}/actions"),
    Screen("segments", f"{PREFIX}/segments"),
    Screen("communications", f"{PREFIX}/settings/communications"),
    Screen("banking", f"{PREFIX}/banking"),
    Screen("audit", f"{PREFIX}/audit"),
]


def company_look(state: WebState) -> dict[str, Any]:
    """The company's name, logo and where its brand style sheet is served."""
    company = state.ws.config.company
    branding = company.branding
    brand = f"/brand/{company.id}"
    logo = f"{brand}/logo" if branding.logo_file else branding.logo_url
    return {"name": company.name, "logo": logo, "brand": brand, "footer": branding.footer}


def here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def render(
    who: Staff,
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    screen: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A dashboard page for ``who``: ``template`` (under ``dashboard/``) in the frame."""
    state = who.state
    back = quote(here(request), safe="")
    full = {
        "L": words(who.language),
        "language": who.language,
        "languages": [
            (code, f"{PREFIX}/language/{code}?next={back}")
            for code in LANGUAGES
            if code != who.language
        ],
        "locale": who.locale,
        "tz": ZoneInfo(state.ws.config.company.timezone),
        "company": company_look(state),
        "brand": company_look(state)["brand"],
        "nav": [
            {"key": s.key, "path": s.path, "current": s.key == screen}
            for s in SCREENS
            if who.can(s.role)
        ],
        "user": who.session.user,
        "csrf": who.csrf,
        "can_act": who.can("collector"),
        "can_configure": who.can("admin"),
        "prefix": PREFIX,
        **context,
    }
    response = state.pages.render(f"dashboard/{template}", full, status)
    response.headers["Cache-Control"] = "no-store"
    return response
