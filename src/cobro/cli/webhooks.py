"""``cobro webhooks``: the endpoints that receive the company's events, and their deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from cobro.cli.common import BAD_INPUT, MAX_ID, add_row, fail, open_ws, out, print_json
from cobro.cli.staff import local_time
from cobro.errors import CobroError
from cobro.workspace import utcnow

if TYPE_CHECKING:
    from cobro.engine.webhooks import Delivery

webhooks_app = typer.Typer(
    help="Outgoing webhooks: endpoints that receive the company's events, signed "
    "(Standard Webhooks), retried until they accept.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
Name = Annotated[str, typer.Argument(help="The endpoint's name (`cobro webhooks list`).")]


@webhooks_app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where the events are posted: https://...")],
    name: Annotated[
        str | None,
        typer.Option("--name", help="A name for it, e.g. helpdesk (default: the URL's host)."),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            help="Event types, comma-separated (`cobro webhooks events`); default: every type.",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Add an endpoint and print its signing secret, once: the receiver checks each post's
    signature with it."""
    from cobro.engine.webhooks import add_endpoint, check_name, check_url, parse_events

    try:  # bad input is refused before the workspace is opened
        check_url(url)
        if name is not None:
            check_name(name)
        parse_events(events)
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            endpoint, secret = add_endpoint(
                conn, ws.company_id, url, utcnow(), name=name, events=events
            )
        tz = ZoneInfo(ws.config.company.timezone)
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    if as_json:
        print_json({**endpoint.to_json(tz), "secret": secret})
        return
    out.print(
        f"added webhook endpoint {endpoint.name}: {endpoint.url}\n"
        f"events: {', '.join(endpoint.events) if endpoint.events != ('*',) else 'every type'}\n"
        f"signing secret (shown this once; give it to the receiver): {secret}",
        markup=False,
        highlight=False,
    )


@webhooks_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The company's endpoints: name, URL, event types, enabled (never their secrets)."""
    from cobro.engine.webhooks import list_endpoints

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = list_endpoints(conn, ws.company_id)
        tz = ZoneInfo(ws.config.company.timezone)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json(tz) for x in found])
        return
    table = Table(title=f"{len(found)} webhook endpoint(s)")
    for col in ("name", "url", "events", "enabled", "added"):
        table.add_column(col)
    for x in found:
        events = "every type" if x.events == ("*",) else ", ".join(x.events)
        add_row(
            table, x.name, x.url, events, "yes" if x.enabled else "no", local_time(x.created_at, tz)
        )
    out.print(table)


@webhooks_app.command("events")
def events_(as_json: AsJson = False) -> None:
    """The event types an endpoint can subscribe to."""
    from cobro.engine.webhooks import EVENT_TYPES

    if as_json:
        print_json(list(EVENT_TYPES))
        return
    for name in EVENT_TYPES:
        out.print(name, markup=False, highlight=False)


@webhooks_app.command("remove")
def remove(ctx: typer.Context, name: Name) -> None:
    """Remove an endpoint: deliveries waiting for it are cancelled; those done stay listed."""
    from cobro.engine.webhooks import remove_endpoint

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            cancelled = remove_endpoint(conn, ws.company_id, name, utcnow())
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    more = f"; {cancelled} delivery(ies) waiting for it cancelled" if cancelled else ""
    out.print(f"removed webhook endpoint {name}{more}", markup=False, highlight=False)


def _switch(ctx: typer.Context, name: str, enabled: bool) -> None:
    from cobro.engine.webhooks import set_enabled

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            set_enabled(conn, ws.company_id, name, enabled)
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    state = "enabled" if enabled else "disabled: it gets no new events, waiting ones are cancelled"
    out.print(f"webhook endpoint {name} {state}", markup=False, highlight=False)


@webhooks_app.command("enable")
def enable(ctx: typer.Context, name: Name) -> None:
    """Send events to an endpoint again."""
    _switch(ctx, name, True)


@webhooks_app.command("disable")
def disable(ctx: typer.Context, name: Name) -> None:
    """Stop sending events to an endpoint (its deliveries waiting are cancelled)."""
    _switch(ctx, name, False)


def _attempt_lines(delivery: Delivery, tz: ZoneInfo) -> list[str]:
    """``#2 2026-04-05 09:05 HTTP 500: down (31 ms)`` for each attempt."""
    return [
        f"#{a.attempt} {local_time(a.at, tz)} {a.error or f'HTTP {a.status_code}'} "
        f"({a.duration_ms} ms)"
        for a in delivery.attempts
    ]


@webhooks_app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only planned, sending, sent, failed or cancelled ones."),
    ] = None,
    event: Annotated[str | None, typer.Option("--event", help="Only this event type.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this debtor.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, max=MAX_ID, help="Only those older than this delivery id."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Webhook deliveries, newest first, each with its attempts: when, the HTTP status or
    the error, and how long it took."""
    from cobro.engine.webhooks import list_deliveries

    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = list_deliveries(
                conn,
                ws.company_id,
                endpoint=endpoint,
                status=status,
                event=event,
                customer=customer,
                before=before,
                limit=limit,
            )
        tz = ZoneInfo(ws.config.company.timezone)
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    if as_json:
        print_json([x.to_json(tz) for x in found])
        return
    table = Table(title=f"{len(found)} webhook delivery(ies)")
    for col in ("id", "created", "endpoint", "event", "customer", "status", "attempts"):
        table.add_column(col)
    for x in found:
        status_text = x.status
        if x.status == "planned" and x.next_attempt_at is not None and x.attempts:
            status_text += f", next {local_time(x.next_attempt_at, tz)}"
        if x.reason and x.status != "sent":
            status_text += f": {x.reason}"
        add_row(
            table,
            x.id,
            local_time(x.created_at, tz),
            x.endpoint,
            x.event,
            x.customer,
            status_text,
            "\n".join(_attempt_lines(x, tz)) or "-",
        )
    out.print(table)


@webhooks_app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    delivery: Annotated[
        int,
        typer.Argument(min=1, max=MAX_ID, help="The delivery's id (`webhooks deliveries`)."),
    ],
) -> None:
    """Post a failed or cancelled delivery again (same webhook-id), with a fresh retry
    budget; the next `cobro dispatch` sends it."""
    from cobro.engine.webhooks import redeliver as redeliver_one

    ws = open_ws(ctx)
    try:
        with ws.engine.begin() as conn:
            redeliver_one(conn, ws.company_id, delivery, utcnow())
    except CobroError as exc:
        fail(str(exc), BAD_INPUT)
    finally:
        ws.close()
    out.print(
        f"delivery {delivery} planned again; `cobro dispatch` posts it",
        markup=False,
        highlight=False,
    )
