"""``cobro serve --workers N`` as a user runs it: one server, several processes on one
socket, each worker replaced when it dies, all of them stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from .cli import COBRO, ENV, copy_workspace, free_port, run_cobro, start_serving

# The tests share a module-scoped fixture: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_serve_workers.py")

DEADLINE_S = 60.0  # how long a process may take to start or stop on a busy machine


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose run sent B1 a claim."""
    parent = tmp_path_factory.mktemp("serve-workers")
    root = parent / "acme"
    run_cobro(parent, "init", str(root))
    write(
        root / "customers.csv",
        """
external_id,name,kind,language,email
B1,Ferretería Norte S.L.,business,en,pagos@norte.example
""",
    )
    write(
        root / "receivables.csv",
        """
external_id,customer,number,due_on,currency,amount
R1,B1,F-001,2026-03-01,EUR,1200.00
""",
    )
    run_cobro(root, "import", "customers", "customers.csv")
    run_cobro(root, "import", "receivables", "receivables.csv")
    run_cobro(root, "run", "--date", "2026-02-22")  # phase 00: 7 days before due
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


def workers_of(parent: int) -> set[int]:
    """The live worker processes of the server ``parent`` (its children started by
    multiprocessing's spawn; not its resource tracker, nor a worker dead and not yet
    reaped, whose command line is gone)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition`` holds, at most ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    line: str


@pytest.fixture
def server(ws: Path) -> Iterator[Server]:
    """``cobro serve --workers 2`` on a free port, once it says it is serving."""
    proc, port, line = start_serving(ws, "--workers", "2")
    try:
        assert proc.stderr is not None
        assert f"on http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        yield Server(proc, f"http://127.0.0.1:{port}", line)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=DEADLINE_S)
        finally:
            proc.kill()  # left running when it did not stop (its workers follow it)
            proc.wait()


def answers(ws: Path, url: str) -> None:
    """/healthz, the page of B1's link and the API, each on a connection of its own."""
    link = run_cobro(ws, "portal", "link", "B1", "--base", f"{url}/portal").stdout.strip()
    key = run_cobro(ws, "keys", "create", "--name", "ERP").stdout.strip()
    for _ in range(4):  # new connections: the workers take them in turn as they accept
        assert httpx.get(f"{url}/healthz", timeout=30).text == "ok\n"
        page = httpx.get(link, timeout=30)
        assert page.status_code == 200 and "F-001" in page.text
        debtor = httpx.get(
            f"{url}/api/v1/customers/B1", headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        assert debtor.status_code == 200 and debtor.json()["name"] == "Ferretería Norte S.L."


def test_two_workers_serve_the_portal_and_the_api(ws: Path, server: Server) -> None:
    assert len(workers_of(server.proc.pid)) == 2  # both started before the line was said
    answers(ws, server.url)
    assert len(workers_of(server.proc.pid)) == 2


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(
    ws: Path, server: Server
) -> None:
    before = workers_of(server.proc.pid)
    killed = min(before)

    os.kill(killed, signal.SIGKILL)

    def replaced() -> bool:
        now = workers_of(server.proc.pid)
        return len(now) == 2 and killed not in now

    wait_for(replaced, "a new worker in place of the one killed")
    assert len(workers_of(server.proc.pid) & before) == 1  # the other one went on
    answers(ws, server.url)
    assert server.proc.poll() is None


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_worker_and_exits_0(
    server: Server, stop: signal.Signals
) -> None:
    workers = workers_of(server.proc.pid)
    assert len(workers) == 2

    server.proc.send_signal(stop)

    assert server.proc.wait(timeout=DEADLINE_S) == 0
    wait_for(lambda: not any(alive(pid) for pid in workers), "every worker gone")
    assert server.proc.stdout is not None and server.proc.stderr is not None
    said = server.proc.stderr.read().splitlines()
    # Nothing but the notice of the suite's lowered password cost (tests/cheap_passwords.py).
    assert [line for line in said if not line.startswith("Staff passwords are hashed")] == []
    rest = server.proc.stdout.read()
    assert "Serving" not in rest  # said once, by the server, not by each worker


def test_the_portal_records_one_opened_visit_however_many_workers_take_it(
    ws: Path, server: Server
) -> None:
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    link = run_cobro(ws, "portal", "link", "B1", "--base", f"{server.url}/portal").stdout.strip()

    def visit(_: int) -> int:
        # A connection each: the first visits go to both workers, each of which has not
        # seen this browser yet.
        return httpx.get(link, headers={"user-agent": "Phone/1.0"}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(visit, range(48)))

    assert codes == [200] * 48
    opened = open_workspace(ws)
    try:
        with opened.engine.connect() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(t.claim_views)
                .where(t.claim_views.c.kind == "opened", t.claim_views.c.user_agent == "Phone/1.0")
            ).scalar_one()
    finally:
        opened.close()
    assert count == 1


def test_the_clock_set_by_cobro_now_is_said_once_and_the_workers_keep_it(ws: Path) -> None:
    clock = {"COBRO_NOW": "2026-02-25T10:00:00+01:00"}
    proc, port, first = start_serving(ws, "--workers", "2", env=clock)
    try:
        assert proc.stdout is not None
        serving = proc.stdout.readline()
        assert first.startswith("The clock is set by COBRO_NOW: it is 2026-02-25T09:00"), first
        assert serving.startswith("Serving "), serving
        base = f"http://127.0.0.1:{port}/portal"
        link = run_cobro(ws, "portal", "link", "B1", "--base", base, env=clock).stdout.strip()
        page = httpx.get(link, timeout=30)
        assert page.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_S) == 0
    assert proc.stdout.read() == ""  # nothing more: no worker says it again
    from cobro.store import tables as t
    from cobro.workspace import open_workspace

    opened = open_workspace(ws)
    try:
        with opened.engine.connect() as conn:
            (at,) = conn.execute(
                select(t.claim_views.c.at).where(t.claim_views.c.kind == "opened")
            ).scalars()
    finally:
        opened.close()
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    # The worker's clock is the server's: the visit is recorded on 25 February, moments
    # after 09:00 UTC, however long after the server the worker started.
    assert datetime(2026, 2, 25, 9, tzinfo=UTC) <= at < datetime(2026, 2, 25, 9, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--workers", "0"), {}),
        (("--workers", "33"), {}),
        ((), {"COBRO_SERVE_WORKERS": "0"}),
        ((), {"COBRO_SERVE_WORKERS": "two"}),
    ],
)
def test_a_bad_number_of_workers_is_refused_before_anything_starts(
    ws: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    proc = run_cobro(ws, "serve", "--port", "1", *args, ok=False, env=env)

    assert proc.returncode == 2
    assert "Invalid value for '--workers' (env var: 'COBRO_SERVE_WORKERS')" in proc.stderr
    assert proc.stdout == ""


def test_a_bad_configuration_is_said_once_before_any_worker_starts(ws: Path) -> None:
    with (ws / "cobro.yaml").open("a", encoding="utf-8") as f:
        f.write("bogus: [\n")

    proc = run_cobro(ws, "serve", "--port", "1", "--workers", "4", ok=False)

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"{ws / 'cobro.yaml'}:") and "not valid YAML" in lines[0]
    assert lines[1] == "error: 1 configuration problem(s); nothing was done"
    assert proc.stdout == ""


def test_metrics_sum_every_workers_counters_whichever_answers(ws: Path, server: Server) -> None:
    key = run_cobro(ws, "keys", "create", "--name", "ERP", "--role", "collector").stdout.strip()
    auth = {"authorization": f"Bearer {key}"}
    started = httpx.post(f"{server.url}/api/v1/runs", headers=auth, json={}, timeout=30)
    assert started.status_code == 202, started.text
    run = f"{server.url}{started.headers['location']}"

    def ended() -> bool:
        return httpx.get(run, headers=auth, timeout=30).json()["status"] != "running"

    wait_for(ended, "the run through the API ended")

    def counted(body: str) -> list[str]:
        return [
            line
            for line in body.splitlines()
            if line.startswith("cobro_run_duration_seconds_count{")
        ]

    # One worker did the run; each scrape, on a connection of its own, may be answered by
    # either: all of them say one run.
    scrapes = [httpx.get(f"{server.url}/metrics", timeout=30).text for _ in range(8)]
    assert all(
        counted(body) == ['cobro_run_duration_seconds_count{company="demo"} 1.0']
        for body in scrapes
    ), [counted(body) for body in scrapes]
    assert all("cobro_queue_lag_seconds{" in body for body in scrapes)


def test_a_worker_that_cannot_start_stops_the_server_with_its_reason(
    ws: Path, server: Server
) -> None:
    workers = workers_of(server.proc.pid)
    with (ws / "cobro.yaml").open("a", encoding="utf-8") as f:
        f.write("bogus: [\n")  # broken by hand since the server started

    os.kill(min(workers), signal.SIGKILL)  # its replacement reads the file again

    assert server.proc.wait(timeout=DEADLINE_S) == 1
    wait_for(lambda: not any(alive(pid) for pid in workers), "every worker gone")
    assert server.proc.stderr is not None
    said = server.proc.stderr.read()
    assert "not valid YAML" in said
    assert "error: a worker of cobro serve cannot start: 1 configuration problem(s)" in said
    assert said.rstrip().endswith(
        "error: a worker could not start (said above); the server stopped"
    ), said


def test_sighup_replaces_the_workers_one_by_one_answering_all_along(
    ws: Path, server: Server
) -> None:
    before = workers_of(server.proc.pid)
    codes = []

    server.proc.send_signal(signal.SIGHUP)

    def replaced() -> bool:
        codes.append(httpx.get(f"{server.url}/healthz", timeout=30).status_code)
        now = workers_of(server.proc.pid)
        return len(now) == 2 and not now & before

    wait_for(replaced, "both workers replaced")
    assert set(codes) == {200}  # every request during the restart was answered
    answers(ws, server.url)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_one_process_stopped_right_after_its_line_stops_and_exits_0(
    ws: Path, stop: signal.Signals
) -> None:
    """A Ctrl-C the moment "Serving" is said, before uvicorn has taken the signals over,
    still stops the server (not swallowed by whatever runs at that moment)."""
    proc, _port, line = start_serving(ws)
    try:
        assert line.startswith("Serving ")
        proc.send_signal(stop)
        assert proc.wait(timeout=DEADLINE_S) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()  # left running when it failed
        proc.wait()


def sockets_of(pid: int) -> set[str]:
    """The inodes of the sockets the process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets(port: int, state: str) -> list[str]:
    """The inodes of the TCP sockets on local ``port`` in ``state`` (01 established, 0A
    listening)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, in_state, inode = fields[1], fields[3], fields[9]
            if in_state == state and int(local.rsplit(":", 1)[1], 16) == port:
                found.append(inode)
    return found


def keep_alive_connections(url: str, count: int) -> list[socket.socket]:
    """``count`` connections to the server, each having had one answer and kept open."""
    host, port = url.removeprefix("http://").split(":")
    opened = []
    for _ in range(count):
        conn = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok\n"):
            got = conn.recv(4096)
            assert got, answer
            answer += got
        assert answer.startswith(b"HTTP/1.1 200"), answer
        opened.append(conn)
    return opened


def test_connections_are_spread_over_the_workers_and_one_less_refuses_none(
    server: Server,
) -> None:
    """Each worker has a socket of its own on the port: 40 connections made one after
    the other are spread over both workers (on one shared socket, the worker that woke
    first could take nearly all). ``kill -TTOU`` stops a worker and closes its socket:
    every new connection then goes to the worker left, none waits on a socket no one
    takes."""
    port = int(server.url.rsplit(":", 1)[1])
    workers = workers_of(server.proc.pid)
    listening = tcp_sockets(port, "0A")
    assert len(listening) == 2, listening  # one per worker, not one shared
    assert sorted(len(sockets_of(pid) & set(listening)) for pid in workers) == [1, 1]
    opened = keep_alive_connections(server.url, 40)
    try:
        established = set(tcp_sockets(port, "01"))
        held = sorted(len(sockets_of(pid) & established) for pid in workers)
        assert sum(held) == 40 and held[0] >= 8, held
    finally:
        for conn in opened:
            conn.close()
    server.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: len(workers_of(server.proc.pid)) == 1, "one worker left")
    wait_for(lambda: len(tcp_sockets(port, "0A")) == 1, "its socket closed")
    for conn in keep_alive_connections(server.url, 20):
        conn.close()


def test_a_second_server_on_the_port_is_refused_and_workers_end_with_their_server(
    server: Server, ws: Path
) -> None:
    """The workers' sockets share the port among themselves only: another `cobro serve
    --workers` on it is refused, as any program would be. A server killed outright
    (SIGKILL: no chance to stop its workers) leaves no worker serving on alone."""
    port = server.url.rsplit(":", 1)[1]
    second = run_cobro(ws, "serve", "--port", port, "--workers", "2", ok=False)
    assert second.returncode == 2, second.stderr
    assert f"another program is listening on 127.0.0.1:{port}" in second.stderr
    workers = workers_of(server.proc.pid)
    assert len(workers) == 2
    server.proc.kill()
    server.proc.wait(timeout=DEADLINE_S)
    wait_for(lambda: not any(alive(pid) for pid in workers), "every worker gone")


def test_ctrl_c_at_the_terminal_while_workers_start_stops_all_without_a_traceback(
    ws: Path,
) -> None:
    """Ctrl-C at a terminal reaches every process of the group, workers still importing
    included: they leave it to the server, which stops them, and nothing prints a
    traceback."""
    proc = subprocess.Popen(
        [*COBRO, "--workspace", str(ws), "serve", "--port", str(free_port()), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "HOME": str(ws)},
        cwd=ws,
        start_new_session=True,  # a process group of its own, as a terminal's job
    )
    try:
        wait_for(lambda: len(workers_of(proc.pid)) == 2, "two workers starting")
        workers = workers_of(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _out, said = proc.communicate(timeout=DEADLINE_S)
        assert proc.returncode == 0, said
        assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
        wait_for(lambda: not any(alive(pid) for pid in workers), "every worker gone")
    finally:
        proc.kill()
        proc.wait()
