"""The simulation screen: what would go out on each of the next N days (at most 90), to
whom, on which channel, at what cost, as ``cobro simulate`` tells it
(``cobro.engine.simulate``: the daily planner itself, in a transaction rolled back; every
message assumed sent, no payment assumed to arrive; nothing changes).

A big company's 90 days take minutes and millions of messages, so a simulation runs in
the background of the server, one at a time per company, and the page keeps only counts:
per day and channel the messages, recipients and cost, per day the tasks and the phases.
Each day's messages are written, compressed in blocks, to a temporary file as they come,
and the detail of one day and channel is read back a page at a time when asked. The last
simulation of each company stays until another replaces it (or the server stops).

On SQLite the rolled-back transaction holds the database's write lock while it lasts, as
``cobro simulate`` does: runs, dispatchers and forms wait for it (up to the busy timeout).
Starting one needs a collector's role, as the API's simulation does.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from cobro.config import CobroConfig
from cobro.engine.simulate import SimulatedMessage, simulate
from cobro.errors import CobroError
from cobro.store import tables as t
from cobro.web.dashboard.helpers import cost_text, read
from cobro.web.dashboard.helpers import field as form_field
from cobro.web.dashboard.session import PREFIX, Refused, Staff, StaffDep, not_found, posted
from cobro.web.dashboard.view import render
from cobro.web.deps import WebState
from cobro.workspace import Workspace

router = APIRouter(prefix=PREFIX)
log = logging.getLogger("cobro.dashboard")

MAX_DAYS = 90
DEFAULT_DAYS = 30
PAGE = 50
BLOCK = 500  # messages per compressed block of the detail file (a multiple of PAGE)
# In the order the page shows them (``held``: held back by a frequency cap).
CHANNELS = ("email", "sms", "push", "voice", "none", "held", "task")


@dataclass
class ChannelTotals:
    messages: int = 0
    recipients: int = 0
    cost: Decimal = Decimal(0)


@dataclass
class DayTotals:
    """One simulated day: per channel (``none``: no channel reaches the debtor; ``held``:
    held back by a frequency cap; ``task``: staff tasks), and per phase."""

    day: date
    channels: dict[str, ChannelTotals] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return sum(c.messages for ch, c in self.channels.items() if ch not in ("task", "held"))

    @property
    def tasks(self) -> int:
        task = self.channels.get("task")
        return task.messages if task else 0

    @property
    def cost(self) -> Decimal:
        return sum((c.cost for c in self.channels.values()), Decimal(0))


class Detail:
    """Each (day, channel)'s messages in a temporary file, zlib-compressed in blocks of
    ``BLOCK``, sorted by debtor then phase; read back one page at a time."""

    def __init__(self) -> None:
        # Open while the simulation is the company's last; closed (and gone) by ``close``.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="cobro-simulation-")  # noqa: SIM115
        self._blocks: dict[tuple[date, str], list[tuple[int, int]]] = {}
        self._counts: dict[tuple[date, str], int] = {}
        self._lock = threading.Lock()

    def put(self, day: date, channel: str, rows: list[list[Any]]) -> None:
        with self._lock:
            self._file.seek(0, 2)
            blocks = []
            for at in range(0, len(rows), BLOCK):
                data = zlib.compress(json.dumps(rows[at : at + BLOCK]).encode(), 6)
                blocks.append((self._file.tell(), len(data)))
                self._file.write(data)
            self._blocks[(day, channel)] = blocks
            self._counts[(day, channel)] = len(rows)

    def count(self, day: date, channel: str) -> int:
        return self._counts.get((day, channel), 0)

    def page(self, day: date, channel: str, start: int) -> list[list[Any]]:
        """The ``PAGE`` messages from ``start`` (a multiple of ``PAGE``)."""
        with self._lock:
            blocks = self._blocks.get((day, channel), [])
            index = start // BLOCK
            if self._file.closed or start < 0 or start % PAGE or index >= len(blocks):
                return []
            offset, length = blocks[index]
            self._file.seek(offset)
            rows: list[list[Any]] = json.loads(zlib.decompress(self._file.read(length)))
        within = start - index * BLOCK
        return rows[within : within + PAGE]

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class SimulationJob:
    company_id: int
    start: date
    days: int
    by: str  # the user who started it
    began_at: datetime
    config: CobroConfig  # the configuration simulated (a newer one makes it stale)
    detail: Detail = field(default_factory=Detail)
    totals: list[DayTotals] = field(default_factory=list)
    status: str = "running"  # running, done, failed
    error: str | None = None
    finished_at: datetime | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def last(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    def add(self, day: date, found: list[SimulatedMessage]) -> None:
        totals = DayTotals(day)
        by_channel: dict[str, list[list[Any]]] = {}
        phases: Counter[str] = Counter()
        for m in sorted(found, key=lambda m: (m.customer, m.step)):
            ch = totals.channels.setdefault(m.channel, ChannelTotals())
            ch.messages += 1
            ch.recipients += m.recipients
            ch.cost += m.cost
            if m.channel != "task":
                phases[m.step] += 1
            by_channel.setdefault(m.channel, []).append(
                [
                    m.customer,
                    m.step,
                    m.phase_name,
                    m.recipients,
                    m.items,
                    {k: str(v) for k, v in m.totals.items()},
                    str(m.cost),
                ]
            )
        totals.phases = dict(sorted(phases.items()))
        for channel, rows in by_channel.items():
            self.detail.put(day, channel, rows)
        self.totals.append(totals)

    def finish(self, error: str | None, at: datetime) -> None:
        self.status = "failed" if error else "done"
        self.error = error
        self.finished_at = at
        self.finished.set()


class Simulations:
    """The server's simulations, the last one per company."""

    def __init__(self) -> None:
        self._jobs: dict[int, SimulationJob] = {}
        self._lock = threading.Lock()

    def current(self, company_id: int) -> SimulationJob | None:
        with self._lock:
            return self._jobs.get(company_id)

    def start(self, state: WebState, by: str, first: date, days: int) -> SimulationJob:
        """A new simulation of ``days`` days from ``first``, started in the background;
        ``Refused`` while the company's last one is still running."""
        ws = state.ws
        with self._lock:
            before = self._jobs.get(ws.company_id)
            if before is not None and before.status == "running":
                raise Refused(409, "simulation_running")
            job = SimulationJob(ws.company_id, first, days, by, state.now(), ws.config)
            self._jobs[ws.company_id] = job
        if before is not None:
            before.detail.close()
        threading.Thread(
            target=_run, args=(job, ws, state), name=f"simulation-{ws.company_id}", daemon=True
        ).start()
        return job

    def wait(self, company_id: int, timeout: float) -> bool:
        """Whether the company's simulation has finished within ``timeout`` seconds."""
        job = self.current(company_id)
        return job is None or job.finished.wait(timeout)


def _run(job: SimulationJob, ws: Workspace, state: WebState) -> None:
    error: str | None = None
    try:
        with ws.engine.connect() as conn:
            trans = conn.begin()
            try:
                for i, found in enumerate(
                    simulate(conn, job.config, ws.company_id, job.start, job.last)
                ):
                    job.add(job.start + timedelta(days=i), found)
            finally:
                trans.rollback()
    except CobroError as exc:
        error = str(exc)
    except Exception as exc:  # a fault of Cobro's or the database's: logged, and said
        log.exception("simulation of company %s failed", ws.company_id)
        error = type(exc).__name__
    job.finish(error, state.now())


def simulations(request: Request) -> Simulations:
    found: Simulations = request.app.state.dashboard_simulations
    return found


def _view(who: Staff, job: SimulationJob | None) -> dict[str, Any]:
    if job is None:
        return {"job": None}
    config = who.state.ws.config
    currency = config.company.currency

    def cost(value: Decimal) -> str:
        return cost_text(value, currency, who.locale)

    found = list(job.totals)
    days: list[dict[str, Any]] = [
        {
            "day": d.day,
            "channels": {ch: d.channels.get(ch, ChannelTotals()) for ch in CHANNELS},
            "messages": d.messages,
            "tasks": d.tasks,
            "cost": cost(d.cost),
            "costs": {ch: cost(c.cost) for ch, c in d.channels.items()},
        }
        for d in found
    ]
    totals = {
        ch: sum(d.channels[ch].messages for d in found if ch in d.channels) for ch in CHANNELS
    }
    return {
        "job": job,
        "days": days,
        "totals": totals,
        "total_messages": sum(d["messages"] for d in days),
        "total_cost": cost(sum((d.cost for d in found), Decimal(0))),
        "stale": job.config is not config,
        "done_days": len(days),
    }


@router.get("/simulation", name="dashboard_simulation")
def simulation(request: Request, who: StaffDep) -> Response:
    job = simulations(request).current(who.company_id)
    return render(
        who,
        request,
        "simulation.j2",
        {
            **_view(who, job),
            "max_days": MAX_DAYS,
            "default_days": job.days if job else DEFAULT_DAYS,
            "today": who.state.today(),
        },
        screen="simulation",
    )


@router.post("/simulation", name="dashboard_simulation_start")
async def start(request: Request, who: StaffDep) -> Response:
    """Simulate the next N days (today first), in the background."""
    form = await posted(request, who, "collector")
    try:
        days = int(form_field(form, "days"))
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise Refused(422, "err_days", days=str(MAX_DAYS))
    state = who.state
    simulations(request).start(state, who.session.user.email, state.today(), days)
    return RedirectResponse(f"{PREFIX}/simulation", status_code=303)


@router.get("/simulation/{day}", name="dashboard_simulation_day")
def simulation_day(
    request: Request, day: str, who: StaffDep, channel: str | None = None, at: str = "0"
) -> Response:
    """What one simulated day sends on one channel, a page at a time (``at``: the first
    message of the page, a multiple of ``PAGE``)."""
    start = int(at) if at.isdigit() and len(at) < 10 else 0
    job = simulations(request).current(who.company_id)
    try:
        on = date.fromisoformat(day)
    except ValueError:
        raise not_found() from None
    done = {d.day: d for d in list(job.totals)} if job else {}
    if job is None or on not in done:
        raise not_found()
    totals = done[on]
    present = [ch for ch in CHANNELS if ch in totals.channels]
    chosen = channel if channel in present else (present[0] if present else None)
    rows: list[list[Any]] = []
    count = 0
    if chosen is not None:
        count = job.detail.count(on, chosen)
        start = max(0, start - start % PAGE)
        rows = job.detail.page(on, chosen, start)
    customers = {row[0] for row in rows}

    def names(conn: Any) -> dict[str, tuple[int, str]]:
        c = t.customers.c
        return {
            str(r.external_id): (int(r.id), str(r.name))
            for r in conn.execute(
                select(c.id, c.external_id, c.name).where(
                    c.company_id == who.company_id, c.external_id.in_(sorted(customers))
                )
            )
        }

    found = read(who, names) if customers else {}
    currency = who.state.ws.config.company.currency
    shown = [
        {
            "customer": row[0],
            "debtor": found.get(row[0]),
            "step": row[1],
            "name": row[2],
            "recipients": row[3],
            "items": row[4],
            "totals": [(cur, Decimal(v)) for cur, v in row[5].items()],
            "cost": cost_text(Decimal(row[6]), currency, who.locale),
        }
        for row in rows
    ]
    base = f"{PREFIX}/simulation/{on.isoformat()}?channel={chosen}"
    return render(
        who,
        request,
        "simulation_day.j2",
        {
            "job": job,
            "day": on,
            "totals": totals,
            "present": present,
            "channel": chosen,
            "rows": shown,
            "count": count,
            "start": start,
            "cost": cost_text(totals.cost, currency, who.locale),
            "prev_url": f"{base}&at={start - PAGE}" if start > 0 else None,
            "next_url": f"{base}&at={start + PAGE}" if start + PAGE < count else None,
            "money_of": _money_of,
        },
        screen="simulation",
    )


def _money_of(currency: str, amount: Decimal) -> Any:
    from cobro.domain.money import Money

    return Money.of(amount, currency)
