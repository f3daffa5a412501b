"""Tamper-evident history: every claim sent and every delivery, chained by SHA-256.

Entry ``n`` stores ``hash_n = sha256(hash_{n-1} || canonical(entry_n))``; changing,
removing or reordering any stored entry breaks every hash after it, which
``verify_chain`` reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from cobro.store import tables as t
from cobro.store.db import lock_company

GENESIS = "0" * 64


@dataclass(frozen=True)
class EvidenceEntry:
    kind: str  # "claim.sent", "delivery", ...
    ref: str  # what it is about, e.g. "outbox:42"
    customer_id: int | None
    at: datetime
    payload: dict[str, Any]


def canonical(seq: int, entry: EvidenceEntry) -> str:
    return json.dumps(
        {
            "seq": seq,
            "kind": entry.kind,
            "ref": entry.ref,
            "at": entry.at.astimezone(UTC).isoformat(),
            "customer_id": entry.customer_id,
            "payload": entry.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )


def chain_hash(prev: str, body: str) -> str:
    return hashlib.sha256((prev + body).encode()).hexdigest()


def append(conn: Connection, company_id: int, entries: list[EvidenceEntry]) -> None:
    """Append entries to the company's chain, serialised on the company row."""
    if not entries:
        return
    lock_company(conn, company_id)
    e = t.evidence.c
    last = conn.execute(
        select(e.seq, e.hash).where(e.company_id == company_id).order_by(e.seq.desc()).limit(1)
    ).first()
    seq, prev = (int(last.seq), str(last.hash)) if last else (0, GENESIS)
    rows = []
    for entry in entries:
        seq += 1
        body = canonical(seq, entry)
        h = chain_hash(prev, body)
        rows.append(
            {
                "company_id": company_id,
                "seq": seq,
                "kind": entry.kind,
                "customer_id": entry.customer_id,
                "ref": entry.ref,
                "at": entry.at,
                "payload": json.dumps(entry.payload, sort_keys=True, default=str),
                "prev_hash": prev,
                "hash": h,
            }
        )
        prev = h
    conn.execute(insert(t.evidence), rows)


@dataclass(frozen=True)
class ChainReport:
    entries: int
    ok: bool
    first_bad_seq: int | None
    problem: str | None
    head: str


def verify_chain(conn: Connection, company_id: int) -> ChainReport:
    """Recompute every hash of the company's chain, streaming."""
    e = t.evidence.c
    prev = GENESIS
    n = 0
    result = conn.execution_options(yield_per=5000).execute(
        select(e.seq, e.kind, e.ref, e.at, e.payload, e.prev_hash, e.hash, e.customer_id)
        .where(e.company_id == company_id)
        .order_by(e.seq)
    )
    for row in result:
        n += 1
        if row.seq != n:
            return ChainReport(n, False, int(row.seq), f"entry {n} is missing", prev)
        if row.prev_hash != prev:
            return ChainReport(n, False, n, "link to the previous entry is broken", prev)
        entry = EvidenceEntry(row.kind, row.ref, row.customer_id, row.at, json.loads(row.payload))
        h = chain_hash(prev, canonical(n, entry))
        if h != row.hash:
            return ChainReport(n, False, n, "entry content does not match its hash", prev)
        prev = h
    return ChainReport(n, True, None, None, prev)
