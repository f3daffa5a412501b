"""Automatic actions (seed 002's "Collections management › Automatic actions"): the
scheduled actions of ``cobro.yaml`` listed, created, edited and deleted. Each is a debt
notice (the statement of account, only to debtors with overdue debt; the payment portal
may be hidden), a message (a template, or a title and a text; a pdf, doc or jpg attached)
or a task (one per debtor of the segment, due on a day and hour), sent on up to three
days of the month (1 to 31, or the last day), to a segment.

An attachment uploaded is kept in the workspace's ``files/`` directory, where
``actions[].attachment`` names it; it is checked as ``cobro check`` checks it (its type
and size) before the configuration is saved, and removed again if the edit is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from cobro.config.actions import ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES
from cobro.config.editing import ConcurrentEdit, EditRefused
from cobro.errors import ConfigProblem
from cobro.web.dashboard.session import PREFIX, Refused, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.settings import Current, checked, current, put, save, text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
PATH = f"{PREFIX}/actions"
TYPES = ("debt_notice", "message", "task")
DAYS = [str(d) for d in range(1, 32)] + ["last"]
FILES_DIR = "files"
# The largest form: an attachment at its limit, and the rest of the form.
MAX_UPLOAD_FORM = MAX_ATTACHMENT_BYTES + 256 * 1024
_INTERNAL = {"_layout", "evidence_pdf", "receipt_pdf", "statement_pdf"}


def template_names(root: Path) -> list[str]:
    """The message templates there are: Cobro's own and the workspace's ``templates/``."""
    from importlib import resources

    found: set[str] = set()
    packaged = resources.files("cobro") / "render" / "templates"
    names = [entry.name for entry in packaged.iterdir()]
    user = root / "templates"
    if user.is_dir():
        names += [p.name for p in user.iterdir()]
    for name in names:
        match = re.fullmatch(r"([A-Za-z0-9_-]+)\.(?:[a-z]{2})\.j2", name)
        if match and match.group(1) not in _INTERNAL:
            found.add(match.group(1))
    return sorted(found)


def _day(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def slug(text_: str) -> str:
    """A key from a description: lower-case letters, digits and dashes, at most 40."""
    ascii_ = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode()
    found = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:40].strip("-")
    return found or "action"


def _free_key(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted[:36]}-{n}" in taken:
        n += 1
    return f"{wanted[:36]}-{n}"


def _actions(found: Current) -> list[dict[str, Any]]:
    if found.data is None:
        return []
    listed = found.data.get("actions") or []
    return [a for a in listed if isinstance(a, dict)]


def _find(found: Current, key: str) -> dict[str, Any]:
    for action in _actions(found):
        if str(action.get("key")) == key:
            return action
    raise not_found()


def _segments(found: Current) -> list[str]:
    segments = (found.data or {}).get("segments") or {}
    return sorted(str(k) for k in segments) if isinstance(segments, dict) else []


def _list_page(
    who: Staff, request: Request, *, done: str | None = None, conflict: bool = False
) -> Response:
    found = current(who)
    return render(
        who,
        request,
        "actions.j2",
        {
            "path": PATH,
            "actions": _actions(found),
            "problems": found.problems,
            "readable": found.data is not None,
            "digest": found.digest,
            "done": done if done in ("created", "saved", "deleted") else None,
            "conflict": conflict,
        },
        screen="actions",
        status=409 if conflict else 200,
    )


@router.get("/actions", name="dashboard_actions")
def actions(request: Request, who: StaffDep, done: str | None = None) -> Response:
    return _list_page(who, request, done=done)


def _form_values(action: dict[str, Any]) -> dict[str, Any]:
    days = [str(d) for d in action.get("days") or []]
    values = {
        "key": str(action.get("key") or ""),
        "type": str(action.get("type") or "debt_notice"),
        "description": str(action.get("description") or ""),
        "segment": str(action.get("segment") or ""),
        "template": str(action.get("template") or ""),
        "title": str(action.get("title") or ""),
        "text": str(action.get("text") or ""),
        "attachment": str(action.get("attachment") or ""),
        "hide_pay_link": bool(action.get("hide_pay_link")),
        "attach_statement": bool(action.get("attach_statement")),
        "message": str(action.get("message") or ""),
        "due_day": str(action.get("due_day") or ""),
        "due_after_days": ""
        if action.get("due_after_days") is None
        else str(action["due_after_days"]),
        "due_time": str(action.get("due_time") or "17:00"),
    }
    for n in (1, 2, 3):
        values[f"day_{n}"] = days[n - 1] if len(days) >= n else ""
    return values


def _sent_values(form: FormData, key: str, attachment: str) -> dict[str, Any]:
    values: dict[str, Any] = {name: text(form, name, 4000) for name in _FIELDS}
    values["key"] = key
    values["attachment"] = attachment
    values["hide_pay_link"] = checked(form, "hide_pay_link")
    values["attach_statement"] = checked(form, "attach_statement")
    return values


_FIELDS = (
    "type",
    "description",
    "segment",
    "template",
    "title",
    "text",
    "message",
    "due_day",
    "due_after_days",
    "due_time",
    "day_1",
    "day_2",
    "day_3",
)


def _form_page(
    who: Staff,
    request: Request,
    values: dict[str, Any],
    *,
    new: bool,
    refused: list[ConfigProblem] | None = None,
    conflict: bool = False,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    found = current(who)
    return render(
        who,
        request,
        "action_form.j2",
        {
            "path": PATH,
            "new": new,
            "values": values,
            "types": TYPES,
            "days": DAYS,
            "segments": _segments(found),
            "templates": template_names(who.state.ws.root),
            "accept": ",".join(sorted(ATTACHMENT_TYPES)),
            "digest": found.digest,
            "readable": found.data is not None,
            "problems": found.problems,
            "refused": [str(p) for p in refused or []],
            "form_problems": problems or [],
            "conflict": conflict,
        },
        screen="actions",
        status=status,
    )


@router.get("/actions/new", name="dashboard_action_new")
def action_new(request: Request, who: StaffDep, type: str = "debt_notice") -> Response:
    values = _form_values({"type": type if type in TYPES else "debt_notice"})
    return _form_page(who, request, values, new=True)


@router.get("/actions/{key}", name="dashboard_action")
def action(request: Request, key: str, who: StaffDep) -> Response:
    return _form_page(who, request, _form_values(_find(current(who), key)), new=False)


def _build(form: FormData, base: dict[str, Any], attachment: str | None) -> dict[str, Any]:
    """The action as the file will hold it: ``base`` (what the file has) with the form's
    fields, and without the fields of the other types."""
    action = dict(base)
    kind = text(form, "type", 20)
    put(action, "description", text(form, "description", 500))
    put(action, "type", kind)
    days = [_day(text(form, f"day_{n}", 5)) for n in (1, 2, 3)]
    put(action, "days", [d for d in days if d != ""])
    put(action, "segment", text(form, "segment", 100))
    if kind == "task":
        for name in (
            "template",
            "title",
            "text",
            "attachment",
            "hide_pay_link",
            "attach_statement",
        ):
            action.pop(name, None)
        put(action, "message", text(form, "message", 2000))
        put(action, "due_day", _day(text(form, "due_day", 5)))
        put(action, "due_after_days", _day(text(form, "due_after_days", 5)))
        put(action, "due_time", text(form, "due_time", 8), "17:00")
    else:
        for name in ("message", "due_day", "due_after_days", "due_time"):
            action.pop(name, None)
        put(action, "template", text(form, "template", 100))
        put(action, "title", text(form, "title", 500))
        put(action, "text", text(form, "text", 4000).replace("\r\n", "\n"))
        put(action, "hide_pay_link", checked(form, "hide_pay_link"), False)
        if kind == "debt_notice":
            put(action, "attach_statement", checked(form, "attach_statement"), False)
        else:
            action.pop("attach_statement", None)
        put(action, "attachment", attachment)
    return action


class _Upload:
    """An uploaded attachment put in ``files/`` while its edit is checked, taken away
    again unless the edit is saved."""

    def __init__(self, root: Path, name: str, data: bytes) -> None:
        self.root, self.data = root, data
        stem = PurePosixPath(name).stem
        suffix = PurePosixPath(name).suffix.lower()
        safe = re.sub(r"[^A-Za-z0-9_-]+", "-", unicodedata.normalize("NFKD", stem))
        safe = safe.encode("ascii", "ignore").decode().strip("-")[:60] or "attachment"
        directory = root / FILES_DIR
        candidate, n = f"{safe}{suffix}", 2
        while (directory / candidate).exists() and (directory / candidate).read_bytes() != data:
            candidate, n = f"{safe}-{n}{suffix}", n + 1
        self.relative = f"{FILES_DIR}/{candidate}"
        self.created = False

    def put(self) -> None:
        path = self.root / self.relative
        if path.exists():  # the same bytes are there already
            return
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.created = True
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.data)

    def take_back(self) -> None:
        if self.created:
            with contextlib.suppress(FileNotFoundError):
                (self.root / self.relative).unlink()


async def _upload(who: Staff, form: FormData) -> _Upload | None:
    sent = form.get("attachment_file")
    if not isinstance(sent, UploadFile) or not sent.filename:
        return None
    data = await sent.read(MAX_ATTACHMENT_BYTES + 1)
    if not data:
        return None
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise Refused(413, "bad_form")
    return _Upload(who.state.ws.root, sent.filename, data)


async def _save_action(request: Request, who: Staff, key: str | None) -> Response:
    form = await posted(request, who, "admin", files=1, limit=MAX_UPLOAD_FORM)
    found = await run_in_threadpool(current, who)
    base = _find(found, key) if key is not None else {}
    upload = await _upload(who, form)
    kept = None if checked(form, "remove_attachment") else base.get("attachment")
    attachment = upload.relative if upload is not None else kept
    if key is None:
        taken = {str(a.get("key")) for a in _actions(found)}
        chosen = text(form, "key", 40) or _free_key(slug(text(form, "description", 500)), taken)
    else:
        chosen = key
    action = {"key": chosen, **_build(form, base, attachment)}

    def edit(data: dict[str, Any]) -> None:
        listed = data.setdefault("actions", [])
        if key is None:
            listed.append(action)
            return
        for index, existing in enumerate(listed):
            if isinstance(existing, dict) and str(existing.get("key")) == key:
                listed[index] = action
                return
        raise not_found()  # removed since the page was opened: the digest says so first

    try:
        await save(
            who,
            text(form, "digest", 64),
            edit,
            action="config.action.create" if key is None else "config.action.edit",
            subject=chosen,
            before_check=upload.put if upload is not None else None,
        )
    except (ConcurrentEdit, EditRefused) as exc:
        if upload is not None:
            upload.take_back()
        values = _sent_values(
            form, chosen if key is not None else text(form, "key", 40), kept or ""
        )
        conflict = isinstance(exc, ConcurrentEdit)
        refused = exc.problems if isinstance(exc, EditRefused) else None
        return await run_in_threadpool(
            lambda: _form_page(
                who,
                request,
                values if not conflict else _form_values(base),
                new=key is None,
                refused=refused,
                conflict=conflict,
                status=409 if conflict else 422,
            )
        )
    return RedirectResponse(
        f"{PATH}?done={'created' if key is None else 'saved'}#action-{chosen}", status_code=303
    )


@router.post("/actions", name="dashboard_action_create")
async def action_create(request: Request, who: StaffDep) -> Response:
    return await _save_action(request, who, None)


@router.post("/actions/{key}", name="dashboard_action_save")
async def action_save(request: Request, key: str, who: StaffDep) -> Response:
    return await _save_action(request, who, key)


@router.get("/actions/{key}/delete", name="dashboard_action_delete")
def action_delete(request: Request, key: str, who: StaffDep) -> Response:
    """Ask before deleting an action."""
    found = current(who)
    action = _find(found, key)
    return render(
        who,
        request,
        "confirm.j2",
        {
            "back": PATH,
            "back_label": "nav_actions",
            "action": f"{PATH}/{key}/delete",
            "question": "action_delete_question",
            "what": f"{action.get('description', '')} ({key})",
            "digest": found.digest,
            "button": "delete_yes",
        },
        screen="actions",
    )


@router.post("/actions/{key}/delete", name="dashboard_action_delete_post")
async def action_delete_post(request: Request, key: str, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    found = await run_in_threadpool(current, who)
    _find(found, key)

    def edit(data: dict[str, Any]) -> None:
        data["actions"] = [
            a
            for a in data.get("actions") or []
            if not (isinstance(a, dict) and str(a.get("key")) == key)
        ]

    try:
        await save(who, text(form, "digest", 64), edit, action="config.action.delete", subject=key)
    except ConcurrentEdit:
        return await run_in_threadpool(lambda: _list_page(who, request, conflict=True))
    except EditRefused as exc:
        problems = exc.problems
        return await run_in_threadpool(
            lambda: _form_page(
                who,
                request,
                _form_values(_find(found, key)),
                new=False,
                refused=problems,
                status=422,
            )
        )
    return RedirectResponse(f"{PATH}?done=deleted", status_code=303)
