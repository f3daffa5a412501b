"""A debtor's account (seed 002's "cuenta corriente", seed 004's portfolio manager): the
statement of open items, every claim with its messages, deliveries, opens and reads,
disputes, promises, payments, tasks and notes; and what a collector records on it: a
claim resent, a promise to pay or a dispute taken by phone, a note, a task.

Every form is a POST with the session's form token, refused (403) for a read-only user;
the debtor and the claim named must be the company's (404 otherwise). An accepted form
redirects back to the account, which says what was done (post/redirect/get); a refused
one shows the account again with what is wrong (422).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from cobro.engine.notes import add_note, list_notes
from cobro.engine.response_lists import list_disputes, list_promises
from cobro.engine.responses import add_promise, open_dispute
from cobro.engine.tasks import list_tasks, open_task
from cobro.errors import CobroError
from cobro.evidence.history import claim_history
from cobro.web.dashboard.helpers import step_label
from cobro.web.dashboard.labels import words
from cobro.web.dashboard.queries import (
    DebtorCard,
    claim_of,
    debtor_card,
    payments,
    resend_state,
)
from cobro.web.dashboard.session import PREFIX, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.view import render
from cobro.web.portal.forms import read_dispute, read_promise
from cobro.web.portal.queries import open_items

router = APIRouter(prefix=PREFIX)
DONE = ("resend", "promise", "dispute", "note", "task")
T = TypeVar("T")


def _card(who: Staff, debtor_id: int) -> DebtorCard:
    with who.state.reader.connect() as conn:
        found = debtor_card(conn, who.company_id, debtor_id)
    if found is None:
        raise not_found()
    return found


def _path(debtor_id: int) -> str:
    return f"{PREFIX}/debtors/{debtor_id}"


def _account(
    who: Staff,
    request: Request,
    card: DebtorCard,
    *,
    done: str | None = None,
    resend: int | None = None,
    problems: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    state = who.state
    config = state.ws.config
    today = state.today()
    with state.reader.connect() as conn:
        items = open_items(conn, who.company_id, card.id, today)
        claims = claim_history(conn, config, who.company_id, card.external_id)
        disputes = list_disputes(conn, who.company_id, customer=card.external_id)
        promises = list_promises(conn, who.company_id, customer=card.external_id)
        tasks = list_tasks(conn, who.company_id, customer=card.external_id)
        notes = list_notes(conn, who.company_id, card.id)
        paid = payments(conn, who.company_id, card.id)
        resent = resend_state(conn, who.company_id, card.id, resend) if resend else None
    said = words(who.language)
    for claim in claims:
        claim.phase_name = step_label(config, claim.step, said, who.language)
    totals: dict[str, Any] = {}
    for item in items:
        totals[item.balance.currency] = (
            totals[item.balance.currency] + item.balance
            if item.balance.currency in totals
            else item.balance
        )
    portal = config.portal
    return render(
        who,
        request,
        "account.j2",
        {
            "card": card,
            "path": _path(card.id),
            "items": items,
            "totals": list(totals.values()),
            "disputable": [i for i in items if i.status != "disputed"],
            "promisable": [i for i in items if i.status not in ("disputed", "promised")],
            "claims": list(reversed(claims)),
            "disputes": list(reversed(disputes)),
            "promises": list(reversed(promises)),
            "tasks": list(reversed(tasks)),
            "notes": notes,
            "payments": paid,
            "done": done if done in DONE else None,
            "resent": resent,
            "problems": problems or {},
            "today": today.isoformat(),
            "max_date": (today + timedelta(days=portal.promise_max_days)).isoformat(),
        },
        screen="debtors",
        status=status,
    )


@router.get("/debtors/{debtor_id}", name="dashboard_account")
def account(
    request: Request,
    debtor_id: int,
    who: StaffDep,
    done: str | None = None,
    resend: int | None = None,
) -> Response:
    return _account(who, request, _card(who, debtor_id), done=done, resend=resend)


def _back(debtor_id: int, done: str, **more: int) -> RedirectResponse:
    extra = "".join(f"&{k}={v}" for k, v in more.items())
    return RedirectResponse(f"{_path(debtor_id)}?done={done}{extra}", status_code=303)


async def _form(request: Request, who: Staff, debtor_id: int) -> tuple[DebtorCard, FormData]:
    """The debtor (404 unless the company's) and the POST's form (403 unless allowed)."""
    card = await run_in_threadpool(_card, who, debtor_id)
    form = await posted(request, who, "collector")
    return card, form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _audit(conn: Connection, who: Staff, card: DebtorCard, action: str, what: Any) -> None:
    """The audit log's entry for what was recorded on the account, by whom."""
    from cobro.config.editing import jsonable
    from cobro.engine.audit import record

    record(
        conn,
        who.company_id,
        who.state.now(),
        who.session.user.email,
        who.role,
        f"debtor.{action}",
        [{"path": action, "old": None, "new": jsonable(what)}],
        customer_id=card.id,
    )


def _write(who: Staff, work: Callable[[Connection], T]) -> T:
    with who.state.ws.engine.begin() as conn:
        return work(conn)


async def _refused(
    request: Request, who: Staff, card: DebtorCard, form_name: str, problems: list[str]
) -> Response:
    return await run_in_threadpool(
        lambda: _account(who, request, card, problems={form_name: problems}, status=422)
    )


@router.post("/debtors/{debtor_id}/resend", name="dashboard_resend")
async def resend(request: Request, debtor_id: int, who: StaffDep) -> Response:
    """Send a claim's message again, exactly as it was sent (``cobro resend``): to the
    recipients it reached, or only to the address given; sent at once."""
    from cobro.engine.resend import ResendError, resend_claim
    from cobro.engine.runs import dispatch_rows

    card, form = await _form(request, who, debtor_id)
    try:
        claim = int(_text(form, "claim"))
    except ValueError:
        raise not_found() from None
    to = _text(form, "to") or None
    state = who.state

    def plan(conn: Connection) -> int:
        if not claim_of(conn, who.company_id, card.id, claim):
            raise not_found()
        row = resend_claim(conn, state.ws.config, who.company_id, claim, to=to, at=state.now())
        _audit(conn, who, card, "resend", {"claim": claim, "to": to, "resend": row})
        return row

    try:
        row = await run_in_threadpool(_write, who, plan)
    except ResendError as exc:
        return await _refused(request, who, card, f"resend-{claim}", [str(exc)])
    await run_in_threadpool(
        lambda: dispatch_rows(state.ws, frozenset({row}), state.now(), clock=state.clock)
    )
    return _back(card.id, "resend", resend=row)


@router.post("/debtors/{debtor_id}/promises", name="dashboard_promise")
async def promise(request: Request, debtor_id: int, who: StaffDep) -> Response:
    """A promise to pay taken by phone: its items pause until the date plus the grace."""
    card, form = await _form(request, who, debtor_id)
    state = who.state
    settings = state.ws.config.portal
    said = words(who.language)

    def work(conn: Connection) -> list[str]:
        today = state.today()
        allowed = {
            i.id
            for i in open_items(conn, who.company_id, card.id, today)
            if i.status not in ("disputed", "promised")
        }
        asked = read_promise(form, allowed, today, settings.promise_max_days, said)
        if asked.problems:
            return asked.problems
        assert asked.promised_on is not None
        try:
            with conn.begin_nested():
                add_promise(
                    conn,
                    who.company_id,
                    card.id,
                    asked.items,
                    asked.promised_on,
                    settings.promise_grace_days,
                    state.now(),
                    today=today,
                    max_days=settings.promise_max_days,
                    source="staff",
                    note=asked.note,
                )
        except CobroError as exc:
            return [str(exc)]
        promised = {"items": sorted(asked.items), "promised_on": asked.promised_on}
        _audit(conn, who, card, "promise", {**promised, "note": asked.note})
        return []

    problems = await run_in_threadpool(_write, who, work)
    if problems:
        return await _refused(request, who, card, "promise", problems)
    return _back(card.id, "promise")


@router.post("/debtors/{debtor_id}/disputes", name="dashboard_dispute")
async def dispute(request: Request, debtor_id: int, who: StaffDep) -> Response:
    """A dispute taken by phone: the item is left out of every claim until it is resolved;
    a task is opened to look into it."""
    card, form = await _form(request, who, debtor_id)
    state = who.state
    said = words(who.language)

    def work(conn: Connection) -> list[str]:
        today = state.today()
        allowed = {
            i.id for i in open_items(conn, who.company_id, card.id, today) if i.status != "disputed"
        }
        asked = read_dispute(
            form, None, allowed, state.ws.config.portal.dispute_attachment_max_kb, said
        )
        if asked.problems:
            return asked.problems
        assert asked.item is not None
        try:
            with conn.begin_nested():
                open_dispute(
                    conn,
                    who.company_id,
                    card.id,
                    asked.item,
                    asked.reason,
                    state.now(),
                    source="staff",
                )
        except CobroError as exc:
            return [str(exc)]
        _audit(conn, who, card, "dispute", {"item": asked.item, "reason": asked.reason})
        return []

    problems = await run_in_threadpool(_write, who, work)
    if problems:
        return await _refused(request, who, card, "dispute", problems)
    return _back(card.id, "dispute")


@router.post("/debtors/{debtor_id}/notes", name="dashboard_note")
async def note(request: Request, debtor_id: int, who: StaffDep) -> Response:
    """A note on the account, signed with the user's email."""
    card, form = await _form(request, who, debtor_id)
    text = _text(form, "text")
    if not text:
        return await _refused(request, who, card, "note", [words(who.language)["err_text"]])

    def work(conn: Connection) -> list[str]:
        try:
            add_note(conn, who.company_id, card.id, who.session.user.email, text, who.state.now())
        except CobroError as exc:
            return [str(exc)]
        _audit(conn, who, card, "note", {"text": text})
        return []

    problems = await run_in_threadpool(_write, who, work)
    if problems:
        return await _refused(request, who, card, "note", problems)
    return _back(card.id, "note")


@router.post("/debtors/{debtor_id}/tasks", name="dashboard_task")
async def task(request: Request, debtor_id: int, who: StaffDep) -> Response:
    """A task on the debtor, due on a day (and hour, company time)."""
    from datetime import date

    card, form = await _form(request, who, debtor_id)
    said = words(who.language)
    message = _text(form, "message")
    problems: list[str] = [] if message else [said["err_text"]]
    try:
        day = date.fromisoformat(_text(form, "due_on"))
    except ValueError:
        problems.append(said["err_date"])
    try:
        at = time.fromisoformat(_text(form, "due_time") or "09:00")
    except ValueError:
        problems.append(said["err_time"])
    if problems:
        return await _refused(request, who, card, "task", problems)
    state = who.state
    tz = ZoneInfo(state.ws.config.company.timezone)
    due_at = datetime.combine(day, at.replace(tzinfo=None), tz).astimezone(ZoneInfo("UTC"))

    def work(conn: Connection) -> list[str]:
        try:
            open_task(conn, who.company_id, card.id, message, due_at, state.now(), state.today())
        except CobroError as exc:
            return [str(exc)]
        _audit(conn, who, card, "task", {"message": message, "due_at": due_at})
        return []

    found = await run_in_threadpool(_write, who, work)
    if found:
        return await _refused(request, who, card, "task", found)
    return _back(card.id, "task")
