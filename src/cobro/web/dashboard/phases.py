"""A policy's phase edited (admins only): its day (from the due date), its channels in
order of preference, its mode, its recipients, whether it blocks the account, and its
template; saved to ``cobro.yaml`` (``policies.NAME.phases[]``) by ``settings.save``, so
with the file's comments and order kept, checked by the code of ``cobro check`` (refused:
422 with its lines), not written over a file changed meanwhile (409), and audited.

The day is written as the file writes moments (``7 days before due``, ``on due``, ``15
days after due``); a day the form did not change keeps the file's words. Anything that is
not a whole number is written as typed, so that ``cobro check`` says why it is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.config.editing import ConcurrentEdit, EditRefused
from cobro.config.schema import parse_when
from cobro.domain.model import CONFIGURABLE_RECIPIENTS
from cobro.errors import ConfigProblem
from cobro.web.dashboard.actions import template_names
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.settings import Current, checked, current, put, save, text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
CHANNELS = ("email", "sms", "push", "voice")
MODES = ("full", "link")
RECIPIENTS = tuple(r.value for r in CONFIGURABLE_RECIPIENTS)


def _phase(found: Current, policy: str, key: str) -> dict[str, Any]:
    """The phase as the file has it (404 when it has none such)."""
    policies = (found.data or {}).get("policies")
    chosen = policies.get(policy) if isinstance(policies, dict) else None
    phases = chosen.get("phases") if isinstance(chosen, dict) else None
    for phase in phases if isinstance(phases, list) else []:
        if isinstance(phase, dict) and str(phase.get("key")) == key:
            return phase
    raise not_found()


def _offset(when: Any) -> str:
    try:
        return str(parse_when(str(when)))
    except ValueError:
        return str(when or "")


def when_of(day: str) -> str:
    """A day from the due date as the file writes it; as typed when it is not one."""
    value = day.strip()
    sign = -1 if value.startswith("-") else 1
    digits = value.lstrip("+-").strip()
    if not digits.isdigit():
        return value
    n = sign * int(digits)
    if n == 0:
        return "on due"
    return f"{abs(n)} day{'s' if abs(n) != 1 else ''} {'before' if n < 0 else 'after'} due"


def _values(phase: dict[str, Any]) -> dict[str, Any]:
    channels = [str(c) for c in phase.get("channels") or ["email"]]
    values: dict[str, Any] = {
        "day": _offset(phase.get("when")),
        "mode": str(phase.get("mode") or "full"),
        "template": str(phase.get("template") or ""),
        "block_account": bool(phase.get("block_account")),
        "recipients": [str(r) for r in phase.get("recipients") or ["debtor"]],
    }
    for n in range(1, len(CHANNELS) + 1):
        values[f"channel_{n}"] = channels[n - 1] if len(channels) >= n else ""
    return values


def _sent(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {
        "day": text(form, "day", 40),
        "mode": text(form, "mode", 10),
        "template": text(form, "template", 100),
        "block_account": checked(form, "block_account"),
        "recipients": [r for r in form.getlist("recipients") if isinstance(r, str)][:10],
    }
    for n in range(1, len(CHANNELS) + 1):
        values[f"channel_{n}"] = text(form, f"channel_{n}", 10)
    return values


def _edit(policy: str, key: str, values: dict[str, Any]) -> Any:
    def edit(data: dict[str, Any]) -> None:
        phases = data["policies"][policy]["phases"]
        for phase in phases:
            if isinstance(phase, dict) and str(phase.get("key")) == key:
                break
        else:  # removed since the page was opened: the digest says so first
            raise not_found()
        day = values["day"]
        if day != _offset(phase.get("when")):
            phase["when"] = when_of(day)
        channels = [values[f"channel_{n}"] for n in range(1, len(CHANNELS) + 1)]
        chosen_channels = [c for c in channels if c]
        if chosen_channels:
            put(phase, "channels", chosen_channels, ["email"])
        else:  # written as sent: cobro check says a phase needs one
            phase["channels"] = []
        put(phase, "mode", values["mode"], "full")
        chosen = values["recipients"]
        had = [str(r) for r in phase.get("recipients") or ["debtor"]]
        if sorted(chosen) != sorted(had):  # the file's order kept when the set is the same
            phase["recipients"] = chosen
        put(phase, "block_account", values["block_account"], False)
        put(phase, "template", values["template"])

    return edit


def _page(
    who: Staff,
    request: Request,
    policy: str,
    key: str,
    *,
    values: dict[str, Any] | None = None,
    refused: list[ConfigProblem] | None = None,
    conflict: bool = False,
    saved: bool = False,
    status: int = 200,
) -> Response:
    found = current(who)
    phase = _phase(found, policy, key)
    return render(
        who,
        request,
        "phase_form.j2",
        {
            "path": f"{PREFIX}/policies/{policy}/phases/{key}",
            "policy": policy,
            "key": key,
            "name": str(phase.get("name") or ""),
            "when": str(phase.get("when") or ""),
            "values": values if values is not None else _values(phase),
            "channels": CHANNELS,
            "modes": MODES,
            "recipients": RECIPIENTS,
            "templates": template_names(who.state.ws.root),
            "digest": found.digest,
            "problems": found.problems,
            "refused": [str(p) for p in refused or []],
            "conflict": conflict,
            "saved": saved,
        },
        screen="policies",
        status=status,
    )


@router.get("/policies/{policy}/phases/{key}", name="dashboard_phase")
def phase_page(
    request: Request, policy: str, key: str, who: StaffDep, saved: str | None = None
) -> Response:
    return _page(who, request, policy, key, saved=bool(saved))


@router.post("/policies/{policy}/phases/{key}", name="dashboard_phase_save")
async def phase_save(request: Request, policy: str, key: str, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    found = await run_in_threadpool(current, who)
    _phase(found, policy, key)
    values = _sent(form)
    try:
        await save(
            who,
            text(form, "digest", 64),
            _edit(policy, key, values),
            action="config.phase.edit",
            subject=f"{policy}/{key}",
        )
    except ConcurrentEdit:
        return await run_in_threadpool(
            lambda: _page(who, request, policy, key, conflict=True, status=409)
        )
    except EditRefused as exc:
        problems = exc.problems
        return await run_in_threadpool(
            lambda: _page(who, request, policy, key, values=values, refused=problems, status=422)
        )
    return RedirectResponse(f"{PREFIX}/policies/{policy}/phases/{key}?saved=1", status_code=303)
