"""``cobro serve``: the web application (the debtor portal) on the workspace;
``cobro portal link``: a fresh signed link to a debtor's latest claim."""

from __future__ import annotations

import errno
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from cobro.cli.common import Options, err, fail, open_ws, out, print_json
from cobro.workspace import CLOCK_VARIABLE, utcnow

if TYPE_CHECKING:
    from cobro.workspace import Workspace

portal_app = typer.Typer(
    help="The debtor portal: the page a claim's link opens.", no_args_is_help=True
)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, or a one-line error naming the option."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host!r}: {exc.strerror}", 2)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"--port {port}: another program is listening on {host}:{port}", 2)
        fail(f"--host {host} --port {port}: {exc.strerror}", 2)
    return sock


def open_companies_or_fail(ctx: typer.Context) -> list[Workspace]:
    """The companies the workspace option names (one, or a server root's), or a one-line
    error."""
    from cobro.errors import CobroError, ConfigError
    from cobro.workspace import open_companies

    opts: Options = ctx.obj
    try:
        return open_companies(opts.workspace, opts.db)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False)
        fail(f"{len(exc.problems)} configuration problem(s); nothing was done", 2)
    except CobroError as exc:
        fail(str(exc), 2)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (its URL holds the link's token; off by default).",
        ),
    ] = False,
) -> None:
    """Serve the debtor portal (the page each claim's link opens), the staff dashboard
    (/dashboard, 'cobro users add') and the REST API (/api/v1) until Ctrl-C: for the
    workspace, or every company of a server root."""
    import uvicorn

    from cobro.engine.users import UserError, lowered_cost
    from cobro.web.app import create_app

    try:
        lowered = lowered_cost()
    except UserError as exc:
        fail(str(exc), 2)
    served = open_companies_or_fail(ctx)
    ws = served[0]
    try:
        app = create_app(served)
        sock = _listen(host, port)
        config = uvicorn.Config(
            app,
            access_log=access_log,
            log_level="warning",
            server_header=False,
            proxy_headers=True,  # X-Forwarded-For / -Proto from a proxy on this machine
        )
        if os.environ.get(CLOCK_VARIABLE):
            out.print(
                f"The clock is set by {CLOCK_VARIABLE}: it is {utcnow().isoformat()} now.",
                markup=False,
                highlight=False,
            )
        if lowered:
            err.print(
                "Staff passwords are hashed at less than the default cost "
                "(COBRO_PASSWORD_...): never on a production server.",
                markup=False,
                highlight=False,
            )
        shown = f"[{host}]" if ":" in host else host
        # Said once the socket listens: a script may connect as soon as it reads this line.
        names = ", ".join(w.config.company.name for w in served)
        out.print(
            f"Serving {names} on http://{shown}:{port}/ "
            f"(links: {ws.config.company.portal_url.rstrip('/')}/TOKEN; "
            f"API: http://{shown}:{port}/api/v1/docs). Ctrl-C stops.",
            markup=False,
            highlight=False,
        )
        out.file.flush()
        import gc

        gc.collect()
        gc.freeze()  # what start-up made lives as long as the server: never scanned again
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for each in served:
            each.close()


@portal_app.command("link")
def portal_link(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The debtor (external id).")],
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base URL of the portal (default: company.portal_url)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the link as JSON.")] = False,
) -> None:
    """A fresh signed link to the page of the debtor's latest claim sent (for staff to
    hand over, e.g. when the one in the message has expired)."""
    from cobro.engine.links import link_url, make_token
    from cobro.evidence.history import step_name
    from cobro.web.portal.queries import latest_claim
    from cobro.workspace import utcnow

    if base is not None and not base.startswith(("http://", "https://")):
        fail(f"--base: {base!r} is not an http(s) URL", 2)
    ws = open_ws(ctx)
    try:
        with ws.engine.connect() as conn:
            found = latest_claim(conn, ws.config, ws.company_id, customer)
    finally:
        ws.close()
    if found is None:
        fail(f"{customer}: no such debtor, or no claim has been sent to them yet", 2)
    company = ws.config.company
    now = utcnow()
    url = link_url(
        base or company.portal_url, make_token(ws.secret, company.id, customer, found.id, now)
    )
    expires = (now + timedelta(days=company.link_max_age_days)).replace(microsecond=0)
    if as_json:
        print_json(
            {
                "customer": customer,
                "claim": found.id,
                "phase": found.step,
                "phase_name": step_name(ws.config, found.step),
                "date": found.occurrence_on.isoformat(),
                "url": url,
                "expires_at": expires.isoformat(),
            }
        )
        return
    out.print(url, markup=False, highlight=False, soft_wrap=True)
