"""Segments (seed 002): the named filters over debtors that scheduled actions are sent to,
listed, created, edited and deleted in ``cobro.yaml``, and who is in each today. A
segment an action still uses cannot be deleted: ``cobro check`` says which action."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.config.editing import ConcurrentEdit, EditRefused
from cobro.config.loader import text_lines
from cobro.engine.segments import count_members, members
from cobro.errors import ConfigProblem
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.settings import Current, current, put, save, text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
PATH = f"{PREFIX}/segments"
MEMBERS_SHOWN = 100
RANGES = ("overdue_amount", "open_amount", "days_overdue")


def _segments(found: Current) -> dict[str, dict[str, Any]]:
    listed = (found.data or {}).get("segments") or {}
    if not isinstance(listed, dict):
        return {}
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in listed.items()}


def _list(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else ""


def _form_values(name: str, segment: dict[str, Any]) -> dict[str, str]:
    values = {
        "name": name,
        "description": str(segment.get("description") or ""),
        "kind": str(segment.get("kind") or ""),
        "group": _list(segment.get("group")),
        "language": str(segment.get("language") or ""),
        "tags": _list(segment.get("tags")),
        "policy": str(segment.get("policy") or ""),
        "blocked": _yes_no(segment.get("blocked")),
        "attributes": "\n".join(f"{k}={v}" for k, v in (segment.get("attributes") or {}).items()),
    }
    for key in RANGES:
        bounds = segment.get(key) or {}
        for end in ("min", "max"):
            value = bounds.get(end) if isinstance(bounds, dict) else None
            values[f"{key}_{end}"] = "" if value is None else str(value)
    return values


def _amount(value: str) -> int | str | None:
    """A number as the file writes it: whole as a number, else as typed (exact)."""
    if not value:
        return None
    try:
        number = Decimal(value.replace(",", "."))
    except InvalidOperation:
        return value
    return int(number) if number == number.to_integral_value() else str(number)


def _words(value: str) -> list[str]:
    return [w.strip() for w in re.split(r"[,\n]", value) if w.strip()]


def _build(form: FormData, base: dict[str, Any]) -> dict[str, Any]:
    segment = dict(base)
    put(segment, "description", text(form, "description", 500))
    put(segment, "kind", text(form, "kind", 20))
    groups = _words(text(form, "group", 1000))
    put(segment, "group", groups[0] if len(groups) == 1 else groups)
    put(segment, "language", text(form, "language", 10))
    put(segment, "tags", _words(text(form, "tags", 1000)))
    put(segment, "policy", text(form, "policy", 40))
    put(segment, "blocked", {"yes": True, "no": False}.get(text(form, "blocked", 5)))
    attributes: dict[str, str] = {}
    for line in text(form, "attributes", 4000).splitlines():
        key, sep, value = line.partition("=")
        if key.strip():
            attributes[key.strip()] = value.strip() if sep else ""
    put(segment, "attributes", attributes or None)
    for key in RANGES:
        bounds = dict(segment.get(key) or {})
        for end in ("min", "max"):
            put(bounds, end, _amount(text(form, f"{key}_{end}", 30)))
        put(segment, key, bounds or None)
    return segment


def _list_page(
    who: Staff, request: Request, *, done: str | None = None, conflict: bool = False
) -> Response:
    found = current(who)
    return render(
        who,
        request,
        "segments.j2",
        {
            "path": PATH,
            "segments": _segments(found),
            "problems": found.problems,
            "readable": found.data is not None,
            "done": done if done in ("created", "saved", "deleted") else None,
            "conflict": conflict,
        },
        screen="segments",
        status=409 if conflict else 200,
    )


@router.get("/segments", name="dashboard_segments")
def segments(request: Request, who: StaffDep, done: str | None = None) -> Response:
    return _list_page(who, request, done=done)


def _form_page(
    who: Staff,
    request: Request,
    values: dict[str, str],
    *,
    new: bool,
    refused: list[ConfigProblem] | None = None,
    conflict: bool = False,
    done: str | None = None,
    status: int = 200,
) -> Response:
    found = current(who)
    state = who.state
    config = state.ws.config
    shown: list[Any] = []
    total = None
    name = values.get("name", "")
    if not new and name in config.segments:
        segment = config.segment(name)
        with state.reader.connect() as conn:
            on, currency = state.today(), config.company.currency
            shown = members(conn, who.company_id, segment, on, currency, MEMBERS_SHOWN)
            total = count_members(conn, who.company_id, segment, on, currency)
    used_by = [
        str(a.get("key"))
        for a in (found.data or {}).get("actions") or []
        if isinstance(a, dict) and a.get("segment") == name
    ]
    return render(
        who,
        request,
        "segment_form.j2",
        {
            "path": PATH,
            "new": new,
            "values": values,
            "policies": sorted(config.policies),
            "members": shown,
            "total": total,
            "used_by": used_by,
            "digest": found.digest,
            "readable": found.data is not None,
            "problems": found.problems,
            "refused": [str(p) for p in refused or []],
            "conflict": conflict,
            "done": done if done in ("created", "saved") else None,
        },
        screen="segments",
        status=status,
    )


@router.get("/segments/new", name="dashboard_segment_new")
def segment_new(request: Request, who: StaffDep) -> Response:
    return _form_page(who, request, _form_values("", {}), new=True)


def _find(found: Current, name: str) -> dict[str, Any]:
    listed = _segments(found)
    if name not in listed:
        raise not_found()
    return listed[name]


@router.get("/segments/{name}", name="dashboard_segment")
def segment(request: Request, name: str, who: StaffDep, done: str | None = None) -> Response:
    values = _form_values(name, _find(current(who), name))
    return _form_page(who, request, values, new=False, done=done)


async def _save_segment(request: Request, who: Staff, name: str | None) -> Response:
    form = await posted(request, who, "admin")
    found = await run_in_threadpool(current, who)
    base = _find(found, name) if name is not None else {}
    chosen = name if name is not None else text(form, "name", 40)
    built = _build(form, base)

    def edit(data: dict[str, Any]) -> None:
        listed = data.get("segments")
        if not isinstance(listed, dict):
            listed = data["segments"] = {}
        listed[chosen] = built

    cfg_file = str(who.state.ws.root / "cobro.yaml")
    try:
        if name is None and not chosen:
            raise EditRefused(
                [ConfigProblem(cfg_file, None, "segments", "give the segment a name")]
            )
        if name is None and chosen in _segments(found):
            assert found.file is not None
            line = text_lines(found.file.text, cfg_file).get(("segments", chosen))
            # What the loader says of a key written twice.
            raise EditRefused(
                [ConfigProblem(cfg_file, line, f"segments.{chosen}", "is given twice; keep one")]
            )
        await save(
            who,
            text(form, "digest", 64),
            edit,
            action="config.segment.create" if name is None else "config.segment.edit",
            subject=chosen,
        )
    except (ConcurrentEdit, EditRefused) as exc:
        values = {k: text(form, k, 4000) for k in _form_values("", {})}
        values["name"] = chosen
        conflict = isinstance(exc, ConcurrentEdit)
        refused = exc.problems if isinstance(exc, EditRefused) else None
        return await run_in_threadpool(
            lambda: _form_page(
                who,
                request,
                _form_values(chosen, base) if conflict else values,
                new=name is None,
                refused=refused,
                conflict=conflict,
                status=409 if conflict else 422,
            )
        )
    return RedirectResponse(
        f"{PATH}/{chosen}?done={'created' if name is None else 'saved'}", status_code=303
    )


@router.post("/segments", name="dashboard_segment_create")
async def segment_create(request: Request, who: StaffDep) -> Response:
    return await _save_segment(request, who, None)


@router.post("/segments/{name}", name="dashboard_segment_save")
async def segment_save(request: Request, name: str, who: StaffDep) -> Response:
    return await _save_segment(request, who, name)


@router.get("/segments/{name}/delete", name="dashboard_segment_delete")
def segment_delete(request: Request, name: str, who: StaffDep) -> Response:
    found = current(who)
    _find(found, name)
    return render(
        who,
        request,
        "confirm.j2",
        {
            "back": PATH,
            "back_label": "nav_segments",
            "action": f"{PATH}/{name}/delete",
            "question": "segment_delete_question",
            "what": name,
            "digest": found.digest,
            "button": "delete_yes",
        },
        screen="segments",
    )


@router.post("/segments/{name}/delete", name="dashboard_segment_delete_post")
async def segment_delete_post(request: Request, name: str, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    found = await run_in_threadpool(current, who)
    base = _find(found, name)

    def edit(data: dict[str, Any]) -> None:
        del data["segments"][name]

    try:
        await save(
            who, text(form, "digest", 64), edit, action="config.segment.delete", subject=name
        )
    except ConcurrentEdit:
        return await run_in_threadpool(lambda: _list_page(who, request, conflict=True))
    except EditRefused as exc:
        problems = exc.problems
        return await run_in_threadpool(
            lambda: _form_page(
                who, request, _form_values(name, base), new=False, refused=problems, status=422
            )
        )
    return RedirectResponse(f"{PATH}?done=deleted", status_code=303)
