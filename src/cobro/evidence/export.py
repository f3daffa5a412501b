"""``cobro evidence export``: one debtor's evidence pack as a JSON file, a PDF or a directory.

Before writing, the evidence is verified; when it holds and its last entries come after
the last signed checkpoint, the head is signed now, so that the pack's checkpoint covers
everything it shows. The JSON pack (``pack.py``) is one self-contained file a third party
can check without Cobro; the PDF (``pack_pdf.py``) is the same record as a document. The
directory form keeps the files of earlier releases: ``entries.json`` (every entry with
``prev_hash`` and ``hash``), ``messages/`` (each file's SHA-256 is the ``message_sha256``
of its delivery entry), ``history.json``, ``checkpoint.json`` and ``verify.json``, plus
``pack.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from cobro.config import CobroConfig
from cobro.evidence.checkpoint import checkpoint_head
from cobro.evidence.history import claim_history
from cobro.evidence.messages import SUFFIXES, KeptDelivery, message_as_sent
from cobro.evidence.pack import build_pack
from cobro.evidence.verify import VerifyReport, verify_evidence
from cobro.render.templates import TemplateSet

__all__ = ["ExportReport", "KeptDelivery", "export", "message_as_sent"]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    kind: str  # "json", "pdf" or "directory"
    entries: int  # the debtor's chain entries
    messages: int  # messages as sent in the pack
    verify: VerifyReport


def export(
    engine: Engine,
    config: CobroConfig,
    company_id: int,
    root: Path,
    customer_id: int,
    out: Path,
    now: datetime,
    *,
    templates: TemplateSet | None = None,
) -> ExportReport:
    """Write ``customer_id``'s pack to ``out``: a ``.json`` or ``.pdf`` file, else a
    directory (created; its files replaced)."""
    report = _verified(engine, config, company_id, root, customer_id, now)
    with engine.connect() as conn:
        pack = build_pack(conn, config, company_id, customer_id, report, now)
        suffix = out.suffix.lower()
        if suffix in (".json", ".pdf"):
            kind = suffix[1:]
            if kind == "json":
                _write_json(out, pack)
            else:
                from cobro.evidence.pack_pdf import pack_pdf

                out.write_bytes(pack_pdf(pack, config, templates=templates))
        else:
            kind = "directory"
            _write_directory(conn, config, company_id, pack, out)
    messages = sum(1 for c in pack["claims"] for d in c["deliveries"] if d["message"])
    return ExportReport(out, kind, len(pack["entries"]), messages, report)


def _verified(
    engine: Engine,
    config: CobroConfig,
    company_id: int,
    root: Path,
    customer_id: int,
    now: datetime,
) -> VerifyReport:
    """The verify report (records limited to the debtor), after signing the head when the
    evidence holds and its last entries are not yet covered by a checkpoint."""
    company = config.company.id
    with engine.connect() as conn:
        report = verify_evidence(conn, company_id, company, root, customer_id)
    covered = report.checkpoint.seq if report.checkpoint else 0
    signed = report.ok and report.last_seq > covered
    if signed and checkpoint_head(engine, company_id, company, root, now) is not None:
        with engine.connect() as conn:
            report = verify_evidence(conn, company_id, company, root, customer_id)
    return report


def _write_directory(
    conn: Any, config: CobroConfig, company_id: int, pack: dict[str, Any], directory: Path
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(
        directory / "entries.json",
        [{k: e[k] for k in ("seq", "canonical", "prev_hash", "hash")} for e in pack["entries"]],
    )
    claims = claim_history(conn, config, company_id, pack["debtor"]["external_id"])
    _write_json(directory / "history.json", [c.to_json() for c in claims])
    messages = directory / "messages"
    for claim in claims:
        for delivery in claim.deliveries:
            kept = message_as_sent(conn, company_id, delivery.id) if delivery.id else None
            if kept is None:
                continue
            messages.mkdir(exist_ok=True)
            name = f"{kept.id}-{kept.channel}{SUFFIXES.get(kept.channel, '.bin')}"
            (messages / name).write_bytes(kept.data)
    _write_json(directory / "checkpoint.json", pack["checkpoint"])
    _write_json(directory / "verify.json", pack["verify"])
    _write_json(directory / "pack.json", pack)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
