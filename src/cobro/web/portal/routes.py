"""The portal's routes: the page of a link (a GET records ``opened``), and its forms: confirm
reading (the only way a ``read`` is recorded), dispute an item, promise to pay.

Every route reads the link first: a malformed, altered or foreign token, or one for no
claim of this company, gets a plain 404 page and an expired one a 410, with no data and
nothing recorded. Every POST carries the form token of its page (``cobro.web.csrf``):
without it, 403 and nothing recorded. A refused form shows the page again (422); an
accepted one redirects to the page, which confirms it (post/redirect/get).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from typing import TypeVar

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cobro.engine.links import LinkRefused, PortalLink, read_token
from cobro.engine.responses import (
    Client,
    ResponseError,
    add_promise,
    open_dispute,
    record_view,
)
from cobro.store.db import lock_company
from cobro.web.csrf import (
    FormRefused,
    browser_key,
    check_form,
    keep_browser_key,
    new_browser_key,
)
from cobro.web.deps import OPENED_AGAIN, State, WebState, client_of, web_state
from cobro.web.portal.forms import DisputeForm, PromiseForm, Upload, read_dispute, read_promise
from cobro.web.portal.queries import (
    Debtor,
    DebtorPage,
    debtor_page,
    find_debtor,
    opened_since,
    page_version,
)
from cobro.web.portal.view import (
    DONE,
    FORM_TOKEN_SLOT,
    Outcome,
    page_html,
    page_language,
    page_words,
    portal_path,
    refused_page,
    with_form_token,
)
from cobro.web.portal.view import debtor_page as render_page

router = APIRouter(prefix="/portal")

FORM_OVERHEAD = 64 * 1024  # what a form's fields (and a dispute's multipart framing) may take
T = TypeVar("T")


class _Refused(Exception):
    """A refusal shown as the plain page: reason, status, and the page to go back to."""

    def __init__(self, reason: str, status: int, lang: str | None, back: str | None = None):
        super().__init__(reason)
        self.reason, self.status, self.lang, self.back = reason, status, lang, back


def install_handlers(app: FastAPI) -> None:
    """Show the portal's refusals as pages (registered by the app factory)."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        state = web_state(request)
        return refused_page(state, exc.reason, exc.lang, exc.status, exc.back)

    app.add_exception_handler(_Refused, refused)


def _link(state: WebState, token: str, lang: str | None) -> PortalLink:
    company = state.ws.config.company
    try:
        return read_token(
            state.ws.secret, token, company.id, state.now(), company.link_max_age_days
        )
    except LinkRefused as exc:
        raise _Refused(exc.reason, 410 if exc.reason == "expired" else 404, lang) from None


async def _known_link(state: WebState, token: str, lang: str | None) -> PortalLink:
    """The link of a form's URL, refused (404) before its form is read when it names no
    claim of this company's debtor, like the page."""
    link = _link(state, token, lang)

    def known() -> None:
        with state.reader.connect() as conn:
            _debtor(conn, state, link, lang)

    await run_in_threadpool(known)
    return link


def _debtor(conn: Connection, state: WebState, link: PortalLink, lang: str | None) -> Debtor:
    debtor = find_debtor(conn, state.ws.company_id, link)
    if debtor is None:
        raise _Refused("invalid", 404, lang)
    return debtor


def _page(conn: Connection, state: WebState, debtor: Debtor) -> DebtorPage:
    return debtor_page(conn, state.ws.config, state.ws.company_id, debtor, state.today())


def _in_transaction(state: WebState, work: Callable[[Connection], T]) -> T:
    with state.ws.engine.begin() as conn:
        return work(conn)


def _declared_length(request: Request, token: str, lang: str | None) -> int:
    """The body's declared length. Browsers always declare it; a body without one (chunked)
    is refused, so that no form is ever read past the length checked here (the server
    reads no more than a request declares)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise _Refused("bad_form", 411, lang, portal_path(request, token))
    return int(declared)


async def _form(
    request: Request,
    state: WebState,
    token: str,
    lang: str | None,
    max_files: int = 0,
    max_length: int = FORM_OVERHEAD,
) -> FormData:
    """The form of a POST, once its length and its form token are right."""
    if _declared_length(request, token, lang) > max_length:
        raise _Refused("bad_form", 413, lang, portal_path(request, token))
    form = await request.form(max_files=max_files, max_fields=200)
    try:
        check_form(state.ws.secret, request, form, token)
    except FormRefused:
        raise _Refused("forbidden", 403, lang, portal_path(request, token)) from None
    return form


def _form_again(
    state: WebState,
    request: Request,
    token: str,
    found: DebtorPage,
    lang: str | None,
    outcome: Outcome,
) -> Response:
    """The page again, with the refused form, its values and what is wrong (422)."""
    browser = browser_key(request) or new_browser_key()
    response = render_page(state, request, token, found, browser, lang, outcome, status=422)
    keep_browser_key(response, request, browser)
    return response


def _again(request: Request, token: str, lang: str | None, done: str) -> RedirectResponse:
    query = f"?done={done}" + (f"&lang={lang}" if lang in ("es", "en") else "")
    return RedirectResponse(portal_path(request, token) + query, status_code=303)


def record_opened(
    conn: Connection, state: WebState, debtor: Debtor, client: Client, at: datetime
) -> datetime:
    """Record that ``client`` opened the page of ``debtor``'s claim ``at`` (in the
    transaction of ``conn``), unless a visit of the same address and browser is recorded
    within ``OPENED_AGAIN`` before it; when that visit was recorded. The database decides,
    under the company's write lock (``BEGIN IMMEDIATE`` on SQLite, the company's row on
    PostgreSQL): of first visits made at once through several server processes, each of
    which found none recorded, one is recorded."""
    lock_company(conn, state.ws.company_id)
    before = opened_since(conn, debtor, client, at - OPENED_AGAIN)
    if before is not None:
        return before
    record_view(conn, state.ws.company_id, debtor.id, debtor.outbox_id, "opened", at, client)
    return at


LINKED = "linked"  # the one version of ``WebState.linked``'s entries


def kept_page(state: WebState, key: Hashable, linked: Hashable) -> str | None:
    """On SQLite, the page kept for ``key`` when its data has not changed, read on the
    event loop: one indexed read of a local file beside the writers (WAL readers do not
    wait for them) costs less than the trip to a worker thread, which is most of a kept
    page's cost. None (the page is then loaded in a thread) when anything else is needed:
    a link not seen before, a page to render, a visit to record, or another database."""
    if state.reader.dialect.name != "sqlite":
        return None
    debtor = state.linked.get(linked, LINKED)
    if debtor is None:
        return None
    with state.reader.connect() as conn:
        version = page_version(conn, state.ws.company_id, debtor)
    return state.rendered.get(key, version)


@router.get("/{token}", name="portal_page")
async def page(
    request: Request, token: str, state: State, lang: str | None = None, done: str | None = None
) -> Response:
    """The debtor's page. Opening it is recorded as ``opened`` (weak: mail scanners open
    links too), except on the way back from one of its forms, and once an hour at most for
    the same claim, address and browser (a page reloaded is not opened again).

    The page is rendered again only when what it shows has changed (``page_version``);
    each browser gets its own form token in it."""
    link = _link(state, token, lang)
    client = client_of(request)
    now = state.now()
    outcome = Outcome(done=done if done in DONE else None)
    key = (link.customer, link.outbox_id, lang, outcome.done, state.today())
    viewer = (link.outbox_id, client.ip, client.user_agent)
    # Of concurrent first requests of one viewer, one checks and records the visit.
    check_opened = done is None and state.opened.claim(viewer, now)

    linked = (link.outbox_id, link.customer)

    def load() -> tuple[str | None, DebtorPage | None, tuple[object, ...]]:
        with state.reader.connect() as conn:
            # One query when the page is kept: the version of the debtor the link named
            # before, which also proves the link still names that debtor's claim.
            known = state.linked.get(linked, LINKED)
            html: str | None = None
            if known is not None:
                debtor = known
                version = page_version(conn, state.ws.company_id, debtor)
                html = state.rendered.get(key, version)
            if html is None:
                debtor = _debtor(conn, state, link, lang)
                state.linked.put(linked, LINKED, debtor)
                version = page_version(conn, state.ws.company_id, debtor)
                html = state.rendered.get(key, version)
            found = _page(conn, state, debtor) if html is None else None
            since = now - OPENED_AGAIN
            opened = opened_since(conn, debtor, client, since) if check_opened else None
        if check_opened:
            if opened is None:
                opened = _in_transaction(
                    state, lambda conn: record_opened(conn, state, debtor, client, now)
                )
            state.opened.mark(viewer, opened)
        return html, found, version

    html = kept_page(state, key, linked) if not check_opened else None
    if html is not None:
        found = None
    else:
        try:
            html, found, version = await run_in_threadpool(load)
        except BaseException:
            if check_opened:
                state.opened.forget(viewer)  # not recorded: the next visit tries again
            raise
    if html is None:
        assert found is not None
        html = page_html(state, request, token, found, lang, outcome, FORM_TOKEN_SLOT)
        state.rendered.put(key, version, html)
    browser = browser_key(request) or new_browser_key()
    response = HTMLResponse(with_form_token(state, html, browser, token))
    keep_browser_key(response, request, browser)
    return response


@router.get("/{token}/statement.pdf", name="portal_statement")
def statement(request: Request, token: str, state: State, lang: str | None = None) -> Response:
    """The debtor's statement of account as a PDF, in the page's language, as of today."""
    from cobro.render.statement import statement_filename, statement_pdf

    link = _link(state, token, lang)
    today = state.today()
    with state.reader.connect() as conn:
        debtor = _debtor(conn, state, link, lang)
        language = page_language(state, debtor.language, lang)
        pdf = statement_pdf(
            conn,
            state.ws.config,
            state.ws.company_id,
            debtor.id,
            language=language,
            on=today,
            root=state.ws.root,
        )
    name = statement_filename(debtor.external_id, today, language)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/{token}/read", name="portal_read")
async def confirm_read(
    request: Request, token: str, state: State, lang: str | None = None
) -> Response:
    """The debtor's explicit "I have read this message": recorded as ``read``, with the
    request's address and user agent."""
    link = await _known_link(state, token, lang)
    await _form(request, state, token, lang)
    client = client_of(request)

    def work(conn: Connection) -> None:
        debtor = _debtor(conn, state, link, lang)
        record_view(
            conn, state.ws.company_id, debtor.id, debtor.outbox_id, "read", state.now(), client
        )

    await run_in_threadpool(_in_transaction, state, work)
    return _again(request, token, lang, "read")


async def _upload(form: FormData, limit: int) -> Upload | None:
    file = form.get("attachment")
    if not isinstance(file, UploadFile) or not file.filename:
        return None
    return Upload(file.filename, await file.read(limit + 1))


@router.post("/{token}/disputes", name="portal_dispute")
async def dispute(request: Request, token: str, state: State, lang: str | None = None) -> Response:
    """Dispute one of the debtor's open items, with a reason and an optional PDF or image;
    a staff task is opened and the item is left out of claims while the dispute is open."""
    link = await _known_link(state, token, lang)
    settings = state.ws.config.portal
    if not settings.disputes:
        raise _Refused("disputes_off", 403, lang, portal_path(request, token))
    limit = settings.dispute_attachment_max_kb * 1024
    if _declared_length(request, token, lang) > limit + FORM_OVERHEAD:
        form, upload, too_big = FormData(), None, True  # not read: the file is too large
    else:
        form = await _form(request, state, token, lang, 1, limit + FORM_OVERHEAD)
        upload, too_big = await _upload(form, limit), False
    client = client_of(request)

    def work(conn: Connection) -> tuple[DebtorPage, DisputeForm] | None:
        debtor = _debtor(conn, state, link, lang)
        found = _page(conn, state, debtor)
        said = page_words(state, found, lang)
        asked = read_dispute(
            form,
            upload,
            {i.id for i in found.disputable()},
            settings.dispute_attachment_max_kb,
            said,
        )
        if too_big:
            asked.problems = [said["err_big"].format(kb=settings.dispute_attachment_max_kb)]
        if asked.problems:
            return found, asked
        assert asked.item is not None
        try:
            with conn.begin_nested():
                open_dispute(
                    conn,
                    state.ws.company_id,
                    debtor.id,
                    asked.item,
                    asked.reason,
                    state.now(),
                    source="portal",
                    client=client,
                    outbox_id=debtor.outbox_id,
                    attachment=asked.attachment,
                )
        except ResponseError as exc:  # e.g. disputed meanwhile from another window
            asked.problems.append(said["err_refused"].format(why=exc))
            return found, asked
        return None

    refused = await run_in_threadpool(_in_transaction, state, work)
    if refused is None:
        return _again(request, token, lang, "dispute")
    found, asked = refused
    return _form_again(state, request, token, found, lang, Outcome(dispute=asked))


@router.post("/{token}/promises", name="portal_promise")
async def promise(request: Request, token: str, state: State, lang: str | None = None) -> Response:
    """Promise to pay one or more open items by a date, at most ``portal.promise_max_days``
    ahead; they are paused until that date plus ``portal.promise_grace_days``."""
    link = await _known_link(state, token, lang)
    settings = state.ws.config.portal
    form = await _form(request, state, token, lang)
    client = client_of(request)

    def work(conn: Connection) -> tuple[DebtorPage, PromiseForm] | None:
        debtor = _debtor(conn, state, link, lang)
        found = _page(conn, state, debtor)
        today = state.today()
        said = page_words(state, found, lang)
        asked = read_promise(
            form, {i.id for i in found.promisable()}, today, settings.promise_max_days, said
        )
        if asked.problems:
            return found, asked
        assert asked.promised_on is not None
        try:
            with conn.begin_nested():
                add_promise(
                    conn,
                    state.ws.company_id,
                    debtor.id,
                    asked.items,
                    asked.promised_on,
                    settings.promise_grace_days,
                    state.now(),
                    today=today,
                    max_days=settings.promise_max_days,
                    source="portal",
                    client=client,
                    outbox_id=debtor.outbox_id,
                    note=asked.note,
                )
        except ResponseError as exc:
            asked.problems.append(said["err_refused"].format(why=exc))
            return found, asked
        return None

    refused = await run_in_threadpool(_in_transaction, state, work)
    if refused is None:
        return _again(request, token, lang, "promise")
    found, asked = refused
    return _form_again(state, request, token, found, lang, Outcome(promise=asked))
