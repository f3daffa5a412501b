"""A template edited on its page (admins only): the form's text previewed in both
languages and as the SMS line without saving it, saved as the workspace's own copy
(``templates/NAME.LANG.j2``) once ``cobro check``'s template checks accept it, and Cobro's
default restored (the workspace's copy removed, after a confirmation step).

Only a template the configuration names can be edited (any other name is not found). A
refused text is shown again with ``cobro check``'s reasons word for word (422) and
nothing is written; a template changed since the form was shown is not written over
(409). Each change is in the audit log, with the texts before and after.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.config.editing import ConcurrentEdit, EditRefused
from cobro.config.template_files import (
    MAX_SOURCE,
    read_template,
    restore_default,
    save_template,
    valid_name,
)
from cobro.render.labels import LANGUAGES
from cobro.web.dashboard.policies import Drafts, template_page, uses_of
from cobro.web.dashboard.session import PREFIX, Refused, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.settings import audit_changes, text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
# The form: a source per language at its limit (a character may take 4 bytes, encoded
# in the form at most 3 times that) and the rest.
MAX_TEMPLATE_FORM = len(LANGUAGES) * MAX_SOURCE * 4 * 3 + 16 * 1024


def _known(who: Staff, name: str) -> set[str]:
    """The fields that name the template (404 for a name the configuration does not
    know, or that is not a template's name)."""
    if not valid_name(name):
        raise not_found()
    return {u.field for u in uses_of(who, name) if u.field}


def _texts(form: FormData) -> dict[str, str]:
    texts = {}
    for language in LANGUAGES:
        value = form.get(f"source_{language}")
        if isinstance(value, str):
            if len(value) > MAX_SOURCE:
                raise Refused(413, "bad_form")
            texts[language] = value.replace("\r\n", "\n")
    return texts


@router.post("/templates/{name}", name="dashboard_template_save")
async def template_post(request: Request, name: str, who: StaffDep) -> Response:
    """``do=preview``: the page with the form's text previewed, nothing saved;
    ``do=save``: the text saved, or refused with ``cobro check``'s reasons."""
    form = await posted(request, who, "admin", limit=MAX_TEMPLATE_FORM)
    fields = await run_in_threadpool(_known, who, name)
    texts = _texts(form)
    debtor = text(form, "debtor", 200)
    drafts: Drafts = request.app.state.dashboard_drafts
    if text(form, "do", 10) != "save":
        draft = drafts.put(who, name, texts)
        return await run_in_threadpool(
            lambda: template_page(who, request, name, debtor, texts=texts, draft=draft)
        )
    root = who.state.ws.root

    def work() -> Response:
        try:
            changes = save_template(root, name, text(form, "digest", 64), texts, fields)
        except ConcurrentEdit:
            return template_page(who, request, name, debtor, conflict=True, status=409)
        except EditRefused as exc:
            return template_page(
                who,
                request,
                name,
                debtor,
                texts=texts,
                draft=drafts.put(who, name, texts),
                refused=exc.problems,
                status=422,
            )
        if changes:
            audit_changes(who, "config.template.save", changes, name)
        query = urlencode({"done": "saved", **({"debtor": debtor} if debtor else {})})
        return RedirectResponse(f"{PREFIX}/templates/{name}?{query}", status_code=303)

    return await run_in_threadpool(work)


@router.get("/templates/{name}/restore", name="dashboard_template_restore")
def template_restore(request: Request, name: str, who: StaffDep) -> Response:
    """Ask before removing the workspace's copy of a template."""
    _known(who, name)
    files = read_template(who.state.ws.root, name)
    if not files.restorable:
        raise not_found()
    page = f"{PREFIX}/templates/{name}"
    copies = ", ".join(f"templates/{name}.{s.language}.j2" for s in files.sources if s.overridden)
    return render(
        who,
        request,
        "confirm.j2",
        {
            "back": page,
            "back_label": "tpl_back",
            "action": f"{page}/restore",
            "question": "tpl_restore_question",
            "what": copies,
            "digest": files.digest,
            "button": "tpl_restore_yes",
        },
        screen="policies",
    )


@router.post("/templates/{name}/restore", name="dashboard_template_restore_post")
async def template_restore_post(request: Request, name: str, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    fields = await run_in_threadpool(_known, who, name)
    root = who.state.ws.root

    def work() -> Response:
        try:
            changes = restore_default(root, name, text(form, "digest", 64), fields)
        except ConcurrentEdit:
            return template_page(who, request, name, "", conflict=True, status=409)
        except EditRefused as exc:
            return template_page(who, request, name, "", refused=exc.problems, status=422)
        if changes:
            audit_changes(who, "config.template.restore", changes, name)
        return RedirectResponse(f"{PREFIX}/templates/{name}?done=restored", status_code=303)

    return await run_in_threadpool(work)
