"""One debtor's evidence pack as one JSON document a third party can check without Cobro.

It holds the debtor; the debtor's chain entries (number, canonical text, previous hash,
hash) and, for every other entry from the debtor's first one to the end of the pack
(the signed checkpoint, or the debtor's last entry if later), its digest and hash but
not its content, so that the chain can be recomputed link by link; the claims with
their messages exactly as sent (text, base64 of the bytes, SHA-256); deliveries, opened
links and confirmed reads (IP and user agent), disputes, promises and payments; the
newest checkpoint that holds, with its public key and signature; and the verify report.
``docs/evidence.md`` describes the format and how to check it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from cobro.config import CobroConfig
from cobro.domain.money import Money
from cobro.evidence.chain import EvidenceEntry, canonical, digest, entry_form
from cobro.evidence.history import claim_history
from cobro.evidence.messages import MEDIA_TYPES, message_as_sent
from cobro.evidence.verify import VerifyReport
from cobro.store import tables as t

FORMAT = "cobro-evidence-pack/1"


def build_pack(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    customer_id: int,
    report: VerifyReport,
    generated_at: datetime,
) -> dict[str, Any]:
    """``customer_id``'s evidence pack; ``report`` is the verify report limited to them."""
    tz = ZoneInfo(config.company.timezone)
    debtor = _debtor(conn, customer_id)
    entries, links = _chain(conn, company_id, customer_id, report)
    seqs = _entry_index(entries)
    claims = _claims(conn, config, company_id, debtor["external_id"], seqs)
    views = _views(conn, company_id, customer_id, seqs)
    instants = [datetime.fromisoformat(json.loads(e["canonical"])["at"]) for e in entries]
    period = (
        {
            "from": min(instants).astimezone(tz).date().isoformat(),
            "to": max(instants).astimezone(tz).date().isoformat(),
        }
        if instants
        else None
    )
    return {
        "format": FORMAT,
        "generated_at": generated_at.isoformat(),
        "company": {
            "id": config.company.id,
            "name": config.company.name,
            "timezone": config.company.timezone,
        },
        "debtor": debtor,
        "period": period,
        "chain": {
            "entries": report.last_seq,
            "head": report.chain.head,
            "hash": 'hash = sha256(prev_hash + " " + debtor + " " + sha256(canonical)), '
            'lower-case hex, debtor the entry\'s customer_id in decimal or "-" (form 2); '
            "form 1: sha256(prev_hash + canonical)",
        },
        "entries": entries,
        "links": links,
        "claims": claims,
        "opens": [v for v in views if v["kind"] == "opened"],
        "reads": [v for v in views if v["kind"] == "read"],
        "disputes": _disputes(conn, company_id, customer_id, seqs),
        "promises": _promises(conn, company_id, customer_id, seqs),
        "payments": _payments(conn, company_id, customer_id),
        "checkpoint": report.checkpoint.to_json() if report.checkpoint else None,
        "verify": report.to_json(),
    }


def _debtor(conn: Connection, customer_id: int) -> dict[str, Any]:
    c = t.customers.c
    row = conn.execute(
        select(c.external_id, c.name, c.kind, c.email, c.phone, c.language).where(
            c.id == customer_id
        )
    ).one()
    return {
        "id": customer_id,  # the ``customer_id`` of the debtor's entries
        "external_id": row.external_id,
        "name": row.name,
        "kind": row.kind,
        "email": row.email,
        "phone": row.phone,
        "language": row.language,
    }


def _chain(
    conn: Connection, company_id: int, customer_id: int, report: VerifyReport
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The debtor's entries in full, and the digest and hash of every other entry from the
    debtor's first entry to the end of the pack."""
    e = t.evidence.c
    first = conn.execute(
        select(e.seq)
        .where(e.company_id == company_id, e.customer_id == customer_id)
        .order_by(e.seq)
        .limit(1)
    ).scalar()
    if first is None:
        return [], []
    last = conn.execute(
        select(e.seq)
        .where(e.company_id == company_id, e.customer_id == customer_id)
        .order_by(e.seq.desc())
        .limit(1)
    ).scalar_one()
    end = max(int(last), report.checkpoint.seq if report.checkpoint else 0)
    entries: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for row in conn.execution_options(yield_per=5000).execute(
        select(e.seq, e.kind, e.ref, e.customer_id, e.at, e.payload, e.prev_hash, e.hash)
        .where(e.company_id == company_id, e.seq >= first, e.seq <= end)
        .order_by(e.seq)
    ):
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = row.payload  # does not hold: verify says so; shown as stored
        body = canonical(
            int(row.seq), EvidenceEntry(row.kind, row.ref, row.customer_id, row.at, payload)
        )
        form = entry_form(str(row.prev_hash), body, row.customer_id, str(row.hash)) or 2
        if row.customer_id == customer_id:
            entries.append(
                {
                    "seq": int(row.seq),
                    "form": form,
                    "canonical": body,
                    "prev_hash": row.prev_hash,
                    "hash": row.hash,
                }
            )
        elif form == 2:
            links.append(
                {
                    "seq": int(row.seq),
                    "debtor": row.customer_id,
                    "digest": digest(body),
                    "hash": row.hash,
                }
            )
        else:  # an older entry: its hash covers its text, which is not the debtor's to see
            links.append({"seq": int(row.seq), "form": 1, "hash": row.hash})
    return entries, links


def _entry_index(entries: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(kind, ref) -> the canonical entries (decoded), for pointing records at entries."""
    index: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        body = json.loads(e["canonical"])
        index[(str(body["kind"]), str(body["ref"]))].append(body)
    return index


Index = dict[tuple[str, str], list[dict[str, Any]]]


def _claims(
    conn: Connection, config: CobroConfig, company_id: int, customer: str, seqs: Index
) -> list[dict[str, Any]]:
    """Every claim sent or attempted, with its deliveries and their messages as sent."""
    found = []
    for claim in claim_history(conn, config, company_id, customer):
        ref = f"outbox:{claim.outbox_id}"
        sent = seqs.get(("claim.sent", ref), [])
        if not sent and not claim.deliveries:
            continue  # planned or cancelled: nothing was claimed
        data = claim.to_json()
        data["entry"] = sent[0]["seq"] if sent else None
        recorded = seqs.get(("delivery", ref), [])
        for delivery, shown in zip(claim.deliveries, data["deliveries"], strict=True):
            match = next((e for e in recorded if e["at"] == _utc(delivery.at)), None)
            shown["entry"] = match["seq"] if match else None
            shown["message"] = (
                _message(conn, company_id, delivery.id) if delivery.id is not None else None
            )
        found.append(data)
    return found


def _utc(at: datetime) -> str:
    """An instant as the canonical text of an entry writes it."""
    return at.astimezone(UTC).isoformat()


def _message(conn: Connection, company_id: int, delivery_id: int) -> dict[str, Any] | None:
    kept = message_as_sent(conn, company_id, delivery_id)
    if kept is None:
        return None
    return {
        "media_type": MEDIA_TYPES.get(kept.channel, "application/octet-stream"),
        "text": kept.data.decode("utf-8", "replace"),
        "base64": base64.b64encode(kept.data).decode("ascii"),
        "sha256": hashlib.sha256(kept.data).hexdigest(),
        "recorded_sha256": kept.sha256,
    }


def _seq(seqs: Index, kind: str, ref: str, key: str | None = None, value: Any = None) -> Any:
    for body in seqs.get((kind, ref), []):
        if key is None or body["payload"].get(key) == value:
            return body["seq"]
    return None


def _views(
    conn: Connection, company_id: int, customer_id: int, seqs: Index
) -> list[dict[str, Any]]:
    v = t.claim_views.c
    return [
        {
            "id": int(row.id),
            "kind": row.kind,
            "claim": int(row.outbox_id),
            "at": row.at.isoformat(),
            "ip": row.ip,
            "user_agent": row.user_agent,
            "entry": _seq(seqs, f"claim.{row.kind}", f"outbox:{row.outbox_id}", "view", row.id),
        }
        for row in conn.execute(
            select(t.claim_views)
            .where(v.company_id == company_id, v.customer_id == customer_id)
            .order_by(v.at, v.id)
        )
    ]


def _disputes(
    conn: Connection, company_id: int, customer_id: int, seqs: Index
) -> list[dict[str, Any]]:
    d, r = t.disputes.c, t.receivables.c
    found = []
    for row in conn.execute(
        select(t.disputes, r.number)
        .join(t.receivables, r.id == d.receivable_id)
        .where(d.company_id == company_id, d.customer_id == customer_id)
        .order_by(d.opened_at, d.id)
    ):
        ref = f"dispute:{row.id}"
        attachment = None
        if row.attachment_zlib is not None:
            try:
                data = zlib.decompress(row.attachment_zlib)
            except zlib.error:
                data = b""
            attachment = {
                "name": row.attachment_name,
                "media_type": row.attachment_type,
                "sha256": row.attachment_sha256,
                "base64": base64.b64encode(data).decode("ascii"),
            }
        found.append(
            {
                "id": int(row.id),
                "item": row.number,
                "claim": row.outbox_id,
                "source": row.source,
                "reason": row.reason,
                "attachment": attachment,
                "opened_at": row.opened_at.isoformat(),
                "ip": row.ip,
                "user_agent": row.user_agent,
                "status": row.status,
                "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
                "resolution": row.resolution,
                "entry": _seq(seqs, "dispute.opened", ref),
                "resolved_entry": _seq(seqs, "dispute.resolved", ref),
            }
        )
    return found


def _promises(
    conn: Connection, company_id: int, customer_id: int, seqs: Index
) -> list[dict[str, Any]]:
    p, pi, r = t.promises.c, t.promise_items.c, t.receivables.c
    rows = list(
        conn.execute(
            select(t.promises)
            .where(p.company_id == company_id, p.customer_id == customer_id)
            .order_by(p.created_at, p.id)
        )
    )
    items: dict[int, list[dict[str, str]]] = defaultdict(list)
    if rows:
        for item in conn.execute(
            select(pi.promise_id, pi.balance_minor, r.number, r.currency)
            .join(t.receivables, r.id == pi.receivable_id)
            .where(pi.promise_id.in_([x.id for x in rows]))
            .order_by(r.due_on, r.id)
        ):
            items[int(item.promise_id)].append(
                {
                    "number": item.number,
                    "currency": item.currency,
                    "balance": str(Money.from_minor(item.balance_minor, item.currency).amount),
                }
            )
    found = []
    for row in rows:
        ref = f"promise:{row.id}"
        settled = [
            body["seq"]
            for (kind, at_ref), bodies in seqs.items()
            if at_ref == ref and kind != "promise.made"
            for body in bodies
        ]
        found.append(
            {
                "id": int(row.id),
                "promised_on": row.promised_on.isoformat(),
                "grace_days": row.grace_days,
                "items": items.get(int(row.id), []),
                "claim": row.outbox_id,
                "source": row.source,
                "note": row.note,
                "made_at": row.created_at.isoformat(),
                "ip": row.ip,
                "user_agent": row.user_agent,
                "status": row.status,
                "settled_at": row.settled_at.isoformat() if row.settled_at else None,
                "entry": _seq(seqs, "promise.made", ref),
                "status_entries": sorted(settled),
            }
        )
    return found


def _payments(conn: Connection, company_id: int, customer_id: int) -> list[dict[str, Any]]:
    """The debtor's payments as imported (live data: not in the chain)."""
    pay, r = t.payments.c, t.receivables.c
    undone = t.payments.alias("undone")
    return [
        {
            "external_id": row.external_id,
            "paid_on": row.paid_on.isoformat(),
            "currency": row.currency,
            "amount": str(Money.from_minor(row.amount_minor, row.currency).amount),
            "item": row.number,
            "reverses": row.reverses,
        }
        for row in conn.execute(
            select(pay.external_id, pay.paid_on, pay.currency, pay.amount_minor, r.number)
            .add_columns(undone.c.external_id.label("reverses"))
            .outerjoin(t.receivables, r.id == pay.receivable_id)
            .outerjoin(undone, undone.c.id == pay.reverses_id)
            .where(pay.company_id == company_id, pay.customer_id == customer_id)
            .order_by(pay.paid_on, pay.id)
        )
    ]
