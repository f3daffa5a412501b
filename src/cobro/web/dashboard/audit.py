"""The audit log: who changed what from the dashboard, and when, newest first (a page of
100 at a time): configuration edits with each value before and after, banking contacts
assigned and removed, and what staff recorded on debtors' accounts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from cobro.engine.audit import PAGE, Entry, entries
from cobro.web.dashboard.session import PREFIX, StaffDep
from cobro.web.dashboard.view import render

router = APIRouter(prefix=PREFIX)
PATH = f"{PREFIX}/audit"
KINDS = ("config", "banking", "debtor")


def shown(value: Any) -> str | None:
    """A value of a change as the page writes it: text as it is, anything else as JSON
    (``true``, ``[20, "last"]``), none as None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _changes(entry: Entry) -> list[tuple[str, str | None, str | None]]:
    return [
        (str(c.get("path", "")), shown(c.get("old")), shown(c.get("new")))
        for c in entry.changes
        if isinstance(c, dict)
    ]


def _cursor(value: str | None) -> tuple[datetime, int] | None:
    """``<ISO instant>_<id>``: where the previous page ended; ignored when malformed."""
    if not value:
        return None
    at, _, id_ = value.rpartition("_")
    try:
        return datetime.fromisoformat(at), int(id_)
    except ValueError:
        return None


@router.get("/audit", name="dashboard_audit")
def audit(
    request: Request, who: StaffDep, kind: str | None = None, before: str | None = None
) -> Response:
    chosen = kind if kind in KINDS else None
    with who.state.reader.connect() as conn:
        found = entries(conn, who.company_id, before=_cursor(before), action=chosen, limit=PAGE)
    more = None
    if len(found) == PAGE:
        last = found[-1]
        query = {
            "before": f"{last.at.isoformat()}_{last.id}",
            **({"kind": chosen} if chosen else {}),
        }
        more = f"{PATH}?{urlencode(query)}"
    return render(
        who,
        request,
        "audit.j2",
        {
            "entries": [(e, _changes(e)) for e in found],
            "kinds": KINDS,
            "kind": chosen,
            "more": more,
            "path": PATH,
        },
        screen="audit",
    )
