"""Tamper-evident history: every claim sent and every delivery, chained by SHA-256.

Entry ``n`` stores ``hash_n = sha256(hash_{n-1} + " " + debtor_n + " " + digest_n)``:
``digest_n`` is the SHA-256 of the entry's canonical text and ``debtor_n`` its
``customer_id`` in decimal (``-`` for none), all digests in lower-case hex. Changing,
removing or reordering any stored entry breaks every hash after it, which
``verify_chain`` reports. Hashing the entry's digest rather than its text lets a
debtor's evidence pack carry the links of other debtors' entries (their debtor number,
digest and hash, not their content), so that a third party can recompute the chain from
the debtor's first entry to a signed checkpoint, and see that no entry of the debtor's
was left out.

Chains written before that carry entries of the older form ``sha256(hash_{n-1} +
canonical_n)`` (form 1); they still verify, entry by entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from cobro.store import tables as t
from cobro.store.db import driver_error, lock_company

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


def digest(body: str) -> str:
    """The SHA-256 of an entry's canonical text, in hex."""
    return hashlib.sha256(body.encode()).hexdigest()


def chain_hash(prev: str, body: str, customer_id: int | None) -> str:
    """The hash of an entry of ``customer_id`` whose canonical text is ``body``, after
    ``prev``."""
    return link_hash(prev, customer_id, digest(body))


def link_hash(prev: str, customer_id: int | None, entry_digest: str) -> str:
    """The hash of an entry from the previous hash, its debtor and its digest alone."""
    debtor = "-" if customer_id is None else str(customer_id)
    return hashlib.sha256(f"{prev} {debtor} {entry_digest}".encode()).hexdigest()


def legacy_hash(prev: str, body: str) -> str:
    """Form 1, written before the digest form: the text itself after the previous hash."""
    return hashlib.sha256((prev + body).encode()).hexdigest()


def entry_form(prev: str, body: str, customer_id: int | None, stored: str) -> int | None:
    """2 when ``stored`` is the hash of ``body`` (an entry of ``customer_id``) after
    ``prev``, 1 when it is its older form, None when it is neither (the entry was
    changed)."""
    if chain_hash(prev, body, customer_id) == stored:
        return 2
    if legacy_hash(prev, body) == stored:
        return 1
    return None


# The chain's last entry (built once: appended to by every batch a dispatch records).
_HEAD = (
    select(t.evidence.c.seq, t.evidence.c.hash)
    .where(t.evidence.c.company_id == bindparam("company_id"))
    .order_by(t.evidence.c.seq.desc())
    .limit(1)
)


Head = tuple[int, str]  # the chain's last entry: its seq and hash ((0, GENESIS): none)

# ``lock_after``'s lock and read, as the driver runs them (PostgreSQL).
_LOCK_SQL = "SELECT id FROM companies WHERE id = %(company_id)s FOR NO KEY UPDATE"
_HEAD_SQL = (
    "SELECT seq, hash FROM evidence WHERE company_id = %(company_id)s ORDER BY seq DESC LIMIT 1"
)


def locked_head(conn: Connection, company_id: int) -> Head:
    """Serialise the company's writers of evidence (``lock_company``) until commit, then
    read the chain's last entry."""
    lock_company(conn, company_id)
    last = conn.execute(_HEAD, {"company_id": company_id}).first()
    return (int(last.seq), str(last.hash)) if last else (0, GENESIS)


def lock_after(
    conn: Connection, company_id: int, statement: str, params: dict[str, Any]
) -> tuple[list[Any], Head]:
    """PostgreSQL: the driver's ``statement`` (psycopg's ``%(name)s`` parameters, from
    ``params``), then ``locked_head``, in one round trip to the server (psycopg's pipeline):
    three statements, each run once the one before is done, so that the lock is taken after
    what ``statement`` locks, and the read, a statement of its own, sees every entry
    committed while the lock was awaited. Returns the rows ``statement`` returned and the
    chain's last entry, to ``append`` to (``head``)."""
    raw: Any = conn.connection.driver_connection
    try:
        with raw.pipeline():
            first = raw.execute(statement, params)
            raw.execute(_LOCK_SQL, {"company_id": company_id})
            head = raw.execute(_HEAD_SQL, {"company_id": company_id})
        rows, last = first.fetchall(), head.fetchone()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, exc, statement) from exc
    return rows, ((int(last[0]), str(last[1])) if last else (0, GENESIS))


def append(
    conn: Connection, company_id: int, entries: list[EvidenceEntry], head: Head | None = None
) -> None:
    """Append entries to the company's chain, serialised on the company row. ``head``: the
    chain's last entry as ``lock_after`` read it in this transaction, under the lock (else
    ``locked_head`` takes the lock and reads it)."""
    if not entries:
        return
    seq, prev = head if head is not None else locked_head(conn, company_id)
    rows = []
    for entry in entries:
        seq += 1
        body = canonical(seq, entry)
        h = chain_hash(prev, body, entry.customer_id)
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
    """Recompute every hash of the company's chain, streaming; the first entry that does
    not hold is named with its kind, what it is about and its debtor."""
    e = t.evidence.c
    prev = GENESIS
    n = 0
    result = conn.execution_options(yield_per=5000).execute(
        select(e.seq, e.kind, e.ref, e.at, e.payload, e.prev_hash, e.hash, e.customer_id)
        .where(e.company_id == company_id)
        .order_by(e.seq)
    )
    problem: tuple[int, Any, str] | None = None
    with result:
        for row in result:
            n += 1
            if row.seq != n:
                problem = (int(row.seq), None, f"entry {n} is missing")
                break
            if row.prev_hash != prev:
                problem = (n, row, _moved(conn, company_id, n, str(row.prev_hash)))
                break
            if not _holds(prev, n, row):
                problem = (n, row, "entry content does not match its hash (it was edited)")
                break
            prev = str(row.hash)
    if problem is None:
        return ChainReport(n, True, None, None, prev)
    seq, row, text = problem
    if row is not None:
        text = f"{text}; the entry is {row.kind} {row.ref}{_debtor(conn, row.customer_id)}"
    return ChainReport(n, False, seq, text, prev)


def _holds(prev: str, n: int, row: Any) -> bool:
    try:
        payload = json.loads(row.payload)
    except ValueError:
        return False
    entry = EvidenceEntry(row.kind, row.ref, row.customer_id, row.at, payload)
    return entry_form(prev, canonical(n, entry), row.customer_id, str(row.hash)) is not None


def _moved(conn: Connection, company_id: int, n: int, prev_hash: str) -> str:
    """Why entry ``n`` does not follow entry ``n - 1``: which entry it did follow."""
    e = t.evidence.c
    follows = conn.execute(
        select(e.seq).where(e.company_id == company_id, e.hash == prev_hash).limit(1)
    ).scalar()
    if follows is None:
        return "link to the previous entry is broken (the entry it followed is gone or changed)"
    return (
        f"link to the previous entry is broken: it followed entry {follows}, not entry "
        f"{n - 1} (entries were reordered)"
    )


def _debtor(conn: Connection, customer_id: int | None) -> str:
    if customer_id is None:
        return ""
    c = t.customers.c
    name = conn.execute(select(c.external_id).where(c.id == customer_id)).scalar()
    return f", debtor {name if name is not None else f'#{customer_id}'}"
