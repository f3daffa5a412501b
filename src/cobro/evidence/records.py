"""The operational tables checked against the evidence chain, record by record.

Every claim marked sent must have its ``claim.sent`` entry, with the same debtor, phase,
date and claimed items (receivable and balance at sending); every delivery row its
``delivery`` entry, with the same recipient, role, channel, status, attempt, instant and
message digest, and its kept message must still hash to that digest. Every entry's
record must still exist. Each difference names the table, the row, the field and the
debtor.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from cobro.domain.model import OutboxStatus
from cobro.domain.money import Money
from cobro.engine.webhooks import IS_WEBHOOK
from cobro.evidence.messages import unpack
from cobro.store import tables as t


@dataclass(frozen=True)
class RecordProblem:
    """A record that differs from, or is missing against, the evidence chain."""

    table: str
    id: int | None  # None: the row is gone
    field: str | None
    debtor: str
    seq: int | None  # the evidence entry concerned
    detail: str

    def __str__(self) -> str:
        row = f"{self.table} id {self.id}" if self.id is not None else self.table
        field = f" {self.field}" if self.field else ""
        entry = f" (evidence entry {self.seq})" if self.seq is not None else ""
        return f"{row}{field}, debtor {self.debtor}: {self.detail}{entry}"

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.id,
            "field": self.field,
            "debtor": self.debtor,
            "entry": self.seq,
            "problem": self.detail,
        }


@dataclass(frozen=True)
class _Entry:
    seq: int
    customer_id: int | None
    at: datetime
    payload: dict[str, Any]


KINDS = ("claim.sent", "delivery", "delivery.state", "claim.reopened")


def _entries(
    conn: Connection, company_id: int, customer_id: int | None
) -> Iterator[tuple[str, int, _Entry]]:
    """(kind, outbox id, entry) of every claim and delivery entry, oldest first."""
    e = t.evidence.c
    q = (
        select(e.seq, e.kind, e.ref, e.customer_id, e.at, e.payload)
        .where(e.company_id == company_id, e.kind.in_(KINDS))
        .order_by(e.seq)
    )
    if customer_id is not None:
        q = q.where(e.customer_id == customer_id)
    for row in conn.execution_options(yield_per=5000).execute(q):
        kind, _, ref = str(row.ref).partition(":")
        if kind != "outbox" or not ref.isdigit():
            continue
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = {}  # the chain check reports the entry itself
        yield row.kind, int(ref), _Entry(int(row.seq), row.customer_id, row.at, payload)


def debtor_names(
    conn: Connection, company_id: int, customer_id: int | None = None
) -> Callable[[int | None], str]:
    """Debtor id -> external id (``#id`` for one that is gone), for naming records."""
    cu = t.customers.c
    q = select(cu.id, cu.external_id).where(cu.company_id == company_id)
    if customer_id is not None:
        q = q.where(cu.id == customer_id)
    debtors = {int(r.id): str(r.external_id) for r in conn.execute(q)}

    def who(cid: int | None) -> str:
        return debtors.get(cid, f"#{cid}") if cid is not None else "?"

    return who


def check_records(
    conn: Connection, company_id: int, customer_id: int | None = None
) -> list[RecordProblem]:
    """Every difference between claims, claim items and deliveries and their evidence."""
    o, d = t.outbox.c, t.deliveries.c
    who = debtor_names(conn, company_id, customer_id)

    claims: dict[int, _Entry] = {}
    sent_to: dict[tuple[int, str, str], list[_Entry]] = defaultdict(list)
    later: dict[int, list[_Entry]] = defaultdict(list)  # delivery id -> its state entries
    for kind, outbox_id, entry in _entries(conn, company_id, customer_id):
        if kind == "claim.sent":
            claims[outbox_id] = entry
        elif kind == "claim.reopened":  # planned again (a failure after sending)
            claims.pop(outbox_id, None)
        elif kind == "delivery.state":
            if isinstance(entry.payload.get("delivery"), int):
                later[entry.payload["delivery"]].append(entry)
        else:
            key = (
                outbox_id,
                str(entry.payload.get("channel")),
                str(entry.payload.get("message_id")),
            )
            sent_to[key].append(entry)

    with_deliveries = select(d.outbox_id).where(d.company_id == company_id)
    oq = select(o.id, o.customer_id, o.step, o.occurrence_on, o.status).where(
        o.company_id == company_id,
        o.step.not_like(IS_WEBHOOK),  # webhook posts are not claims: no evidence of their own
        or_(o.status == OutboxStatus.SENT.value, o.id.in_(with_deliveries)),
    )
    if customer_id is not None:
        oq = oq.where(o.customer_id == customer_id)
    rows = {int(r.id): r for r in conn.execute(oq)}
    referenced = set(claims) | {k[0] for k in sent_to}
    missing_ids = [i for i in referenced if i not in rows]
    for chunk in (missing_ids[i : i + 5000] for i in range(0, len(missing_ids), 5000)):
        for r in conn.execute(
            select(o.id, o.customer_id, o.step, o.occurrence_on, o.status).where(
                o.company_id == company_id, o.id.in_(chunk)
            )
        ):
            rows[int(r.id)] = r

    problems: list[RecordProblem] = []
    problems += _check_claims(conn, company_id, claims, rows, who)
    problems += _check_deliveries(conn, company_id, customer_id, sent_to, later, rows, who)
    return problems


def _same_claim(row: Any, entry: _Entry) -> list[tuple[str, str]]:
    p = entry.payload
    diffs = []
    if row.customer_id != entry.customer_id:
        diffs.append(
            ("customer_id", f"is {row.customer_id}, the evidence says {entry.customer_id}")
        )
    if str(row.step) != str(p.get("step")):
        diffs.append(("step", f"is {row.step!r}, the evidence says {p.get('step')!r}"))
    if _iso(row.occurrence_on) != p.get("occurrence_on"):
        diffs.append(
            (
                "occurrence_on",
                f"is {_iso(row.occurrence_on)}, the evidence says {p.get('occurrence_on')}",
            )
        )
    return diffs


def _iso(value: date) -> str:
    return value.isoformat()


def _check_claims(
    conn: Connection,
    company_id: int,
    claims: dict[int, _Entry],
    rows: dict[int, Any],
    who: Any,
) -> list[RecordProblem]:
    problems: list[RecordProblem] = []
    for outbox_id, entry in claims.items():
        row = rows.get(outbox_id)
        if row is None:
            problems.append(
                RecordProblem(
                    "outbox",
                    None,
                    None,
                    who(entry.customer_id),
                    entry.seq,
                    f"claim {outbox_id} ({entry.payload.get('step')} of "
                    f"{entry.payload.get('occurrence_on')}) was sent but its row is missing",
                )
            )
            continue
        for field, detail in _same_claim(row, entry):
            problems.append(
                RecordProblem("outbox", outbox_id, field, who(entry.customer_id), entry.seq, detail)
            )
        if row.status != OutboxStatus.SENT.value:
            problems.append(
                RecordProblem(
                    "outbox",
                    outbox_id,
                    "status",
                    who(entry.customer_id),
                    entry.seq,
                    f"is {row.status!r}, the evidence says the claim was sent",
                )
            )
    for outbox_id, row in rows.items():
        if row.status == OutboxStatus.SENT.value and outbox_id not in claims:
            problems.append(
                RecordProblem(
                    "outbox",
                    outbox_id,
                    None,
                    who(row.customer_id),
                    None,
                    "is marked sent but the evidence has no record of sending it",
                )
            )
    # A claim whose row is gone lost its items with it: reported once, above.
    kept = {i: e for i, e in claims.items() if i in rows}
    problems += _check_items(conn, company_id, kept, who)
    return problems


def _check_items(
    conn: Connection, company_id: int, claims: dict[int, _Entry], who: Any
) -> list[RecordProblem]:
    """The claimed items (receivable, due date, balance at sending) of every sent claim."""
    ci, r = t.claim_items.c, t.receivables.c
    problems: list[RecordProblem] = []
    ids = list(claims)
    for chunk in (ids[i : i + 5000] for i in range(0, len(ids), 5000)):
        found: dict[int, list[Any]] = defaultdict(list)
        for item in conn.execute(
            select(ci.id, ci.outbox_id, ci.balance_minor, r.number, r.due_on, r.currency)
            .join(t.receivables, r.id == ci.receivable_id)
            .where(ci.company_id == company_id, ci.outbox_id.in_(chunk))
            .order_by(ci.id)
        ):
            found[int(item.outbox_id)].append(item)
        for outbox_id in chunk:
            entry = claims[outbox_id]
            debtor = who(entry.customer_id)
            rows = found.get(outbox_id, [])
            for claimed in entry.payload.get("items") or []:
                number = str(claimed.get("number"))
                match = next((x for x in rows if x.number == number), None)
                if match is None:
                    problems.append(
                        RecordProblem(
                            "claim_items",
                            None,
                            None,
                            debtor,
                            entry.seq,
                            f"receivable {number} ({claimed.get('balance')}) of claim "
                            f"{outbox_id} is missing",
                        )
                    )
                    continue
                rows.remove(match)
                balance = (
                    None
                    if match.balance_minor is None
                    else str(Money.from_minor(match.balance_minor, match.currency))
                )
                if balance != claimed.get("balance"):
                    problems.append(
                        RecordProblem(
                            "claim_items",
                            int(match.id),
                            "balance_minor",
                            debtor,
                            entry.seq,
                            f"receivable {number} of claim {outbox_id} is {balance}, "
                            f"the evidence says {claimed.get('balance')}",
                        )
                    )
                if _iso(match.due_on) != claimed.get("due_on"):
                    problems.append(
                        RecordProblem(
                            "receivables",
                            None,
                            "due_on",
                            debtor,
                            entry.seq,
                            f"receivable {number} of claim {outbox_id} is due "
                            f"{_iso(match.due_on)}, the evidence says {claimed.get('due_on')}",
                        )
                    )
            for extra in rows:  # items with a balance at sending are all in the evidence
                if extra.balance_minor:
                    problems.append(
                        RecordProblem(
                            "claim_items",
                            int(extra.id),
                            None,
                            debtor,
                            entry.seq,
                            f"receivable {extra.number} is in claim {outbox_id} "
                            "but not in the evidence of what it claimed",
                        )
                    )
    return problems


# delivery column -> evidence payload field
_DELIVERY_FIELDS = (
    ("recipient", "recipient"),
    ("recipient_role", "role"),
    ("status", "status"),
    ("message_id", "message_id"),
    ("body_sha256", "body_sha256"),
    ("attempt", "attempt"),
    ("message_sha256", "message_sha256"),
    ("state", "state"),
)


def _check_deliveries(
    conn: Connection,
    company_id: int,
    customer_id: int | None,
    sent_to: dict[tuple[int, str, str], list[_Entry]],
    later: dict[int, list[_Entry]],
    outbox_rows: dict[int, Any],
    who: Any,
) -> list[RecordProblem]:
    d = t.deliveries.c
    problems: list[RecordProblem] = []
    q = (
        select(
            d.id,
            d.outbox_id,
            d.attempt,
            d.channel,
            d.recipient,
            d.recipient_role,
            d.status,
            d.message_id,
            d.error,
            d.body_sha256,
            d.at,
            d.message_sha256,
            d.message_zlib,
            d.state,
        )
        .where(d.company_id == company_id)
        .order_by(d.id)
    )
    if customer_id is not None:
        q = q.where(
            d.outbox_id.in_(select(t.outbox.c.id).where(t.outbox.c.customer_id == customer_id))
        )
    for row in conn.execution_options(yield_per=2000).execute(q):
        outbox = outbox_rows.get(int(row.outbox_id))
        debtor = who(outbox.customer_id if outbox is not None else None)
        candidates = sent_to.get((int(row.outbox_id), str(row.channel), str(row.message_id)), [])
        entry = next((c for c in candidates if c.payload.get("attempt") == row.attempt), None)
        if entry is None:
            entry = next((c for c in candidates if "attempt" not in c.payload), None)
        if entry is None:
            problems.append(
                RecordProblem(
                    "deliveries",
                    int(row.id),
                    None,
                    debtor,
                    None,
                    f"{row.channel} to {row.recipient} (claim {row.outbox_id}, attempt "
                    f"{row.attempt}) has no evidence entry",
                )
            )
            continue
        candidates.remove(entry)
        p = dict(entry.payload)
        for change in later.get(int(row.id), ()):  # what followed, in chain order
            for key in ("status", "state", "error"):
                if key in change.payload:
                    p[key] = change.payload[key]
        for column, key in _DELIVERY_FIELDS:
            if key not in p and key in ("attempt", "message_sha256", "state"):
                continue  # entries written before these were recorded
            value, recorded = getattr(row, column), p.get(key)
            if column == "recipient":
                recorded = None if recorded is None else str(recorded)[:320]
            if value != recorded:
                problems.append(
                    RecordProblem(
                        "deliveries",
                        int(row.id),
                        column,
                        debtor,
                        entry.seq,
                        f"is {value!r}, the evidence says {recorded!r}",
                    )
                )
        error = None if row.error is None else str(row.error)[:300]
        if error != p.get("error"):
            problems.append(
                RecordProblem(
                    "deliveries",
                    int(row.id),
                    "error",
                    debtor,
                    entry.seq,
                    f"is {error!r}, the evidence says {p.get('error')!r}",
                )
            )
        if row.at != entry.at:
            problems.append(
                RecordProblem(
                    "deliveries",
                    int(row.id),
                    "at",
                    debtor,
                    entry.seq,
                    f"is {row.at.isoformat()}, the evidence says {entry.at.isoformat()}",
                )
            )
        if outbox is None or outbox.customer_id != entry.customer_id:
            problems.append(
                RecordProblem(
                    "deliveries",
                    int(row.id),
                    "outbox_id",
                    debtor,
                    entry.seq,
                    f"claim {row.outbox_id} is not the evidence's claim of debtor "
                    f"{who(entry.customer_id)}",
                )
            )
        if row.message_zlib is not None and (
            _digest(row.message_zlib) != (p.get("message_sha256") or row.message_sha256)
        ):
            problems.append(
                RecordProblem(
                    "deliveries",
                    int(row.id),
                    "message_zlib",
                    debtor,
                    entry.seq,
                    "the kept message is not the one sent (its SHA-256 differs)",
                )
            )
    for (outbox_id, channel, _mid), left in sent_to.items():
        for entry in left:
            problems.append(
                RecordProblem(
                    "deliveries",
                    None,
                    None,
                    who(entry.customer_id),
                    entry.seq,
                    f"{channel} to {entry.payload.get('recipient')} (claim {outbox_id}, "
                    f"attempt {entry.payload.get('attempt', '?')}, "
                    f"{entry.payload.get('status')}) is missing",
                )
            )
    return problems


def _digest(compressed: bytes) -> str | None:
    try:
        return hashlib.sha256(unpack(compressed)).hexdigest()
    except zlib.error:  # not a compressed message any more
        return None
