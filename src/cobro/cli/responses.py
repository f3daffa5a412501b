"""Commands for disputes and promises to pay: list them, record one taken by phone, resolve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from cobro.cli.common import BAD_INPUT, MAX_ID, add_row, fail, open_ws, out, parse_date, print_json
from cobro.cli.staff import local_time
from cobro.errors import CobroError
from cobro.workspace import utcnow

if TYPE_CHECKING:
    from cobro.engine.responses import Attachment
    from cobro.workspace import Workspace

disputes_app = typer.Typer(
    help="Disputed items: left out of every claim until staff resolve the dispute.",
    no_args_is_help=True,
)
promises_app = typer.Typer(
    help="Promises to pay: their items are paused until the promised date plus the grace.",
    no_args_is_help=True,
)

OpenOnly = Annotated[bool, typer.Option("--open", help="Only those still open.")]
Customer = Annotated[str | None, typer.Option("--customer", help="Only this debtor.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


def _tz(ws: Workspace) -> ZoneInfo:
    return ZoneInfo(ws.config.company.timezone)


def _attachment(path: Path, max_kb: int) -> Attachment:
    """The file staff attach to a dispute, within ``portal.dispute_attachment_max_kb``."""
    import mimetypes

    from cobro.engine.responses import Attachment

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        fail(f"--attach: {path}: no such file", BAD_INPUT)
    except OSError as exc:
        fail(f"--attach: {path}: cannot be read: {exc.strerror}", BAD_INPUT)
    if len(data) > max_kb * 1024:
        fail(
            f"--attach: {path}: {len(data) // 1024} KB is over the {max_kb} KB limit "
            "(portal.dispute_attachment_max_kb)",
            BAD_INPUT,
        )
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(path.name, kind, data)


@disputes_app.command("list")
def disputes_list(
    ctx: typer.Context,
    open_only: OpenOnly = False,
    customer: Customer = None,
    as_json: AsJson = False,
) -> None:
    """Disputes, oldest first: item, reason, who recorded it, status."""
    from cobro.engine.response_lists import list_disputes

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = list_disputes(conn, ws.company_id, open_only=open_only, customer=customer)
        tz = _tz(ws)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json(tz) for x in found])
        return
    table = Table(title=f"{len(found)} dispute(s)")
    for col in ("id", "opened", "customer", "item", "balance", "reason", "source", "status"):
        table.add_column(col)
    for x in found:
        status = x.status
        if x.resolved_at is not None:
            status += f" {local_time(x.resolved_at, tz)}"
            status += f": {x.resolution}" if x.resolution else ""
        add_row(
            table,
            x.id,
            local_time(x.opened_at, tz),
            f"{x.customer} {x.customer_name}",
            x.item,
            x.balance,
            x.reason + (f" [attachment {x.attachment}]" if x.attachment else ""),
            x.source,
            status,
        )
    out.print(table)


@disputes_app.command("open")
def disputes_open(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor's external id.")],
    item: Annotated[str, typer.Argument(help="The item's number or external id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the debtor disputes it.")],
    attach: Annotated[
        Path | None, typer.Option("--attach", help="A file the debtor sent (kept with it).")
    ] = None,
) -> None:
    """Record a dispute taken by phone or mail: the item is left out of every claim until
    the dispute is resolved, and a staff task is opened."""
    from cobro.engine.response_lists import debtor_id, item_id
    from cobro.engine.responses import open_dispute

    ws = open_ws(ctx)
    try:
        if not reason.strip():
            fail("--reason: a dispute needs a reason", BAD_INPUT)
        attachment = (
            _attachment(attach, ws.config.portal.dispute_attachment_max_kb) if attach else None
        )
        with ws.engine.begin() as conn:
            cid = debtor_id(conn, ws.company_id, customer)
            rid = item_id(conn, ws.company_id, cid, item)
            found = open_dispute(
                conn,
                ws.company_id,
                cid,
                rid,
                reason,
                utcnow(),
                source="staff",
                attachment=attachment,
            )
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(
        f"dispute {found} opened: {item} of {customer} is left out of the claims until it is "
        f"resolved (`cobro disputes resolve {found} --accept|--reject`); a task was created",
        markup=False,
        highlight=False,
    )


@disputes_app.command("resolve")
def disputes_resolve(
    ctx: typer.Context,
    dispute_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, help="The dispute's id (`cobro disputes list`).")
    ],
    accept: Annotated[
        bool, typer.Option("--accept", help="The debtor is right: the item is not claimed.")
    ] = False,
    reject: Annotated[
        bool, typer.Option("--reject", help="The item is owed: it is claimed again.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="What was decided, and why.")] = None,
) -> None:
    """Accept or reject an open dispute. Rejected: the item is claimed again from the next
    run. Accepted: it stays out of every claim (issue a credit note to close it)."""
    from cobro.engine.responses import resolve_dispute

    if accept == reject:
        fail("give one of --accept or --reject", BAD_INPUT)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            resolve_dispute(conn, ws.company_id, dispute_id, accept, note, utcnow())
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    then = (
        "its item stays out of every claim; issue a credit note to close it"
        if accept
        else "its item is claimed again from the next run"
    )
    out.print(
        f"dispute {dispute_id} {'accepted' if accept else 'rejected'}: {then}",
        markup=False,
        highlight=False,
    )


@promises_app.command("add")
def promises_add(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor's external id.")],
    by: Annotated[str, typer.Option("--by", help="The promised date (YYYY-MM-DD).")],
    items: Annotated[
        str | None, typer.Option("--items", help="Item numbers or external ids, comma-separated.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every open item not disputed or promised yet.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="What was agreed.")] = None,
) -> None:
    """Record a promise to pay taken by phone: its items are paused until the promised date
    plus portal.promise_grace_days; unpaid then, the promise is broken and dunning resumes."""
    from cobro.engine.response_lists import debtor_id, item_id, promisable_items
    from cobro.engine.responses import add_promise

    refs = [x.strip() for x in (items or "").split(",") if x.strip()]
    if every == bool(refs):
        fail("give either --items N1,N2 or --all", BAD_INPUT)
    promised_on = parse_date(by, "--by")
    assert promised_on is not None
    ws = open_ws(ctx)
    try:
        portal = ws.config.portal
        now = utcnow()
        today = now.astimezone(_tz(ws)).date()
        if promised_on < today:
            fail(f"--by: {promised_on} has passed (today is {today})", BAD_INPUT)
        if (promised_on - today).days > portal.promise_max_days:
            fail(
                f"--by: {promised_on} is more than {portal.promise_max_days} days ahead "
                "(portal.promise_max_days)",
                BAD_INPUT,
            )
        with ws.engine.begin() as conn:
            cid = debtor_id(conn, ws.company_id, customer)
            if every:
                ids = promisable_items(conn, ws.company_id, cid)
                if not ids:
                    fail(f"{customer} has no open item that is not disputed or promised", BAD_INPUT)
            else:
                ids = list(dict.fromkeys(item_id(conn, ws.company_id, cid, ref) for ref in refs))
            found = add_promise(
                conn,
                ws.company_id,
                cid,
                ids,
                promised_on,
                portal.promise_grace_days,
                now,
                today=today,
                max_days=portal.promise_max_days,
                source="staff",
                note=note,
            )
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    from cobro.engine.pauses import pause_ends

    until = pause_ends(promised_on, portal.promise_grace_days)
    out.print(
        f"promise {found} recorded: {len(ids)} item(s) of {customer} paused until "
        f"{until.isoformat()} (promised for {promised_on.isoformat()}, "
        f"{portal.promise_grace_days} day(s) of grace)",
        markup=False,
        highlight=False,
    )


@promises_app.command("list")
def promises_list(
    ctx: typer.Context,
    open_only: OpenOnly = False,
    customer: Customer = None,
    as_json: AsJson = False,
) -> None:
    """Promises to pay, oldest first: items, promised date, end of the pause, status."""
    from cobro.engine.response_lists import list_promises

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = list_promises(conn, ws.company_id, open_only=open_only, customer=customer)
        tz = _tz(ws)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json(tz) for x in found])
        return
    table = Table(title=f"{len(found)} promise(s)")
    for col in ("id", "made", "customer", "items", "promised", "paused until", "source", "status"):
        table.add_column(col)
    for x in found:
        status = x.status + (f" {local_time(x.settled_at, tz)}" if x.settled_at else "")
        add_row(
            table,
            x.id,
            local_time(x.created_at, tz),
            f"{x.customer} {x.customer_name}",
            ", ".join(f"{i.number} {i.balance}" for i in x.items),
            x.promised_on.isoformat(),
            x.paused_until.isoformat(),
            x.source,
            status,
        )
    out.print(table)
