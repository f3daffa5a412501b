"""Communications settings (seed 003's "Payments › Configuration › Communications"): the
sender address, the notices to the company's own address (new subscriber, cancellation
requested, subscription expired) and their address, the upcoming-charge reminder (on or
off, how many days before, at what time, on which channels), the unpaid-subscription
reminder and the receipts. Saved to ``cobro.yaml`` (``settings``); without a valid sender
address nothing is sent, which the page says as ``cobro check`` does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.config.editing import ConcurrentEdit, EditRefused
from cobro.config.loader import parse_config
from cobro.errors import ConfigError, ConfigProblem
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, posted
from cobro.web.dashboard.settings import Current, checked, current, put, save, text
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
PATH = f"{PREFIX}/settings/communications"
CHANNELS = ("email", "sms", "push")
SENDER_FIELD = "company.sender.email"


def _number(value: str) -> int | str:
    """A whole number as one; anything else as typed (``cobro check`` then says why not)."""
    return int(value) if value.isdigit() else value


def _channels(form: FormData, prefix: str) -> list[str]:
    chosen: list[str] = []
    for n in (1, 2, 3):
        value = text(form, f"{prefix}_channel_{n}", 10)
        if value:
            chosen.append(value)
    return chosen


def _edit(form: FormData) -> Any:
    def edit(data: dict[str, Any]) -> None:
        company = data.setdefault("company", {})
        sender = dict(company.get("sender") or {})
        put(sender, "email", text(form, "sender_email", 320))
        put(sender, "name", text(form, "sender_name", 200))
        put(company, "sender", sender or None)
        subs = data.setdefault("subscriptions", {})
        admin = subs.setdefault("admin", {})
        put(admin, "email", text(form, "admin_email", 320))
        for name in ("new_subscriber", "cancel_requested", "expired"):
            put(admin, name, checked(form, f"admin_{name}"), True)
        upcoming = subs.setdefault("upcoming_charge", {})
        put(upcoming, "enabled", checked(form, "upcoming_enabled"), True)
        put(upcoming, "days_before", _number(text(form, "upcoming_days_before", 10)), 2)
        put(upcoming, "at", text(form, "upcoming_at", 10), "09:00")
        put(upcoming, "channels", _channels(form, "upcoming"), ["email"])
        unpaid = subs.setdefault("unpaid", {})
        put(unpaid, "enabled", checked(form, "unpaid_enabled"), True)
        put(unpaid, "channels", _channels(form, "unpaid"), ["email"])
        receipts = subs.setdefault("receipts", {})
        put(receipts, "enabled", checked(form, "receipts_enabled"), True)
        for name in ("admin", "upcoming_charge", "unpaid", "receipts"):
            if not subs[name]:
                del subs[name]
        if not subs:
            del data["subscriptions"]

    return edit


def _shown(found: Current, form: FormData | None) -> dict[str, Any]:
    """The values the form shows: what was sent (a refused form), else the file's."""
    if form is not None:
        return {
            key: (value if isinstance(value, str) else "")
            for key, value in form.multi_items()
            if key != "csrf"
        }
    if found.file is None:
        return {}
    try:
        config = parse_config(found.file.text, str(found.file.path))
    except ConfigError:
        return {}
    sender = config.company.sender
    subs = config.subscriptions
    shown: dict[str, Any] = {
        "sender_email": sender.email if sender else "",
        "sender_name": (sender.name or "") if sender else "",
        "admin_email": subs.admin.email or "",
        "upcoming_days_before": str(subs.upcoming_charge.days_before),
        "upcoming_at": subs.upcoming_charge.at.strftime("%H:%M"),
    }
    for name in ("new_subscriber", "cancel_requested", "expired"):
        shown[f"admin_{name}"] = "1" if getattr(subs.admin, name) else ""
    shown["upcoming_enabled"] = "1" if subs.upcoming_charge.enabled else ""
    shown["unpaid_enabled"] = "1" if subs.unpaid.enabled else ""
    shown["receipts_enabled"] = "1" if subs.receipts.enabled else ""
    for prefix, channels in (
        ("upcoming", subs.upcoming_charge.channels),
        ("unpaid", subs.unpaid.channels),
    ):
        for n in (1, 2, 3):
            shown[f"{prefix}_channel_{n}"] = channels[n - 1] if len(channels) >= n else ""
    return shown


def _page(
    who: Staff,
    request: Request,
    *,
    form: FormData | None = None,
    refused: list[ConfigProblem] | None = None,
    conflict: bool = False,
    saved: bool = False,
    status: int = 200,
) -> Response:
    found = current(who)
    return render(
        who,
        request,
        "communications.j2",
        {
            "path": PATH,
            "digest": found.digest,
            "readable": found.data is not None,
            "problems": found.problems,
            "sender_missing": [p for p in found.problems if p.field == SENDER_FIELD],
            "values": _shown(found, form),
            "channels": CHANNELS,
            "refused": [str(p) for p in refused or []],
            "conflict": conflict,
            "saved": saved,
        },
        screen="communications",
        status=status,
    )


@router.get("/settings/communications", name="dashboard_communications")
def communications(request: Request, who: StaffDep, saved: str | None = None) -> Response:
    return _page(who, request, saved=bool(saved))


@router.post("/settings/communications", name="dashboard_communications_save")
async def communications_save(request: Request, who: StaffDep) -> Response:
    form = await posted(request, who, "admin")
    try:
        await save(
            who,
            text(form, "digest", 64),
            _edit(form),
            action="config.communications",
            subject="subscriptions",
        )
    except ConcurrentEdit:
        return await run_in_threadpool(lambda: _page(who, request, conflict=True, status=409))
    except EditRefused as exc:
        problems = exc.problems
        return await run_in_threadpool(
            lambda: _page(who, request, form=form, refused=problems, status=422)
        )
    return RedirectResponse(f"{PATH}?saved=1", status_code=303)
