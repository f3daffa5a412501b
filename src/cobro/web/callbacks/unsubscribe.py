"""The one-click unsubscribe of a reminder email (RFC 8058) at ``/unsubscribe/{token}``.

A mail client's one-click POST (``List-Unsubscribe=One-Click``) or the button of the page
a GET shows records the debtor's opt-out of email; a GET alone changes nothing (mail
scanners follow links). The token is signed per message like the portal links; a
malformed, altered or foreign one gets a plain 404 and records nothing.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from cobro.engine.optouts import add_optout, read_unsubscribe_token, token_company
from cobro.errors import CobroError
from cobro.store import tables as t
from cobro.web.deps import WebState, site_of

router = APIRouter(prefix="/unsubscribe", include_in_schema=False)

_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>
"""
_WORDS = {
    "es": {
        "title": "Darse de baja",
        "ask": "¿Dejar de recibir recordatorios por correo electrónico de {company}?",
        "button": "Darme de baja",
        "done": "No recibirá más recordatorios por correo electrónico de {company}.",
    },
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving reminders by email from {company}?",
        "button": "Unsubscribe",
        "done": "You will receive no more reminders by email from {company}.",
    },
}


def _company(request: Request, token: str) -> WebState | None:
    return site_of(request).company(token_company(token))


def _page(state: WebState, done: bool, token: str) -> HTMLResponse:
    lang = "es" if state.ws.config.company.locale.startswith("es") else "en"
    words = _WORDS[lang]
    company = escape(state.ws.config.company.name)
    form = (
        ""
        if done
        else f'<form method="post" action="/unsubscribe/{escape(token)}">'
        f'<button type="submit">{words["button"]}</button></form>'
    )
    return HTMLResponse(
        _PAGE.format(
            lang=lang,
            title=words["title"],
            text=words["done" if done else "ask"].format(company=company),
            form=form,
        )
    )


def _refused() -> Response:
    return PlainTextResponse("Not found\n", status_code=404)


@router.get("/{token}")
def ask(request: Request, token: str) -> Response:
    state = _company(request, token)
    if state is None:
        return _refused()
    try:
        read_unsubscribe_token(state.ws.secret, token, state.ws.config.company.id)
    except CobroError:
        return _refused()
    return _page(state, False, token)


@router.post("/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    state = _company(request, token)
    if state is None:
        return _refused()
    ws = state.ws
    try:
        found = read_unsubscribe_token(ws.secret, token, ws.config.company.id)
    except CobroError:
        return _refused()

    def work() -> bool:
        c = t.customers.c
        with ws.engine.begin() as conn:
            customer = conn.execute(
                select(c.id).where(c.company_id == ws.company_id, c.external_id == found.customer)
            ).scalar()
            if customer is None:
                return False
            add_optout(
                conn,
                ws.company_id,
                int(customer),
                found.channel,
                "unsubscribe",
                state.now(),
                f"claim {found.outbox_id}",
            )
            return True

    if not await run_in_threadpool(work):
        return _refused()
    return _page(state, True, token)
