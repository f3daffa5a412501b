"""The debtors list: search by name, id, email or phone; filter by segment, policy, phase,
blocked and how long overdue; sort; a keyset page at a time (``cobro.engine.debtor_search``).

The route runs on the event loop. On SQLite a search whose cost does not grow with the
company (``debtor_search.bounded``) is read there too, on the reading engine's driver
connection (``EventLoopReads``); any other list, and every list on PostgreSQL, is read in
a worker thread so that the event loop never waits on it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cobro.domain.reports import BUCKETS
from cobro.engine.debtor_search import (
    SORTS,
    DebtorFilter,
    DebtorPage,
    bounded,
    search_debtors,
    search_debtors_sqlite,
)
from cobro.web.dashboard.session import PREFIX, StaffDep
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)


def _one_of(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/debtors", name="dashboard_debtors")
async def debtors(
    request: Request,
    who: StaffDep,
    q: str = "",
    segment: str | None = None,
    policy: str | None = None,
    phase: str | None = None,
    blocked: str | None = None,
    overdue: str | None = None,
    sort: str = "name",
    cursor: str | None = None,
) -> Response:
    config = who.state.ws.config
    segments = sorted(config.segments)
    policies = sorted(config.policies)
    phases = [(ph.step_id, f"{ph.policy} {ph.key} · {ph.name}") for ph in config.all_phases()]
    chosen = {
        "q": q[:200],
        "segment": _one_of(segment, segments),
        "policy": _one_of(policy, policies),
        "phase": _one_of(phase, [step for step, _ in phases]),
        "blocked": _one_of(blocked, ("yes", "no")),
        "overdue": _one_of(overdue, BUCKETS),
        "sort": _one_of(sort, SORTS) or "name",
    }
    wanted = DebtorFilter(
        text=chosen["q"] or "",
        segment=config.segment(chosen["segment"]) if chosen["segment"] else None,
        policy=chosen["policy"],
        phase=chosen["phase"],
        blocked=None if chosen["blocked"] is None else chosen["blocked"] == "yes",
        overdue=chosen["overdue"],
        sort=chosen["sort"],  # type: ignore[arg-type]
    )
    state = who.state
    currency, today = config.company.currency, state.today()
    page: DebtorPage | None = None
    if bounded(wanted):
        with state.loop_reads.connection(state.reader) as raw:
            if raw is not None:
                page = search_debtors_sqlite(raw, who.company_id, currency, today, wanted, cursor)

    def read() -> DebtorPage:
        with state.reader.connect() as conn:
            return search_debtors(conn, who.company_id, currency, today, wanted, cursor)

    if page is None:
        page = await run_in_threadpool(read)
    kept: dict[str, Any] = {k: v for k, v in chosen.items() if v}
    return render(
        who,
        request,
        "debtors.j2",
        {
            "page": page,
            "chosen": chosen,
            "segments": segments,
            "policies": policies,
            "phases": phases,
            "buckets": BUCKETS,
            "sorts": SORTS,
            "paged": cursor is not None,
            "next_url": (
                f"{PREFIX}/debtors?{urlencode({**kept, 'cursor': page.next_cursor})}"
                if page.next_cursor
                else None
            ),
            "first_url": f"{PREFIX}/debtors?{urlencode(kept)}",
        },
        screen="debtors",
    )
