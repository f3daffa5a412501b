"""``cobro evidence verify``: the chain, its signed checkpoints and the records it covers
(claims, claimed items, deliveries, views, disputes and promises)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from cobro.evidence.answers import check_answers
from cobro.evidence.chain import ChainReport, verify_chain
from cobro.evidence.checkpoint import (
    CHECKPOINT_FILE,
    KEY_ENV,
    KEY_FILE,
    Checkpoint,
    evidence_key,
    public_hex,
    stored_checkpoints,
)
from cobro.evidence.records import RecordProblem, check_records, debtor_names
from cobro.store import tables as t


@dataclass
class VerifyReport:
    chain: ChainReport
    last_seq: int  # the highest entry number stored
    checkpoint: Checkpoint | None  # the newest checkpoint that holds
    checkpoints: int
    problems: list[str] = field(default_factory=list)  # the chain and its checkpoints
    records: list[RecordProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems and not self.records

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.last_seq,
            "head": self.chain.head,
            "chain": {
                "ok": self.chain.ok,
                "first_bad_entry": self.chain.first_bad_seq,
                "problem": self.chain.problem,
            },
            "checkpoints": self.checkpoints,
            "last_checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
            "problems": self.problems,
            "records": [p.to_json() for p in self.records],
            "warnings": self.warnings,
        }


def verify_evidence(
    conn: Connection,
    company_id: int,
    company: str,
    root: Path,
    customer_id: int | None = None,
) -> VerifyReport:
    """Everything ``evidence verify`` checks; ``customer_id`` limits the record checks to one
    debtor (the chain and checkpoints are always checked whole)."""
    chain = verify_chain(conn, company_id)
    e = t.evidence.c
    last_seq = int(
        conn.execute(
            select(func.coalesce(func.max(e.seq), 0)).where(e.company_id == company_id)
        ).scalar_one()
    )
    report = VerifyReport(chain, last_seq, None, 0)
    if not chain.ok:
        report.problems.append(f"entry {chain.first_bad_seq}: {chain.problem}")
    _check_checkpoints(conn, company_id, company, root, report)
    report.records = check_records(conn, company_id, customer_id)
    who = debtor_names(conn, company_id, customer_id)
    report.records += check_answers(conn, company_id, who, customer_id)
    return report


def _check_checkpoints(
    conn: Connection, company_id: int, company: str, root: Path, report: VerifyReport
) -> None:
    stored = stored_checkpoints(conn, company_id, company, root)
    report.problems.extend(stored.unreadable)
    file_name = str(CHECKPOINT_FILE)
    in_db = {c.seq: c for c in stored.in_database}
    in_file: dict[int, Checkpoint] = {}
    for c in stored.in_file:
        in_file.setdefault(c.seq, c)
    report.checkpoints = len(set(in_db) | set(in_file))
    key = evidence_key(root, create=False)
    if key is None:
        if report.checkpoints:
            report.problems.append(
                f"no evidence key ({KEY_ENV} or {KEY_FILE}): "
                "the checkpoints' signatures cannot be checked"
            )
        elif report.last_seq:
            report.warnings.append(
                "the chain has no signed checkpoint yet: removed last entries cannot be detected"
            )
        return
    public = public_hex(key)
    e = t.evidence.c
    seqs = sorted(set(in_db) | set(in_file))
    stored_hash: dict[int, str] = {}
    for chunk in (seqs[i : i + 5000] for i in range(0, len(seqs), 5000)):
        stored_hash.update(
            (int(r.seq), str(r.hash))
            for r in conn.execute(
                select(e.seq, e.hash).where(e.company_id == company_id, e.seq.in_(chunk))
            )
        )
    for seq in seqs:
        copies = [("database", in_db.get(seq)), (file_name, in_file.get(seq))]
        holds = True
        for where, point in copies:
            if point is not None and not point.signed_by(public):
                holds = False
                report.problems.append(
                    f"checkpoint of entry {seq} in the {where}: its signature is not the "
                    "evidence key's (altered or forged)"
                )
        db_point, file_point = in_db.get(seq), in_file.get(seq)
        if db_point is None:
            report.problems.append(
                f"checkpoint of entry {seq} ({file_point.at.isoformat() if file_point else '?'}) "
                f"is in {file_name} but missing from the database"
            )
        elif file_point is None:
            report.warnings.append(
                f"checkpoint of entry {seq} is in the database but not in {file_name}"
            )
        elif (db_point.head, db_point.at) != (file_point.head, file_point.at):
            report.problems.append(
                f"checkpoint of entry {seq} differs between the database and {file_name}"
            )
        point = file_point or db_point
        assert point is not None
        if seq > report.last_seq:
            holds = False
            report.problems.append(
                f"the chain ends at entry {report.last_seq}, but the checkpoint signed at "
                f"{point.at.isoformat()} covers {seq} entries: entries "
                f"{report.last_seq + 1}-{seq} were removed"
            )
        elif stored_hash.get(seq) != point.head:
            holds = False
            report.problems.append(
                f"entry {seq} is not the one checkpointed at {point.at.isoformat()} "
                "(the chain was rewritten)"
            )
        if holds:
            report.checkpoint = point
    newest = report.checkpoint.seq if report.checkpoint else 0
    if report.last_seq > newest:
        report.warnings.append(
            f"entries {newest + 1}-{report.last_seq} come after the last checkpoint"
        )
