"""``cobro serve``: the web application (the debtor portal) on the workspace;
``cobro portal link``: a fresh signed link to a debtor's latest claim."""

from __future__ import annotations

import errno
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cobro.cli.common import Options, err, fail, open_ws, out, print_json
from cobro.workspace import CLOCK_VARIABLE, utcnow

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from cobro.workspace import Workspace

portal_app = typer.Typer(
    help="The debtor portal: the page a claim's link opens.", no_args_is_help=True
)


def _listen(
    host: str, port: int, *, shared_port: bool = False, probe: bool = False
) -> socket.socket:
    """A socket listening on ``host:port``, or a one-line error naming the option. With
    ``shared_port``, one of several bound to the same port (``SO_REUSEPORT``), not yet
    listening: the worker it is for listens once it serves (asyncio's ``create_server``),
    and the kernel spreads new connections over the sockets that listen. With ``probe``,
    a port another program holds is refused first, by a socket bound without
    ``SO_REUSEPORT`` (the sockets of another ``cobro serve --workers`` would otherwise let
    it share the port)."""
    if probe:
        _listen(host, port).close()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host!r}: {exc.strerror}", 2)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if not shared_port:
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
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            envvar="COBRO_SERVE_WORKERS",
            min=1,
            max=32,
            help=(
                "Processes serving on the one socket (one per core); a worker that dies "
                "is replaced. Each counts failed logins and API authentications itself: "
                "an address is refused after at most N times the limit."
            ),
        ),
    ] = 1,
) -> None:
    """Serve the debtor portal (the page each claim's link opens), the staff dashboard
    (/dashboard, 'cobro users add') and the REST API (/api/v1) until Ctrl-C: for the
    workspace, or every company of a server root."""
    from cobro.engine.users import UserError, lowered_cost

    try:
        lowered_cost()
    except UserError as exc:
        fail(str(exc), 2)
    served = open_companies_or_fail(ctx)
    if workers > 1:
        _serve_with_workers(ctx, served, host, port, access_log, workers)
        return
    import uvicorn

    from cobro.web.app import create_app

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
        server = uvicorn.Server(config)
        # Ctrl-C or SIGTERM from the moment the line is said stops the server, even before
        # uvicorn takes the signals over (it starts, sees it should stop, and stops).
        for each_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each_signal, server.handle_exit)
        # Said once the socket listens: a script may connect as soon as it reads this line.
        _say_serving(served, host, port)
        import gc

        gc.collect()
        gc.freeze()  # what start-up made lives as long as the server: never scanned again
        server.run(sockets=[sock])
    finally:
        for each in served:
            each.close()


def _say_serving(served: list[Workspace], host: str, port: int) -> None:
    """The line saying where the companies are served (and the clock's, when
    ``COBRO_NOW`` sets it)."""
    if os.environ.get(CLOCK_VARIABLE):
        out.print(
            f"The clock is set by {CLOCK_VARIABLE}: it is {utcnow().isoformat()} now.",
            markup=False,
            highlight=False,
        )
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(w.config.company.name for w in served)
    out.print(
        f"Serving {names} on http://{shown}:{port}/ "
        f"(links: {served[0].config.company.portal_url.rstrip('/')}/TOKEN; "
        f"API: http://{shown}:{port}/api/v1/docs). Ctrl-C stops.",
        markup=False,
        highlight=False,
    )
    out.file.flush()
    from cobro.engine.users import lowered_cost

    if lowered_cost():
        err.print(
            "Staff passwords are hashed at less than the default cost "
            "(COBRO_PASSWORD_...): never on a production server.",
            markup=False,
            highlight=False,
        )


# How long the workers of ``--workers`` may take to start (import, open the companies,
# build the application) before the server says it is serving all the same.
WORKERS_START_S = 120.0
WORKER_HEALTHCHECK_S = 30


@dataclass(frozen=True)
class WorkerApp:
    """What a worker process of ``cobro serve --workers`` serves: called in that process
    (uvicorn's application factory), it opens the companies itself (no engine or SQLite
    connection is shared between processes), on the clock of the server's process."""

    workspace: Path
    db: str | None
    clock: tuple[str, timedelta] | None

    def __call__(self) -> ASGIApp:
        import atexit
        import gc
        import sys

        from uvicorn.config import STARTUP_FAILURE

        from cobro.errors import CobroError, ConfigError
        from cobro.web.app import create_app
        from cobro.workspace import hold_clock, open_companies

        hold_clock(self.clock)
        _end_with_server()
        try:
            served = open_companies(self.workspace, self.db)
        except ConfigError as exc:
            for p in exc.problems:
                err.print(str(p), highlight=False, markup=False)
            reason = f"{len(exc.problems)} configuration problem(s)"
        except CobroError as exc:
            reason = str(exc)
        else:

            def close() -> None:
                for each in served:
                    each.close()

            atexit.register(close)
            try:
                app = create_app(served)
            except Exception as exc:  # said in one line: the server stops
                reason = f"{type(exc).__name__}: {exc}"
            else:
                gc.collect()
                gc.freeze()  # what start-up made lives as long as the worker
                return app
        err.print(
            f"error: a worker of cobro serve cannot start: {reason}",
            highlight=False,
            markup=False,
        )
        # The server stops (a worker started again would fail too); in a rolling restart
        # (SIGHUP), the workers in place go on.
        sys.exit(STARTUP_FAILURE)


def _end_with_server() -> None:
    """A worker stops (as on SIGTERM: the requests in hand finished) once the server's
    process is gone, even killed with SIGKILL: no worker serves on alone, beside the
    next server on the port."""
    import threading

    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="cobro-serve-parent", daemon=True).start()


def _serve_with_workers(
    ctx: typer.Context,
    served: list[Workspace],
    host: str,
    port: int,
    access_log: bool,
    workers: int,
) -> None:
    """``cobro serve --workers N``: the configuration checked and the sockets bound once,
    here, then N processes serving under uvicorn's supervisor (which replaces a worker
    that dies, and stops them all on Ctrl-C or SIGTERM); the line saying where once each
    of them serves.

    Each worker has a socket of its own on the port (``SO_REUSEPORT``), kept here and
    handed to its replacement: the kernel spreads new connections evenly over the
    workers (on one shared socket, whichever worker wakes first takes the connection, and
    a client's connections can land mostly on one worker)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess, Process

    from cobro.engine.metrics import MULTIPROCESS_DIR
    from cobro.workspace import clock_held

    opts: Options = ctx.obj
    for each in served:  # checked; each worker opens its own
        each.close()
    slots = [_listen(host, port, shared_port=True, probe=True)]
    # The workers' counters, one file each, summed by whichever answers /metrics.
    counters = tempfile.TemporaryDirectory(prefix="cobro-serve-metrics-")
    os.environ[MULTIPROCESS_DIR] = counters.name
    config = uvicorn.Config(
        WorkerApp(opts.workspace, opts.db, clock_held()),
        factory=True,
        workers=workers,
        access_log=access_log,
        log_level="warning",
        server_header=False,
        proxy_headers=True,  # X-Forwarded-For / -Proto from a proxy on this machine
        # A worker that does not answer the supervisor within this is killed and replaced,
        # and a new one of a rolling restart (SIGHUP) must serve within it: room for one
        # that starts on a busy machine (imports, the companies opened, the app built).
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )

    class Workers(Multiprocess):
        stopped = False  # by a signal, rather than by a worker that could not start

        def stopping(self) -> bool:
            """Whether Ctrl-C or SIGTERM came (handled once the workers have started)."""
            return any(sig in (signal.SIGINT, signal.SIGTERM) for sig in self.signal_queue)

        def start(self, process: Process) -> None:
            """``process`` started ignoring Ctrl-C until it serves (an ignored signal is
            the one disposition a new program keeps; uvicorn takes the signal over
            when the worker serves): a Ctrl-C at the terminal, which reaches every
            process of the group, stops the workers through this process, gracefully,
            not each on its own with a traceback of wherever its start-up was.

            This process blocks the signal meanwhile: one that comes while it is
            ignored for the child's sake is kept pending (the kernel never discards a
            blocked signal), and handled here once its handler is back."""
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    process.start()
                finally:
                    signal.signal(signal.SIGINT, handler)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

        def slot(self, index: int) -> list[socket.socket]:
            """The socket of the ``index``-th worker (bound when first asked for)."""
            while len(slots) <= index:
                slots.append(_listen(host, port, shared_port=True))
            return [slots[index]]

        def init_processes(self) -> None:
            for index in range(self.processes_num):
                process = Process(self.config, self.slot(index))
                self.start(process)
                self.processes.append(process)
            deadline = time.monotonic() + WORKERS_START_S
            for process in self.processes:
                while (
                    not self.stopping()
                    and process.process.is_alive()
                    and time.monotonic() < deadline
                    and not process.is_ready(timeout=1)
                ):
                    time.sleep(0.05)  # still starting: asked again in a moment
            if all(p.process.is_alive() for p in self.processes) and not self.stopping():
                # Said once the workers accept: a script may connect as soon as it reads it.
                _say_serving(served, host, port)

        # uvicorn's own, each worker started on its slot's socket:

        def restart_all(self) -> None:
            for index, old in enumerate(self.processes):
                if self.should_exit.is_set():
                    return
                new = Process(self.config, self.slot(index))
                self.start(new)
                if not new.wait_until_ready(
                    self.config.timeout_worker_healthcheck, self.should_exit
                ):
                    new.kill()
                    new.join()
                    if not self.should_exit.is_set():
                        err.print(
                            f"error: a new worker could not start or was not ready in "
                            f"time; worker {old.pid} kept, the restart abandoned",
                            markup=False,
                            highlight=False,
                        )
                    return
                old.terminate()
                old.join()
                self.processes[index] = new

        def keep_subprocess_alive(self) -> None:
            if self.should_exit.is_set():
                return
            for index, process in enumerate(self.processes):
                if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                process.kill()  # hung: killed
                process.join()
                if process.exitcode == STARTUP_FAILURE:
                    self.should_exit.set()  # the next one would fail the same way
                    return
                if self.should_exit.is_set():
                    return
                replacement = Process(self.config, self.slot(index))
                self.start(replacement)
                self.processes[index] = replacement

        def handle_ttin(self) -> None:
            try:
                sockets = self.slot(len(self.processes))
            except (typer.Exit, SystemExit):  # said by _listen; the workers go on
                return
            self.processes_num += 1
            process = Process(self.config, sockets)
            self.start(process)
            self.processes.append(process)

        def handle_ttou(self) -> None:
            if self.processes_num <= 1:
                return
            self.processes_num -= 1
            process = self.processes.pop()
            # Its socket is closed first: no new connection waits on a socket no one takes.
            slots.pop().close()
            process.terminate()
            process.join()

        def handle_int(self) -> None:
            self.stopped = True
            super().handle_int()

        def handle_term(self) -> None:
            self.stopped = True
            super().handle_term()

    supervisor = Workers(config, sockets=slots)
    try:
        supervisor.run()
    finally:
        for each_socket in slots:
            each_socket.close()
        counters.cleanup()
        os.environ.pop(MULTIPROCESS_DIR, None)
    if not supervisor.stopped:
        fail("a worker could not start (said above); the server stopped", 1)


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
