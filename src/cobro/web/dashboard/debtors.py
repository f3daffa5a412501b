"""The debtors list: search by name, id, email or phone; filter by segment, policy, phase,
blocked and how long overdue; sort; a keyset page at a time (``cobro.engine.debtor_search``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from cobro.domain.reports import BUCKETS
from cobro.engine.debtor_search import SORTS, DebtorFilter, search_debtors
from cobro.web.dashboard.session import PREFIX, StaffDep
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)


def _one_of(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/debtors", name="dashboard_debtors")
def debtors(
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
    with state.reader.connect() as conn:
        page = search_debtors(
            conn, who.company_id, config.company.currency, state.today(), wanted, cursor
        )
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
