"""The debtor's answers checked against the evidence chain: views, disputes, promises.

Every ``claim_views`` row (a claim's link opened, or its reading confirmed) must have its
``claim.opened``/``claim.read`` entry with the same debtor, claim, kind, instant, IP and
user agent; every dispute its ``dispute.opened`` entry (debtor, item, claim, source,
reason, attachment digest, instant, IP, user agent) and, once resolved, its
``dispute.resolved`` entry (status, instant, note); every promise its ``promise.made``
entry (debtor, claim, source, date promised, grace, items and balances, instant, IP, user
agent) and the status its last ``promise.*`` entry gives. Every entry's row must still
exist. Each difference names the table, the row, the field and the debtor.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from cobro.domain.money import Money
from cobro.evidence.records import RecordProblem
from cobro.store import tables as t

Who = Callable[[int | None], str]


@dataclass(frozen=True)
class _Entry:
    seq: int
    kind: str
    id: int  # the row the entry is about: view, dispute or promise
    customer_id: int | None
    ref: str
    at: datetime
    payload: dict[str, Any]


def _entries(conn: Connection, company_id: int, customer_id: int | None) -> list[_Entry]:
    """Every view, dispute and promise entry, oldest first."""
    e = t.evidence.c
    q = (
        select(e.seq, e.kind, e.ref, e.customer_id, e.at, e.payload)
        .where(
            e.company_id == company_id,
            or_(
                e.kind.in_(["claim.opened", "claim.read"]),
                e.kind.like("dispute.%"),
                e.kind.like("promise.%"),
            ),
        )
        .order_by(e.seq)
    )
    if customer_id is not None:
        q = q.where(e.customer_id == customer_id)
    found: list[_Entry] = []
    for row in conn.execute(q):
        try:
            payload = json.loads(row.payload)
        except ValueError:
            continue  # the chain check reports the entry itself
        if not isinstance(payload, dict):
            continue
        if row.kind.startswith("claim."):
            row_id = payload.get("view")
        else:
            prefix, _, ref = str(row.ref).partition(":")
            row_id = int(ref) if prefix == row.kind.partition(".")[0] and ref.isdigit() else None
        if not isinstance(row_id, int):
            continue
        found.append(
            _Entry(int(row.seq), row.kind, row_id, row.customer_id, row.ref, row.at, payload)
        )
    return found


def check_answers(
    conn: Connection, company_id: int, who: Who, customer_id: int | None = None
) -> list[RecordProblem]:
    """Every difference between views, disputes and promises and their evidence."""
    views: dict[int, _Entry] = {}
    disputes: dict[int, list[_Entry]] = defaultdict(list)
    promises: dict[int, list[_Entry]] = defaultdict(list)
    for entry in _entries(conn, company_id, customer_id):
        if entry.kind.startswith("claim."):
            views[entry.id] = entry
        elif entry.kind.startswith("dispute."):
            disputes[entry.id].append(entry)
        else:
            promises[entry.id].append(entry)
    return [
        *_check_views(conn, company_id, customer_id, views, who),
        *_check_disputes(conn, company_id, customer_id, disputes, who),
        *_check_promises(conn, company_id, customer_id, promises, who),
    ]


def _differences(
    table: str, row_id: int, debtor: str, seq: int, pairs: Iterable[tuple[str, Any, Any]]
) -> list[RecordProblem]:
    """A problem for each (field, value in the row, value in the evidence) that differ."""
    return [
        RecordProblem(
            table,
            row_id,
            field,
            debtor,
            seq,
            f"is {_show(value)}, the evidence says {_show(recorded)}",
        )
        for field, value, recorded in pairs
        if value != recorded
    ]


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


def _outbox(ref: str) -> int | None:
    kind, _, n = ref.partition(":")
    return int(n) if kind == "outbox" and n.isdigit() else None


def _check_views(
    conn: Connection,
    company_id: int,
    customer_id: int | None,
    entries: dict[int, _Entry],
    who: Who,
) -> list[RecordProblem]:
    v = t.claim_views.c
    q = select(t.claim_views).where(v.company_id == company_id).order_by(v.id)
    if customer_id is not None:
        q = q.where(v.customer_id == customer_id)
    problems: list[RecordProblem] = []
    for row in conn.execute(q):
        entry = entries.pop(int(row.id), None)
        if entry is None:
            problems.append(
                RecordProblem(
                    "claim_views",
                    int(row.id),
                    None,
                    who(row.customer_id),
                    None,
                    f"{row.kind} of claim {row.outbox_id} at {row.at.isoformat()} has no "
                    "evidence entry",
                )
            )
            continue
        p = entry.payload
        problems += _differences(
            "claim_views",
            int(row.id),
            who(entry.customer_id),
            entry.seq,
            [
                ("kind", row.kind, entry.kind.removeprefix("claim.")),
                ("customer_id", who(row.customer_id), who(entry.customer_id)),
                ("outbox_id", row.outbox_id, _outbox(entry.ref)),
                ("at", row.at, entry.at),
                ("ip", row.ip, p.get("ip")),
                ("user_agent", row.user_agent, p.get("user_agent")),
            ],
        )
    for view_id, entry in entries.items():
        what = "read" if entry.kind == "claim.read" else "opening"
        problems.append(
            RecordProblem(
                "claim_views",
                None,
                None,
                who(entry.customer_id),
                entry.seq,
                f"the {what} of claim {_outbox(entry.ref)} at {entry.at.isoformat()} "
                f"(view {view_id}, IP {entry.payload.get('ip')}) is missing",
            )
        )
    return problems


def _attachment_digest(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return hashlib.sha256(zlib.decompress(data)).hexdigest()
    except zlib.error:
        return "(not a kept attachment)"


def _check_disputes(
    conn: Connection,
    company_id: int,
    customer_id: int | None,
    entries: dict[int, list[_Entry]],
    who: Who,
) -> list[RecordProblem]:
    d, r = t.disputes.c, t.receivables.c
    q = (
        select(t.disputes, r.number)
        .outerjoin(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id)
        .order_by(d.id)
    )
    if customer_id is not None:
        q = q.where(d.customer_id == customer_id)
    problems: list[RecordProblem] = []
    for row in conn.execute(q):
        found = entries.pop(int(row.id), [])
        opened = next((x for x in found if x.kind == "dispute.opened"), None)
        if opened is None:
            problems.append(
                RecordProblem(
                    "disputes",
                    int(row.id),
                    None,
                    who(row.customer_id),
                    None,
                    f"the dispute of item {row.number} opened at {row.opened_at.isoformat()} "
                    "has no evidence entry",
                )
            )
            continue
        p = opened.payload
        debtor = who(opened.customer_id)
        problems += _differences(
            "disputes",
            int(row.id),
            debtor,
            opened.seq,
            [
                ("customer_id", who(row.customer_id), debtor),
                ("receivable_id", row.number, p.get("receivable")),
                ("outbox_id", row.outbox_id, p.get("claim")),
                ("source", row.source, p.get("source")),
                ("reason", row.reason, p.get("reason")),
                ("attachment_sha256", row.attachment_sha256, p.get("attachment_sha256")),
                (
                    "attachment_zlib",
                    _attachment_digest(row.attachment_zlib),
                    p.get("attachment_sha256"),
                ),
                ("opened_at", row.opened_at, opened.at),
                ("ip", row.ip, p.get("ip")),
                ("user_agent", row.user_agent, p.get("user_agent")),
            ],
        )
        resolved = [x for x in found if x.kind == "dispute.resolved"]
        last = resolved[-1] if resolved else None
        note = last.payload.get("note") if last else None
        problems += _differences(
            "disputes",
            int(row.id),
            debtor,
            (last or opened).seq,
            [
                ("status", row.status, last.payload.get("status") if last else "open"),
                ("resolved_at", row.resolved_at, last.at if last else None),
                ("resolution", row.resolution, str(note)[:2000] if note else None),
            ],
        )
    for dispute_id, left in entries.items():
        opened = next((x for x in left if x.kind == "dispute.opened"), left[0])
        problems.append(
            RecordProblem(
                "disputes",
                None,
                None,
                who(opened.customer_id),
                opened.seq,
                f"dispute {dispute_id} of item {opened.payload.get('receivable')} opened at "
                f"{opened.at.isoformat()} ({opened.payload.get('reason')!r}) is missing",
            )
        )
    return problems


def _check_promises(
    conn: Connection,
    company_id: int,
    customer_id: int | None,
    entries: dict[int, list[_Entry]],
    who: Who,
) -> list[RecordProblem]:
    p, pi, r = t.promises.c, t.promise_items.c, t.receivables.c
    q = select(t.promises).where(p.company_id == company_id).order_by(p.id)
    if customer_id is not None:
        q = q.where(p.customer_id == customer_id)
    rows = list(conn.execute(q))
    items: dict[int, list[Any]] = defaultdict(list)
    ids = [int(x.id) for x in rows]
    for chunk in (ids[i : i + 5000] for i in range(0, len(ids), 5000)):
        for item in conn.execute(
            select(pi.id, pi.promise_id, pi.balance_minor, r.number, r.currency)
            .outerjoin(t.receivables, r.id == pi.receivable_id)
            .where(pi.promise_id.in_(chunk))
            .order_by(pi.id)
        ):
            items[int(item.promise_id)].append(item)
    problems: list[RecordProblem] = []
    for row in rows:
        found = entries.pop(int(row.id), [])
        made = next((x for x in found if x.kind == "promise.made"), None)
        if made is None:
            problems.append(
                RecordProblem(
                    "promises",
                    int(row.id),
                    None,
                    who(row.customer_id),
                    None,
                    f"the promise to pay by {row.promised_on.isoformat()} made at "
                    f"{row.created_at.isoformat()} has no evidence entry",
                )
            )
            continue
        e = made.payload
        debtor = who(made.customer_id)
        later = [x for x in found if x.seq > made.seq and x.kind != "promise.made"]
        status = "open"
        if later:
            status = str(later[-1].payload.get("status") or later[-1].kind.partition(".")[2])
        problems += _differences(
            "promises",
            int(row.id),
            debtor,
            made.seq,
            [
                ("customer_id", who(row.customer_id), debtor),
                ("outbox_id", row.outbox_id, e.get("claim")),
                ("source", row.source, e.get("source")),
                ("promised_on", row.promised_on.isoformat(), e.get("promised_on")),
                ("grace_days", row.grace_days, e.get("grace_days")),
                ("created_at", row.created_at, made.at),
                ("ip", row.ip, e.get("ip")),
                ("user_agent", row.user_agent, e.get("user_agent")),
            ],
        )
        problems += _differences(
            "promises",
            int(row.id),
            debtor,
            (later[-1] if later else made).seq,
            [("status", row.status, status)],
        )
        problems += _check_promised_items(
            int(row.id), items.get(int(row.id), []), e.get("items"), debtor, made.seq
        )
    for promise_id, left in entries.items():
        made = next((x for x in left if x.kind == "promise.made"), left[0])
        problems.append(
            RecordProblem(
                "promises",
                None,
                None,
                who(made.customer_id),
                made.seq,
                f"promise {promise_id} to pay {', '.join(made.payload.get('items') or {})} by "
                f"{made.payload.get('promised_on')} made at {made.at.isoformat()} is missing",
            )
        )
    return problems


def _money(minor: Any, currency: str | None) -> str:
    if isinstance(minor, int) and currency:
        return str(Money.from_minor(minor, currency))
    return repr(minor)


def _check_promised_items(
    promise_id: int, rows: list[Any], promised: Any, debtor: str, seq: int
) -> list[RecordProblem]:
    """The items of a promise against the evidence's ``{number: balance_minor}``."""
    expected = dict(promised) if isinstance(promised, dict) else {}
    problems: list[RecordProblem] = []
    for item in rows:
        if item.number not in expected:
            problems.append(
                RecordProblem(
                    "promise_items",
                    int(item.id),
                    "receivable_id",
                    debtor,
                    seq,
                    f"item {item.number} is in promise {promise_id} but not in the evidence "
                    "of what was promised",
                )
            )
            continue
        balance = expected.pop(item.number)
        if item.balance_minor != balance:
            problems.append(
                RecordProblem(
                    "promise_items",
                    int(item.id),
                    "balance_minor",
                    debtor,
                    seq,
                    f"item {item.number} of promise {promise_id} is "
                    f"{_money(item.balance_minor, item.currency)}, the evidence says "
                    f"{_money(balance, item.currency)}",
                )
            )
    for number, balance in expected.items():
        problems.append(
            RecordProblem(
                "promise_items",
                None,
                None,
                debtor,
                seq,
                f"item {number} ({balance} minor units) of promise {promise_id} is missing",
            )
        )
    return problems
