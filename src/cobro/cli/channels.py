"""Commands for what channels learn: bounces (``cobro bounces serve|read``), opt-outs
(``cobro optouts list|add|remove``) and suppressed addresses (``cobro suppressions``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from cobro.cli.common import BAD_INPUT, add_row, fail, open_ws, out, print_json
from cobro.cli.staff import local_time
from cobro.errors import CobroError
from cobro.workspace import utcnow

bounces_app = typer.Typer(
    help="Email bounces and complaints: received by SMTP or read from a maildir.",
    no_args_is_help=True,
)
optouts_app = typer.Typer(
    help="Debtors who asked not to be written to on a channel.", no_args_is_help=True
)
suppressions_app = typer.Typer(
    help="Addresses no message goes to any more (bounces, complaints, undelivered SMS).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
CHANNELS = ("email", "sms", "push", "voice")


def _channel(value: str) -> str:
    if value not in CHANNELS:
        fail(f"--channel: {value!r} is not a channel; use {', '.join(CHANNELS)}", BAD_INPUT)
    return value


@bounces_app.command("serve")
def bounces_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 2525,
) -> None:
    """Take bounces and complaints by SMTP until Ctrl-C: mail to the company's bounce
    domain (channels.email.bounces.domain; point its MX here), or to its sender's domain
    when it has none. Every other recipient is refused."""
    import threading

    from aiosmtpd.controller import Controller

    from cobro.cli.web import open_companies_or_fail
    from cobro.intake.bounces import BounceHandler

    served = open_companies_or_fail(ctx)
    try:
        handler = BounceHandler(served, utcnow)
        if not handler.domains:
            fail("no company has a bounce domain or a sender address to take bounces for", 2)
        controller = Controller(handler, hostname=host, port=port, ready_timeout=30)
        try:
            controller.start()
        except (OSError, RuntimeError) as exc:
            fail(f"--host {host} --port {port}: {exc}", 2)
        out.print(
            f"Taking bounces for {', '.join(sorted(handler.domains))} on {host}:{port}. "
            "Ctrl-C stops.",
            markup=False,
            highlight=False,
        )
        out.file.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
    finally:
        for ws in served:
            ws.close()


@bounces_app.command("read")
def bounces_read(
    ctx: typer.Context,
    maildir: Annotated[Path, typer.Option("--maildir", help="A maildir the reports go to.")],
    every: Annotated[
        bool, typer.Option("--all", help="Read the reports already read too (cur/).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Record the bounces and complaints a maildir received; each one read is moved to
    cur/ and marked seen."""
    from cobro.intake.bounces import read_maildir

    if not (maildir / "new").is_dir() or not (maildir / "cur").is_dir():
        fail(f"--maildir: {maildir} is not a maildir (no new/ and cur/)", BAD_INPUT)
    ws = open_ws(ctx)
    try:
        result = read_maildir(ws, maildir, utcnow(), every)
    finally:
        ws.close()
    if as_json:
        print_json(
            {
                "read": result.read,
                "matched": result.matched,
                "unmatched": result.unmatched,
                "not_bounces": result.not_bounces,
                "reports": [{"file": k, **o.to_json()} for k, o in result.outcomes],
            }
        )
        return
    out.print(
        f"{result.read} report(s) read: {result.matched} matched to their message, "
        f"{result.unmatched} for no known message, {result.not_bounces} not a bounce.",
        markup=False,
    )


@optouts_app.command("list")
def optouts_list(
    ctx: typer.Context,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this debtor.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    as_json: AsJson = False,
) -> None:
    """Opt-outs: debtor, channel, where it came from (an SMS reply, the unsubscribe link,
    staff, an import) and when."""
    from cobro.engine.optouts import list_optouts

    if channel is not None:
        _channel(channel)
    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = list_optouts(conn, ws.company_id, customer, channel)
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json() for x in found])
        return
    table = Table(title=f"{len(found)} opt-out(s)")
    for col in ("customer", "channel", "source", "since", "detail"):
        table.add_column(col)
    for x in found:
        add_row(
            table,
            f"{x.customer} {x.customer_name}",
            x.channel,
            x.source.replace("_", " "),
            local_time(x.at, tz),
            x.detail or "",
        )
    out.print(table)


@optouts_app.command("add")
def optouts_add(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor's external id.")],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, push or voice.")],
    note: Annotated[str | None, typer.Option("--note", help="Why (kept with it).")] = None,
) -> None:
    """Record that the debtor asked not to be written to on a channel (taken by phone)."""
    from cobro.engine.optouts import add_optout, customer_id_of

    _channel(channel)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            added = add_optout(
                conn,
                ws.company_id,
                customer_id_of(conn, ws.company_id, customer),
                channel,
                "staff",
                utcnow(),
                note,
            )
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(
        f"{customer}: opted out of {channel}" if added else f"{customer}: already opted out",
        markup=False,
    )


@optouts_app.command("remove")
def optouts_remove(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor's external id.")],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, push or voice.")],
) -> None:
    """Write to the debtor on the channel again (they asked for it)."""
    from cobro.engine.optouts import customer_id_of, remove_optout

    _channel(channel)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            gone = remove_optout(
                conn,
                ws.company_id,
                customer_id_of(conn, ws.company_id, customer),
                channel,
                utcnow(),
            )
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    if not gone:
        fail(f"{customer} has not opted out of {channel}", BAD_INPUT)
    out.print(f"{customer}: written to on {channel} again", markup=False)


@suppressions_app.command("list")
def suppressions_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Suppressed addresses (and those with soft failures counted so far)."""
    from sqlalchemy import select

    from cobro.store import tables as t

    ws = open_ws(ctx)
    s = t.suppressions.c
    try:
        with ws.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(
                        s.channel, s.address, s.suppressed_at, s.reason, s.soft_failures, s.detail
                    )
                    .where(s.company_id == ws.company_id)
                    .order_by(s.channel, s.address)
                )
            )
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    if as_json:
        print_json(
            [
                {
                    "channel": r.channel,
                    "address": r.address,
                    "suppressed": r.suppressed_at is not None,
                    "since": r.suppressed_at.isoformat() if r.suppressed_at else None,
                    "reason": r.reason,
                    "soft_failures": r.soft_failures,
                    "detail": r.detail,
                }
                for r in rows
            ]
        )
        return
    table = Table(title=f"{sum(r.suppressed_at is not None for r in rows)} suppressed address(es)")
    for col in ("channel", "address", "suppressed", "reason", "soft failures", "detail"):
        table.add_column(col)
    for r in rows:
        add_row(
            table,
            r.channel,
            r.address,
            local_time(r.suppressed_at, tz) if r.suppressed_at else "no",
            (r.reason or "").replace("_", " "),
            r.soft_failures,
            r.detail or "",
        )
    out.print(table)
