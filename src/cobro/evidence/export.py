"""An evidence pack for one debtor: chain entries, messages as sent, checkpoint, report.

The pack is a directory a third party can check without Cobro: every entry carries its
``prev_hash`` and ``hash`` (``hash = sha256(prev_hash + canonical(entry))``), every
message file's SHA-256 is the ``message_sha256`` of its delivery entry, and the
checkpoint is signed with the Ed25519 public key it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from cobro.config import CobroConfig
from cobro.evidence.chain import EvidenceEntry, canonical
from cobro.evidence.history import claim_history
from cobro.evidence.messages import SUFFIXES, unpack
from cobro.evidence.verify import VerifyReport, verify_evidence
from cobro.store import tables as t


@dataclass(frozen=True)
class KeptDelivery:
    """A delivery's message as sent."""

    id: int
    outbox_id: int
    customer: str
    channel: str
    sha256: str | None
    data: bytes


def message_as_sent(conn: Connection, company_id: int, delivery_id: int) -> KeptDelivery | None:
    """The message a delivery row keeps, or None (no such delivery, or nothing kept)."""
    d, o, c = t.deliveries.c, t.outbox.c, t.customers.c
    row = conn.execute(
        select(d.id, d.outbox_id, d.channel, d.message_sha256, d.message_zlib, c.external_id)
        .join(t.outbox, o.id == d.outbox_id)
        .join(t.customers, c.id == o.customer_id)
        .where(d.company_id == company_id, d.id == delivery_id)
    ).first()
    if row is None or row.message_zlib is None:
        return None
    return KeptDelivery(
        int(row.id),
        int(row.outbox_id),
        str(row.external_id),
        str(row.channel),
        row.message_sha256,
        unpack(row.message_zlib),
    )


@dataclass(frozen=True)
class ExportReport:
    directory: Path
    entries: int
    messages: int
    verify: VerifyReport


def export_pack(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    root: Path,
    customer_id: int,
    customer: str,
    directory: Path,
) -> ExportReport:
    """Write ``customer``'s evidence pack into ``directory`` (created; files replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    e = t.evidence.c
    entries: list[dict[str, Any]] = []
    for row in conn.execute(
        select(e.seq, e.kind, e.ref, e.customer_id, e.at, e.payload, e.prev_hash, e.hash)
        .where(e.company_id == company_id, e.customer_id == customer_id)
        .order_by(e.seq)
    ):
        entry = EvidenceEntry(row.kind, row.ref, row.customer_id, row.at, json.loads(row.payload))
        entries.append(
            {
                "seq": int(row.seq),
                "canonical": canonical(int(row.seq), entry),
                "prev_hash": row.prev_hash,
                "hash": row.hash,
            }
        )
    _write_json(directory / "entries.json", entries)
    claims = claim_history(conn, config, company_id, customer)
    _write_json(directory / "history.json", [c.to_json() for c in claims])
    messages = directory / "messages"
    written = 0
    for claim in claims:
        for delivery in claim.deliveries:
            if delivery.id is None:
                continue
            kept = message_as_sent(conn, company_id, delivery.id)
            if kept is None:
                continue
            messages.mkdir(exist_ok=True)
            name = f"{kept.id}-{kept.channel}{SUFFIXES.get(kept.channel, '.bin')}"
            (messages / name).write_bytes(kept.data)
            written += 1
    report = verify_evidence(conn, company_id, config.company.id, root, customer_id)
    _write_json(
        directory / "checkpoint.json",
        report.checkpoint.to_json() if report.checkpoint else None,
    )
    _write_json(directory / "verify.json", report.to_json())
    return ExportReport(directory, len(entries), written, report)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
