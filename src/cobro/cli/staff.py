"""Commands for collections staff: segments, tasks and a debtor's account."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from cobro.cli.common import MAX_ID, add_row, fail, open_ws, out, parse_date, print_json
from cobro.errors import CobroError
from cobro.workspace import Workspace, utcnow

segments_app = typer.Typer(help="Named, reusable filters over debtors.", no_args_is_help=True)
tasks_app = typer.Typer(help="Staff tasks created by scheduled actions.", no_args_is_help=True)


def local_time(at: datetime, tz: ZoneInfo) -> str:
    """An instant as staff read it: date and time in the company's time zone."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _today(ws: Workspace, on: str | None) -> Any:
    return (
        parse_date(on, "--date") or utcnow().astimezone(ZoneInfo(ws.config.company.timezone)).date()
    )


@segments_app.command("list")
def segments_list(
    ctx: typer.Context,
    on: Annotated[str | None, typer.Option("--date", help="Evaluate on this date.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every segment with how many debtors are in it on the date."""
    from sqlalchemy import func, select

    from cobro.engine.segments import members_select

    ws = open_ws(ctx)
    day = _today(ws, on)
    rows: list[dict[str, Any]] = []
    try:
        with ws.engine.connect() as conn:
            for name, cfg in ws.config.segments.items():
                q = members_select(
                    ws.company_id, ws.config.segment(name), day, ws.config.company.currency
                )
                n = conn.execute(
                    select(func.count()).select_from(q.order_by(None).subquery())
                ).scalar_one()
                rows.append({"segment": name, "description": cfg.description, "members": n})
    finally:
        ws.close()
    if as_json:
        print_json({"date": day.isoformat(), "segments": rows})
        return
    table = Table(title=f"Segments on {day}")
    for col in ("segment", "description", "members"):
        table.add_column(col)
    for r in rows:
        add_row(table, r["segment"], r["description"] or "", str(r["members"]))
    out.print(table)


@segments_app.command("show")
def segments_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Segment name.")],
    on: Annotated[str | None, typer.Option("--date", help="Evaluate on this date.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who is in a segment on the date, with their open and overdue debt."""
    from cobro.engine.segments import members

    ws = open_ws(ctx)
    try:
        if name not in ws.config.segments:
            fail(f"no segment {name!r}; defined: {', '.join(ws.config.segments) or 'none'}", 2)
        day = _today(ws, on)
        with ws.engine.connect() as conn:
            found = members(
                conn, ws.company_id, ws.config.segment(name), day, ws.config.company.currency
            )
    finally:
        ws.close()
    if as_json:
        print_json(
            {
                "segment": name,
                "date": day.isoformat(),
                "members": [
                    {
                        "customer": m.external_id,
                        "name": m.name,
                        "open": str(m.open.amount),
                        "overdue": str(m.overdue.amount),
                        "currency": m.open.currency,
                        "days_overdue": m.days_overdue,
                    }
                    for m in found
                ],
            }
        )
        return
    table = Table(title=f"Segment {name} on {day}: {len(found)} debtor(s)")
    for col in ("customer", "name", "open", "overdue", "days overdue"):
        table.add_column(col)
    for m in found:
        add_row(table, m.external_id, m.name, str(m.open), str(m.overdue), str(m.days_overdue))
    out.print(table)


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    due_before: Annotated[
        str | None, typer.Option("--due-before", help="Due before this date.")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this debtor.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only tasks not done yet.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tasks, soonest due first."""
    from cobro.engine.tasks import list_tasks

    ws = open_ws(ctx)
    try:
        before = parse_date(due_before, "--due-before")
        instant = (
            datetime.combine(
                before, time(0), tzinfo=ZoneInfo(ws.config.company.timezone)
            ).astimezone(UTC)
            if before
            else None
        )
        with ws.engine.connect() as conn:
            found = list_tasks(
                conn, ws.company_id, due_before=instant, customer=customer, open_only=open_only
            )
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json(tz) for x in found])
        return
    table = Table(title=f"{len(found)} task(s)")
    for col in ("id", "due", "customer", "message", "status", "assignee"):
        table.add_column(col)
    for x in found:
        add_row(
            table,
            str(x.id),
            local_time(x.due_at, tz),
            f"{x.customer} {x.customer_name}",
            x.message,
            x.status,
            x.assignee or "",
        )
    out.print(table)


@tasks_app.command("done")
def tasks_done(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Task id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mark a task as done."""
    from cobro.engine.tasks import complete_task

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            task = complete_task(conn, ws.company_id, task_id, utcnow())
    except CobroError as exc:
        fail(str(exc), 1)
    finally:
        ws.close()
    if as_json:
        print_json(task.to_json(ZoneInfo(ws.config.company.timezone)))
        return
    out.print(f"task {task.id} done: {task.customer} — {task.message}", markup=False)


def account(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor's external id.")],
    on: Annotated[str | None, typer.Option("--date", help="Statement date.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A debtor's account: statement of open items (overdue, disputed, promised), claims with
    what followed each one (deliveries, opens, reads, disputes, promises, payments),
    disputes, promises to pay and tasks."""
    from sqlalchemy import select

    from cobro.engine.response_lists import list_disputes, list_promises, pause_status
    from cobro.engine.tasks import list_tasks, statement, statement_totals
    from cobro.evidence.history import claim_history
    from cobro.store import tables as t

    ws = open_ws(ctx)
    try:
        day = _today(ws, on)
        with ws.engine.connect() as conn:
            c = t.customers.c
            info = conn.execute(
                select(
                    c.external_id,
                    c.name,
                    c.email,
                    c.invalid_email,
                    c.invalid_phone,
                    c.kind,
                    c.group_name,
                    c.effective_policy,
                    c.blocked,
                ).where(c.company_id == ws.company_id, c.external_id == customer)
            ).first()
            if info is None:
                fail(f"no debtor {customer!r}", 1)
            lines = statement(conn, ws.company_id, customer, day)
            claims = claim_history(conn, ws.config, ws.company_id, customer)
            tasks = list_tasks(conn, ws.company_id, customer=customer)
            disputes = list_disputes(conn, ws.company_id, customer=customer)
            promises = list_promises(conn, ws.company_id, customer=customer)
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    totals = statement_totals(lines)
    paused = pause_status(disputes, promises)
    if as_json:
        print_json(
            {
                "customer": info.external_id,
                "name": info.name,
                "email": info.email,
                "invalid_email": info.invalid_email,
                "invalid_phone": info.invalid_phone,
                "policy": info.effective_policy,
                "blocked": info.blocked,
                "date": day.isoformat(),
                "statement": [
                    {
                        "number": x.number,
                        "kind": x.kind,
                        "due_on": x.due_on.isoformat(),
                        "currency": x.amount.currency,
                        "amount": str(x.amount.amount),
                        "balance": str(x.balance.amount),
                        "days_overdue": max(x.days_overdue, 0),
                        "overdue": x.days_overdue > 0,
                        "paused": paused.get(x.number),
                    }
                    for x in lines
                ],
                "totals": {k: str(v.amount) for k, v in totals.items()},
                "claims": [cl.to_json() for cl in claims],
                "disputes": [x.to_json(tz) for x in disputes],
                "promises": [x.to_json(tz) for x in promises],
                "tasks": [task.to_json(tz) for task in tasks],
            }
        )
        return
    unusable = [
        f"unusable {what} on file: {value!r}"
        for what, value in (("email", info.invalid_email), ("phone", info.invalid_phone))
        if value
    ]
    out.print(
        f"[bold]{escape(info.external_id)}[/] {escape(info.name)} · "
        f"{escape(info.email or 'no email')} · policy {info.effective_policy}"
        + "".join(f" · [yellow]{escape(u)}[/]" for u in unusable)
        + (" · [red]BLOCKED[/]" if info.blocked else ""),
        highlight=False,
    )
    st = Table(title=f"Statement on {day}")
    for col in ("document", "due", "amount", "balance", "status"):
        st.add_column(col)
    for x in lines:
        status = f"overdue {x.days_overdue} d" if x.days_overdue > 0 else "not due"
        if x.kind == "credit_note":
            status = "credit note" + (
                f", {-x.balance.amount} not applied" if x.balance.amount < 0 else ", applied"
            )
        if x.number in paused:
            status += f", {paused[x.number]}"
        add_row(st, x.number, x.due_on.isoformat(), str(x.amount), str(x.balance), status)
    for cur, total in totals.items():
        add_row(st, "", "", f"total {cur}", str(total), "")
    out.print(st)
    ct = Table(title=f"Claims ({len(claims)})")
    for col in ("date", "phase", "status", "items", "events"):
        ct.add_column(col)
    for cl in claims:
        add_row(
            ct,
            cl.occurrence_on.isoformat(),
            cl.step if cl.phase_name == cl.step else f"{cl.step} {cl.phase_name}",
            cl.status,
            str(len(cl.items)),
            "\n".join(f"{e.when(tz)} {e.text}" for e in cl.events),
        )
    out.print(ct)
    if disputes:
        dt = Table(title=f"Disputes ({len(disputes)})")
        for col in ("id", "opened", "item", "reason", "source", "status"):
            dt.add_column(col)
        for d in disputes:
            add_row(
                dt,
                d.id,
                local_time(d.opened_at, tz),
                d.item,
                d.reason,
                d.source,
                d.status + (f": {d.resolution}" if d.resolution else ""),
            )
        out.print(dt)
    if promises:
        pt = Table(title=f"Promises to pay ({len(promises)})")
        for col in ("id", "made", "items", "promised", "paused until", "status"):
            pt.add_column(col)
        for p in promises:
            add_row(
                pt,
                p.id,
                local_time(p.created_at, tz),
                ", ".join(i.number for i in p.items),
                p.promised_on.isoformat(),
                p.paused_until.isoformat(),
                p.status,
            )
        out.print(pt)
    tt = Table(title=f"Tasks ({len(tasks)})")
    for col in ("id", "due", "message", "status"):
        tt.add_column(col)
    for task in tasks:
        add_row(tt, str(task.id), local_time(task.due_at, tz), task.message, task.status)
    out.print(tt)
