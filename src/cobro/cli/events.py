"""Commands for integrators and administrators: posting events, banking contacts."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cobro.cli.common import add_row, err, fail, open_ws, out, print_json, report_not_sent
from cobro.domain.model import BANKING_TYPES
from cobro.errors import CobroError, ConfigError
from cobro.intake import jsontext
from cobro.workspace import utcnow

event_app = typer.Typer(help="Events from your systems: subscriptions, charges, banking.")
contacts_app = typer.Typer(help="Banking notification contacts.", no_args_is_help=True)


def _instant(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at: {value!r} is not an ISO date and time", 2)
    if at.tzinfo is None:
        fail("--at: give a time zone, e.g. 2026-03-01T10:00:00+01:00", 2)
    return at


@event_app.command("post")
def event_post(
    ctx: typer.Context,
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. charge.succeeded")],
    data: Annotated[str, typer.Option("--data", help="JSON file with the event, or - for stdin")],
    at: Annotated[str | None, typer.Option("--at", help="Act as of this instant (ISO).")] = None,
    no_send: Annotated[bool, typer.Option("--no-send", help="Record only; send later.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record an event (its "id" makes a redelivery harmless) and send what it causes."""
    from cobro.engine.runs import dispatch_due
    from cobro.intake.events import EventError, post_event

    try:
        text = sys.stdin.read() if data == "-" else Path(data).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--data: cannot be read as UTF-8 text: {exc}", 2)
    try:
        payload = jsontext.loads(text)
    except jsontext.TooDeep as exc:
        fail(f"--data: {exc}", 2)
    except json.JSONDecodeError as exc:
        fail(f"--data: not valid JSON: {exc}", 2)
    if not isinstance(payload, dict):
        fail("--data: the event must be a JSON object", 2)
    now = _instant(at)
    ws = open_ws(ctx)
    try:
        result = post_event(ws, event_type, payload, now)
        dispatched = None
        if result.notices and not no_send:
            dispatched = dispatch_due(ws, now)
        sent = dispatched.sent if dispatched else 0
    except EventError as exc:
        for problem in exc.problems:
            err.print(problem, highlight=False, markup=False)
        fail("event refused; nothing was changed", 2)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail("configuration error; the notices stay in the outbox until it is fixed", 2)
    except CobroError as exc:
        fail(str(exc))
    finally:
        ws.close()
    if as_json:
        print_json({**result.to_json(), "sent": sent})
    else:
        what = "duplicate, ignored" if result.duplicate else f"{len(result.notices)} notice(s)"
        out.print(
            f"{event_type} {result.event_id}: {what}; sent {sent}", highlight=False, markup=False
        )
        for note in result.notes:
            out.print(f"  {note}", highlight=False, markup=False)
    if dispatched is not None:  # the event is recorded; exit 1 if what it caused is not sent
        report_not_sent(dispatched.errors, dispatched.failed, dispatched.retrying)


@contacts_app.command("assign")
def contacts_assign(
    ctx: typer.Context,
    notice_type: Annotated[str, typer.Argument(metavar="TYPE", help=", ".join(BANKING_TYPES))],
    contacts: Annotated[list[str], typer.Argument(metavar="CONTACT...", help="Contact ids")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Assign contacts (with the banking role) to a banking notification."""
    from cobro.engine.banking import assign

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            n = assign(conn, ws.company_id, notice_type, contacts, utcnow())
    except CobroError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    if as_json:
        print_json({"type": notice_type, "assigned": n})
        return
    out.print(f"{notice_type}: {n} contact(s) assigned", markup=False)


@contacts_app.command("unassign")
def contacts_unassign(
    ctx: typer.Context,
    notice_type: Annotated[str, typer.Argument(metavar="TYPE")],
    contacts: Annotated[list[str], typer.Argument(metavar="CONTACT...")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remove contacts from a banking notification (asks for confirmation)."""
    from cobro.engine.banking import unassign

    if not yes and not typer.confirm(
        f"Remove {', '.join(contacts)} from {notice_type} notifications? When nobody is "
        "assigned, these notices go to the primary contacts"
    ):
        fail("nothing was removed", 1)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            n = unassign(conn, ws.company_id, notice_type, contacts)
    except CobroError as exc:
        fail(str(exc), 2)
    finally:
        ws.close()
    if as_json:
        print_json({"type": notice_type, "removed": n})
        return
    out.print(f"{notice_type}: {n} contact(s) removed", markup=False)


@contacts_app.command("list")
def contacts_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Every banking notification type with its assigned contacts."""
    from cobro.engine.banking import assignments

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = assignments(conn, ws.company_id)
    finally:
        ws.close()
    if as_json:
        print_json(
            {
                kind: [
                    {"contact": a.contact, "name": a.name, "email": a.email, "customer": a.customer}
                    for a in found
                    if a.notice_type == kind
                ]
                for kind in BANKING_TYPES
            }
        )
        return
    table = Table(title="Banking notifications")
    for col in ("notification", "contacts"):
        table.add_column(col)
    for kind in BANKING_TYPES:
        held = [
            f"{a.contact} {a.name} <{a.email}> ({a.customer})"
            for a in found
            if a.notice_type == kind
        ]
        add_row(table, kind, "\n".join(held) or "— (primary contacts)")
    out.print(table)


push_app = typer.Typer(help="Web Push: the VAPID key pair members' browsers subscribe with.")


@push_app.command("keys")
def push_keys(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make the VAPID key pair (or show the public key of the one there is).

    The private key is written to the file named by channels.push.private_key_file
    (readable by its owner only); the public key is what the member's browser passes
    as applicationServerKey to pushManager.subscribe().
    """
    import os

    from cobro.channels.push import new_vapid_keys, public_key_of

    ws = open_ws(ctx)
    try:
        cfg = ws.config.channels.push
        name = cfg.private_key_file if cfg else "vapid_private.pem"
        path = ws.root / name
        created = force or not path.exists()
        if not created:
            try:
                public = public_key_of(path.read_text())
            except ValueError as exc:
                fail(f"{path}: {exc}", 2)
        else:
            pem, public = new_vapid_keys()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(pem)
        if as_json:
            print_json(
                {
                    "private_key_file": str(path),
                    "created": created,
                    "public_key": public,
                    "configured": cfg is not None,
                }
            )
            return
        if created:
            out.print(f"wrote {path}; public key (applicationServerKey):", markup=False)
        else:
            out.print(f"{path} exists; its public key (applicationServerKey):", markup=False)
        out.print(public, markup=False, highlight=False)
        if cfg is None:
            err.print("channels.push is not configured in cobro.yaml yet", markup=False)
    finally:
        ws.close()
