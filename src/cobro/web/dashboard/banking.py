"""Banking notifications (seed 000's "Contacts and delivery › Banking notifications"): for
each notice type (stop payment, bulk stop payment, direct-deposit change, direct-deposit
reversal), the contacts assigned to it; contacts added (only those with the banking role
are offered), a type's contacts edited, one removed after a confirmation ("Yes, remove").
With nobody assigned, a type's notices go to the customer's primary contacts.

The assignments are data (``cobro contacts assign|unassign|list`` and
``cobro.engine.banking``), not ``cobro.yaml``; the seed places them among the company's
settings, so, like the configuration, only an admin changes them. Every change is in the
audit log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.domain.model import BANKING_TYPES
from cobro.engine.audit import record
from cobro.engine.banking import (
    AssignmentRefused,
    assign,
    assignments,
    candidates,
    unassign,
)
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.settings import text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
PATH = f"{PREFIX}/banking"
DONE = ("added", "saved", "removed")


def _type(notice_type: str) -> str:
    if notice_type not in BANKING_TYPES:
        raise not_found()
    return notice_type


def _assigned(conn: Connection, who: Staff, notice_type: str) -> list[str]:
    return [a.contact for a in assignments(conn, who.company_id) if a.notice_type == notice_type]


def _page(
    who: Staff,
    request: Request,
    *,
    q: str = "",
    chosen_type: str | None = None,
    done: str | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    with who.state.reader.connect() as conn:
        found = assignments(conn, who.company_id)
        offered = candidates(conn, who.company_id, q)
    return render(
        who,
        request,
        "banking.j2",
        {
            "path": PATH,
            "types": BANKING_TYPES,
            "by_type": {
                kind: [a for a in found if a.notice_type == kind] for kind in BANKING_TYPES
            },
            "candidates": offered,
            "q": q,
            "chosen_type": chosen_type,
            "done": done if done in DONE else None,
            "problems": problems or [],
        },
        screen="banking",
        status=status,
    )


@router.get("/banking", name="dashboard_banking")
def banking(request: Request, who: StaffDep, q: str = "", done: str | None = None) -> Response:
    return _page(who, request, q=q[:200], done=done)


def _contacts(form: FormData) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in form.getlist("contact") if isinstance(v, str)))


def _audit(
    conn: Connection, who: Staff, action: str, notice_type: str, old: list[str], new: list[str]
) -> None:
    record(
        conn,
        who.company_id,
        who.state.now(),
        who.session.user.email,
        who.role,
        action,
        [{"path": f"banking.{notice_type}", "old": sorted(old), "new": sorted(new)}],
        subject=notice_type,
    )


def _change(who: Staff, notice_type: str, add: list[str], remove: list[str], action: str) -> None:
    """Assign ``add`` and unassign ``remove`` in one transaction, with its audit entry."""
    with who.state.ws.engine.begin() as conn:
        before = _assigned(conn, who, notice_type)
        if add:
            assign(conn, who.company_id, notice_type, add, who.state.now())
        if remove:
            unassign(conn, who.company_id, notice_type, remove)
        after = _assigned(conn, who, notice_type)
        if before != after:
            _audit(conn, who, action, notice_type, before, after)


@router.post("/banking/add", name="dashboard_banking_add")
async def banking_add(request: Request, who: StaffDep) -> Response:
    """Assign the contacts chosen to a notice type (all or none: a contact without the
    banking role assigns nobody, and the page says why)."""
    form = await posted(request, who, "admin")
    notice_type = _type(text(form, "type", 40))
    chosen = _contacts(form)
    said = _words(who)
    if not chosen:
        problems = [said["bank_choose"]]
    else:
        try:
            await run_in_threadpool(_change, who, notice_type, chosen, [], "banking.assign")
        except AssignmentRefused as exc:
            problems = [str(exc)]
        else:
            return RedirectResponse(f"{PATH}?done=added#type-{notice_type}", status_code=303)
    return await run_in_threadpool(
        lambda: _page(who, request, chosen_type=notice_type, problems=problems, status=422)
    )


def _words(who: Staff) -> dict[str, str]:
    from cobro.web.dashboard.labels import words

    return words(who.language)


def _edit_page(
    who: Staff,
    request: Request,
    notice_type: str,
    *,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    with who.state.reader.connect() as conn:
        held = assignments(conn, who.company_id)
        offered = candidates(conn, who.company_id, limit=1000)
    assigned = [a for a in held if a.notice_type == notice_type]
    names = {a.contact for a in assigned}
    return render(
        who,
        request,
        "banking_edit.j2",
        {
            "path": PATH,
            "notice_type": notice_type,
            "assigned": assigned,
            "others": [c for c in offered if c.contact not in names],
            "problems": problems or [],
        },
        screen="banking",
        status=status,
    )


@router.get("/banking/{notice_type}/edit", name="dashboard_banking_edit")
def banking_edit(request: Request, notice_type: str, who: StaffDep) -> Response:
    return _edit_page(who, request, _type(notice_type))


def _confirm(
    who: Staff,
    request: Request,
    notice_type: str,
    action: str,
    removing: list[str],
    keep: list[str],
) -> Response:
    with who.state.reader.connect() as conn:
        held = {
            a.contact: a for a in assignments(conn, who.company_id) if a.notice_type == notice_type
        }
    if not all(r in held for r in removing):
        raise not_found()
    context: dict[str, Any] = {
        "path": PATH,
        "notice_type": notice_type,
        "action": action,
        "removing": [held[r] for r in removing],
        "keep": keep,
        "none_left": not [c for c in held if c not in removing] and not keep,
    }
    return render(who, request, "banking_confirm.j2", context, screen="banking")


@router.post("/banking/{notice_type}/edit", name="dashboard_banking_edit_save")
async def banking_edit_save(request: Request, notice_type: str, who: StaffDep) -> Response:
    """The type's contacts become those ticked; removing any asks first ("Yes, remove")."""
    form = await posted(request, who, "admin")
    notice_type = _type(notice_type)
    wanted = _contacts(form)

    def held() -> list[str]:
        with who.state.reader.connect() as conn:
            return _assigned(conn, who, notice_type)

    before = await run_in_threadpool(held)
    add = [c for c in wanted if c not in before]
    remove = [c for c in before if c not in wanted]
    if remove and form.get("confirm") != "yes":
        return await run_in_threadpool(
            _confirm, who, request, notice_type, f"{PATH}/{notice_type}/edit", remove, wanted
        )
    try:
        await run_in_threadpool(_change, who, notice_type, add, remove, "banking.edit")
    except AssignmentRefused as exc:
        problems = [str(exc)]
        return await run_in_threadpool(
            lambda: _edit_page(who, request, notice_type, problems=problems, status=422)
        )
    return RedirectResponse(f"{PATH}?done=saved#type-{notice_type}", status_code=303)


@router.get("/banking/{notice_type}/remove", name="dashboard_banking_remove")
def banking_remove(
    request: Request, notice_type: str, who: StaffDep, contact: str = ""
) -> Response:
    """Ask before removing a contact from a notice type."""
    return _confirm(who, request, _type(notice_type), f"{PATH}/{notice_type}/remove", [contact], [])


@router.post("/banking/{notice_type}/remove", name="dashboard_banking_remove_post")
async def banking_remove_post(request: Request, notice_type: str, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    notice_type = _type(notice_type)
    contact = text(form, "contact", 100)
    if form.get("confirm") != "yes":
        return await run_in_threadpool(
            _confirm, who, request, notice_type, f"{PATH}/{notice_type}/remove", [contact], []
        )
    try:
        await run_in_threadpool(_change, who, notice_type, [], [contact], "banking.unassign")
    except AssignmentRefused:
        raise not_found() from None
    return RedirectResponse(f"{PATH}?done=removed#type-{notice_type}", status_code=303)
