"""The message log (seed 004): every message sent to anyone, newest first, filtered by day,
phase, channel, delivery state and recipient, a keyset page at a time
(``cobro.engine.message_log``); each row links to its debtor's account, and a collector
resends a message to its recipient (``cobro resend``, as the account page does)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from cobro.engine.message_log import STATES, MessageFilter, message_log
from cobro.engine.resend import OUTWARD_ROLES, ResendError
from cobro.evidence.history import step_name
from cobro.store import tables as t
from cobro.web.dashboard.helpers import (
    back_to,
    cost_text,
    day_start,
    field,
    one_of,
    read,
    read_day,
    step_label,
    with_query,
    write,
)
from cobro.web.dashboard.labels import words
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
CHANNELS = ("email", "sms", "push", "voice")
EVENT_KINDS = ("receipt", "unpaid", "upcoming", "admin", "banking", "resend")
RESENDABLE = ("email", "sms")
FILTERS = (
    "from",
    "to",
    "phase",
    "channel",
    "state",
    "recipient",
)  # a push endpoint is not an address one can send to by hand


def phase_choices(who: Staff) -> list[tuple[str, str]]:
    """(value, label) of every phase the filter offers: the policies' phases, the scheduled
    actions, the kinds of event-driven notices."""
    config = who.state.ws.config
    said = words(who.language)
    found = [
        (ph.step_id, f"{ph.policy} {ph.key} · {step_name(config, ph.step_id, who.language)}")
        for p in config.all_policies()
        for ph in p.phases
    ]
    found += [
        (a.step_id, step_name(config, a.step_id, who.language)) for a in config.scheduled_actions()
    ]
    found += [(kind, said[f"kind_{kind}"]) for kind in EVENT_KINDS]
    return found


def _outbox_state(conn: Connection, company_id: int, row: int) -> tuple[str, str | None] | None:
    o = t.outbox.c
    found = conn.execute(
        select(o.status, o.reason).where(o.id == row, o.company_id == company_id)
    ).first()
    return None if found is None else (str(found.status), found.reason)


def _log(
    who: Staff,
    request: Request,
    params: dict[str, str | None],
    *,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    state = who.state
    config = state.ws.config
    tz = config.company.timezone
    said = words(who.language)
    phases = phase_choices(who)
    wrong: list[str] = list(problems or [])
    start, ok_from = read_day(params.get("from"))
    if not ok_from:
        wrong.append(said["err_from"])
    end, ok_to = read_day(params.get("to"))
    if not ok_to:
        wrong.append(said["err_to"])
    chosen: dict[str, Any] = {
        "from": start.isoformat() if start else "",
        "to": end.isoformat() if end else "",
        "phase": one_of(params.get("phase"), [v for v, _ in phases]),
        "channel": one_of(params.get("channel"), CHANNELS),
        "state": one_of(params.get("state"), STATES),
        "recipient": (params.get("recipient") or "").strip()[:320],
    }
    wanted = MessageFilter(
        start=day_start(start, tz) if start else None,
        end=day_start(end + timedelta(days=1), tz) if end else None,
        phase=chosen["phase"],
        channel=chosen["channel"],
        state=chosen["state"],
        recipient=chosen["recipient"],
        region=config.company.region,
    )
    cursor = params.get("cursor")
    resend = params.get("resend")
    done = params.get("done")

    def work(conn: Connection) -> tuple[Any, tuple[str, str | None] | None]:
        page = message_log(conn, who.company_id, wanted, cursor)
        resent = (
            _outbox_state(conn, who.company_id, int(resend))
            if done == "resend" and resend and resend.isdigit()
            else None
        )
        return page, resent

    page, resent = read(who, work)
    kept = {k: v for k, v in chosen.items() if v}
    here = f"{PREFIX}/messages" + (f"?{urlencode(kept)}" if kept else "")
    if cursor:
        here = with_query(here, cursor=cursor)
    names: dict[str, str] = {}
    rows = []
    for m in page.rows:
        if m.step not in names:
            names[m.step] = step_label(config, m.step, said, who.language)
        rows.append(
            {
                "m": m,
                "phase": names[m.step],
                "cost": cost_text(m.cost, config.company.currency, who.locale),
                "resendable": m.status == "sent"
                and m.claim_status == "sent"
                and m.channel in RESENDABLE
                and m.role in OUTWARD_ROLES,
            }
        )
    return render(
        who,
        request,
        "messages.j2",
        {
            "rows": rows,
            "chosen": chosen,
            "phases": phases,
            "channels": CHANNELS,
            "states": STATES,
            "problems": wrong,
            "done": done == "resend",
            "resent": resent,
            "here": here,
            "paged": cursor is not None,
            "first_url": f"{PREFIX}/messages" + (f"?{urlencode(kept)}" if kept else ""),
            "next_url": (
                f"{PREFIX}/messages?{urlencode({**kept, 'cursor': page.next_cursor})}"
                if page.next_cursor
                else None
            ),
        },
        screen="messages",
        status=status,
    )


@router.get("/messages", name="dashboard_messages")
def messages(request: Request, who: StaffDep) -> Response:
    params = {key: request.query_params.get(key) for key in (*FILTERS, "cursor", "done", "resend")}
    return _log(who, request, params)


@router.post("/messages/resend", name="dashboard_messages_resend")
async def resend(request: Request, who: StaffDep) -> Response:
    """Send a message again, exactly as it was sent, to the recipient it went to (or, for
    a staff copy, the claim to every recipient it reached); sent at once."""
    from cobro.engine.resend import resend_claim
    from cobro.engine.runs import dispatch_rows

    form = await posted(request, who, "collector")
    try:
        claim = int(field(form, "claim"))
    except ValueError:
        raise not_found() from None
    to = field(form, "to") or None
    back = back_to(field(form, "back"), "messages")
    state = who.state

    def plan(conn: Connection) -> int:
        if _outbox_state(conn, who.company_id, claim) is None:
            raise not_found()
        return resend_claim(conn, state.ws.config, who.company_id, claim, to=to, at=state.now())

    try:
        row = await run_in_threadpool(write, who, plan)
    except ResendError as exc:
        from urllib.parse import parse_qsl, urlsplit

        params: dict[str, str | None] = dict(parse_qsl(urlsplit(back).query))
        why = str(exc)
        return await run_in_threadpool(
            lambda: _log(who, request, params, problems=[why], status=422)
        )
    await run_in_threadpool(
        lambda: dispatch_rows(state.ws, frozenset({row}), state.now(), clock=state.clock)
    )
    return RedirectResponse(with_query(back, done="resend", resend=row), status_code=303)
