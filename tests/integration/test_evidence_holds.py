"""Evidence that holds: every claim and delivery is checked against the chain, the chain
against its signed checkpoints, and the message as sent is kept byte for byte."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, select, update

from cobro.engine.runs import dispatch_due, run_day
from cobro.evidence.chain import GENESIS, EvidenceEntry, canonical, chain_hash
from cobro.evidence.checkpoint import CHECKPOINT_FILE, KEY_FILE, Checkpoint, sign
from cobro.evidence.messages import unpack
from cobro.evidence.verify import VerifyReport, verify_evidence
from cobro.store import tables as t
from cobro.workspace import Workspace
from e2e.cli import run_cobro

from .conftest import SmtpServer
from .support import business, d, deliveries, invoice, outbox

DAY = d("2025-03-03")  # phase 00 for invoices due 2025-03-10


def two_claims(ws: Workspace) -> None:
    business(ws, "C1", "ap@one.example")
    business(ws, "C2", "ap@two.example")
    invoice(ws, "F-1", "C1", d("2025-03-10"), "100.00")
    invoice(ws, "G-1", "C2", d("2025-03-11"), "70.00")
    # One claim a day, so the second claim's delivery and claim are entries 3 and 4.
    assert run_day(ws, DAY).sent == 1
    assert run_day(ws, DAY + timedelta(days=1)).sent == 1


def verify(ws: Workspace) -> VerifyReport:
    with ws.engine.connect() as conn:
        return verify_evidence(conn, ws.company_id, ws.config.company.id, ws.root)


def cobro(ws: Workspace, *args: str, ok: bool = False) -> subprocess.CompletedProcess[str]:
    url = ws.engine.url.render_as_string(hide_password=False)
    return run_cobro(ws.root, "--db", url, *args, ok=ok)


def evidence_verify_fails(ws: Workspace) -> str:
    """What ``cobro evidence verify`` prints on stderr; it must exit non-zero."""
    proc = cobro(ws, "evidence", "verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "evidence does not hold" in proc.stderr
    return proc.stderr


def delivery_of(ws: Workspace, debtor: str) -> Row[Any]:
    (row,) = [r for r in deliveries(ws) if r.recipient == f"ap@{debtor}.example"]
    return row


def claim_of(ws: Workspace, debtor: str) -> Row[Any]:
    (row,) = [r for r in outbox(ws) if r.customer == debtor]
    return row


def last_claim(ws: Workspace) -> tuple[str, str]:
    """(debtor, email domain) of the claim recorded last: entries 3 and 4."""
    ev, cu = t.evidence.c, t.customers.c
    with ws.engine.connect() as conn:
        (debtor,) = set(
            conn.execute(
                select(cu.external_id).join(t.evidence, ev.customer_id == cu.id).where(ev.seq > 2)
            ).scalars()
        )
    return debtor, {"C1": "one", "C2": "two"}[debtor]


def test_an_untouched_history_verifies_against_its_signed_checkpoint(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)

    report = verify(smtp_ws)

    assert report.ok, report.to_json()
    assert report.last_seq == 4 and report.warnings == []
    assert report.checkpoint is not None and report.checkpoint.seq == 4
    assert report.checkpoint.head == report.chain.head
    key = smtp_ws.root / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = (smtp_ws.root / CHECKPOINT_FILE).read_text().splitlines()
    assert len(lines) == 2  # one checkpoint per run
    assert Checkpoint.from_json(json.loads(lines[-1])) == report.checkpoint
    proc = cobro(smtp_ws, "evidence", "verify", ok=True)
    assert "4 entries, chain intact" in proc.stdout
    assert "signed checkpoint at entry 4" in proc.stdout


def test_a_retried_delivery_verifies_attempt_by_attempt(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    business(smtp_ws, "C1", "ap@one.example")
    invoice(smtp_ws, "F-1", "C1", d("2025-03-10"), "100.00")
    smtp_server.handler.refuse("ap@one.example", "451 4.3.0 try later", times=1)
    assert run_day(smtp_ws, DAY).retrying == 1
    (row,) = outbox(smtp_ws)

    assert dispatch_due(smtp_ws, as_of=row.next_attempt_at).sent == 1

    assert [(x.attempt, x.status) for x in deliveries(smtp_ws)] == [(1, "failed"), (2, "sent")]
    report = verify(smtp_ws)
    assert report.ok, report.to_json()
    assert report.checkpoint is not None and report.checkpoint.seq == report.last_seq == 3


def test_removing_the_last_evidence_entries_is_named_against_the_checkpoint(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)
    debtor, domain = last_claim(smtp_ws)
    ev = t.evidence.c
    with smtp_ws.engine.begin() as conn:
        conn.execute(delete(t.evidence).where(ev.seq > 2))
        conn.execute(delete(t.evidence_checkpoints))

    report = verify(smtp_ws)

    assert report.chain.ok  # what is left still links up...
    assert not report.ok  # ...but the signed checkpoint covers 4 entries
    assert any("entries 3-4 were removed" in p for p in report.problems), report.problems
    assert any("missing from the database" in p for p in report.problems), report.problems
    claim = claim_of(smtp_ws, debtor)
    named = {(p.table, p.id, p.debtor) for p in report.records}
    assert named == {
        ("outbox", claim.id, debtor),
        ("deliveries", delivery_of(smtp_ws, domain).id, debtor),
    }
    stderr = evidence_verify_fails(smtp_ws)
    assert "entries 3-4 were removed" in stderr
    assert f"outbox id {claim.id}, debtor {debtor}: is marked sent" in stderr


def test_a_claim_erased_with_its_evidence_and_checkpoints_is_caught_by_the_checkpoint_file(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)
    claim = claim_of(smtp_ws, last_claim(smtp_ws)[0])
    ev = t.evidence.c
    with smtp_ws.engine.begin() as conn:
        conn.execute(delete(t.deliveries).where(t.deliveries.c.outbox_id == claim.id))
        conn.execute(delete(t.claim_items).where(t.claim_items.c.outbox_id == claim.id))
        conn.execute(delete(t.outbox).where(t.outbox.c.id == claim.id))
        conn.execute(delete(t.evidence).where(ev.seq > 2))
        conn.execute(delete(t.evidence_checkpoints))

    report = verify(smtp_ws)

    assert report.chain.ok and report.records == []  # consistent, as far as the database goes
    assert not report.ok
    assert any("entries 3-4 were removed" in p for p in report.problems), report.problems
    assert "entries 3-4 were removed" in evidence_verify_fails(smtp_ws)


def test_an_edited_delivery_recipient_is_named(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    two_claims(smtp_ws)
    row = delivery_of(smtp_ws, "one")
    with smtp_ws.engine.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id == row.id)
            .values(recipient="forged@elsewhere.example")
        )
    shown = json.loads(cobro(smtp_ws, "history", "--customer", "C1", "--json", ok=True).stdout)
    assert shown[0]["deliveries"][0]["recipient"] == "forged@elsewhere.example"

    report = verify(smtp_ws)

    assert report.chain.ok and not report.ok
    (problem,) = report.records
    assert (problem.table, problem.id, problem.field, problem.debtor) == (
        "deliveries",
        row.id,
        "recipient",
        "C1",
    )
    assert "ap@one.example" in problem.detail and "forged@elsewhere.example" in problem.detail
    stderr = evidence_verify_fails(smtp_ws)
    assert f"deliveries id {row.id} recipient, debtor C1: is 'forged@elsewhere.example'" in stderr


def test_an_edited_claim_item_amount_is_named(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    two_claims(smtp_ws)
    claim = claim_of(smtp_ws, "C2")
    ci = t.claim_items.c
    with smtp_ws.engine.begin() as conn:
        item_id = conn.execute(select(ci.id).where(ci.outbox_id == claim.id)).scalar_one()
        conn.execute(update(t.claim_items).where(ci.id == item_id).values(balance_minor=700))

    report = verify(smtp_ws)

    (problem,) = report.records
    assert (problem.table, problem.id, problem.field, problem.debtor) == (
        "claim_items",
        item_id,
        "balance_minor",
        "C2",
    )
    assert "7.00 EUR" in problem.detail and "70.00 EUR" in problem.detail
    assert f"claim_items id {item_id} balance_minor, debtor C2" in evidence_verify_fails(smtp_ws)


def test_a_deleted_delivery_row_is_named(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    two_claims(smtp_ws)
    row = delivery_of(smtp_ws, "two")
    with smtp_ws.engine.begin() as conn:
        conn.execute(delete(t.deliveries).where(t.deliveries.c.id == row.id))

    report = verify(smtp_ws)

    (problem,) = report.records
    assert (problem.table, problem.id, problem.debtor) == ("deliveries", None, "C2")
    assert "email to ap@two.example" in problem.detail and "is missing" in problem.detail
    assert "deliveries, debtor C2: email to ap@two.example" in evidence_verify_fails(smtp_ws)


def test_a_deleted_claim_is_named(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    two_claims(smtp_ws)
    claim = claim_of(smtp_ws, "C1")
    with smtp_ws.engine.begin() as conn:
        conn.execute(delete(t.deliveries).where(t.deliveries.c.outbox_id == claim.id))
        conn.execute(delete(t.claim_items).where(t.claim_items.c.outbox_id == claim.id))
        conn.execute(delete(t.outbox).where(t.outbox.c.id == claim.id))
    assert json.loads(cobro(smtp_ws, "history", "--customer", "C1", "--json", ok=True).stdout) == []

    report = verify(smtp_ws)

    assert report.chain.ok and not report.ok
    named = {(p.table, p.id, p.debtor) for p in report.records}
    assert named == {("outbox", None, "C1"), ("deliveries", None, "C1")}
    stderr = evidence_verify_fails(smtp_ws)
    assert f"outbox, debtor C1: claim {claim.id} (b2b/00 of 2025-03-03) was sent" in stderr


def test_a_rewritten_chain_is_caught_by_its_signed_checkpoint(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    """Someone who knows the hashing edits a recipient in the row and in the evidence, then
    recomputes every hash, and even signs a checkpoint of their own."""
    two_claims(smtp_ws)
    row = delivery_of(smtp_ws, "one")
    ev = t.evidence.c
    with smtp_ws.engine.begin() as conn:
        conn.execute(
            update(t.deliveries).where(t.deliveries.c.id == row.id).values(recipient="x@y.example")
        )
        prev = GENESIS
        for e in conn.execute(select(t.evidence).order_by(ev.seq)).all():
            payload = json.loads(e.payload)
            if payload.get("recipient") == "ap@one.example":
                payload["recipient"] = "x@y.example"
            entry = EvidenceEntry(e.kind, e.ref, e.customer_id, e.at, payload)
            h = chain_hash(prev, canonical(e.seq, entry), e.customer_id)
            conn.execute(
                update(t.evidence)
                .where(ev.id == e.id)
                .values(payload=json.dumps(payload, sort_keys=True), prev_hash=prev, hash=h)
            )
            prev = h
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        forged = sign(Ed25519PrivateKey.generate(), "demo", 4, prev, row.at)
        conn.execute(
            update(t.evidence_checkpoints).values(
                head=forged.head, public_key=forged.public_key, signature=forged.signature
            )
        )
    with (smtp_ws.root / CHECKPOINT_FILE).open("a") as f:
        f.write(json.dumps(forged.to_json()) + "\n")

    report = verify(smtp_ws)

    assert report.chain.ok and report.records == []  # internally consistent
    assert not report.ok
    assert any("entry 4 is not the one checkpointed" in p for p in report.problems)
    assert any("signature is not the evidence key's" in p for p in report.problems)
    assert "entry 4 is not the one checkpointed" in evidence_verify_fails(smtp_ws)


def test_the_kept_message_is_byte_for_byte_what_the_smtp_server_received(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)
    ev = t.evidence.c
    with smtp_ws.engine.connect() as conn:
        entries = [
            json.loads(p)
            for p in conn.execute(select(ev.payload).where(ev.kind == "delivery")).scalars()
        ]

    for got in smtp_server.received:
        (row,) = [r for r in deliveries(smtp_ws) if r.recipient == got.rcpt_tos[0]]
        kept = unpack(row.message_zlib)
        assert kept == got.data
        assert len(row.message_zlib) < len(kept)  # compressed
        digest = hashlib.sha256(got.data).hexdigest()
        assert row.message_sha256 == digest
        (entry,) = [e for e in entries if e["recipient"] == got.rcpt_tos[0]]
        assert entry["message_sha256"] == digest  # covered by the chain
        shown = run_cobro(
            smtp_ws.root,
            "--db",
            smtp_ws.engine.url.render_as_string(hide_password=False),
            "history",
            "--show-message",
            str(row.id),
            ok=False,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.encode() == got.data.replace(b"\r\n", b"\n")  # text mode reads CRLF


def test_an_edited_kept_message_is_named(smtp_ws: Workspace, smtp_server: SmtpServer) -> None:
    two_claims(smtp_ws)
    row = delivery_of(smtp_ws, "two")
    forged = unpack(row.message_zlib).replace(b"G-1", b"G-9")
    with smtp_ws.engine.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id == row.id)
            .values(message_zlib=zlib.compress(forged))
        )

    (problem,) = verify(smtp_ws).records

    assert (problem.table, problem.id, problem.field, problem.debtor) == (
        "deliveries",
        row.id,
        "message_zlib",
        "C2",
    )


def test_an_evidence_export_holds_the_debtors_entries_messages_checkpoint_and_report(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)
    pack = smtp_ws.root / "pack-c1"

    proc = cobro(smtp_ws, "evidence", "export", "--customer", "C1", "--out", str(pack), ok=True)

    assert "2 evidence entries, 1 message(s) as sent, evidence holds" in proc.stdout
    entries = json.loads((pack / "entries.json").read_text())
    assert len(entries) == 2 and entries[1]["seq"] == entries[0]["seq"] + 1  # one claim
    for e in entries:  # each entry's hash can be recomputed from the pack alone
        customer_id = json.loads(e["canonical"])["customer_id"]
        assert chain_hash(e["prev_hash"], e["canonical"], customer_id) == e["hash"]
    (message,) = (pack / "messages").iterdir()
    (got,) = [r for r in smtp_server.received if r.rcpt_tos == ("ap@one.example",)]
    assert message.read_bytes() == got.data and message.suffix == ".eml"
    delivery = json.loads(entries[0]["canonical"])
    assert delivery["payload"]["message_sha256"] == hashlib.sha256(got.data).hexdigest()
    point = Checkpoint.from_json(json.loads((pack / "checkpoint.json").read_text()))
    assert point.signed_by(point.public_key) and point.seq == 4
    assert json.loads((pack / "verify.json").read_text())["ok"] is True
    history = json.loads((pack / "history.json").read_text())
    assert [c["customer"] for c in history] == ["C1"]


def test_init_makes_the_evidence_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "new"

    run_cobro(root, "init", str(root), ok=True)

    assert stat.S_IMODE((root / KEY_FILE).stat().st_mode) == 0o600
    assert (root / KEY_FILE).read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_checkpoints_without_their_key_cannot_pass_for_verified(
    smtp_ws: Workspace, smtp_server: SmtpServer
) -> None:
    two_claims(smtp_ws)
    (smtp_ws.root / KEY_FILE).unlink()

    report = verify(smtp_ws)

    assert not report.ok
    assert any("signatures cannot be checked" in p for p in report.problems)


def test_the_kept_message_is_the_caught_eml_file_byte_for_byte(ws: Workspace) -> None:
    two_claims(ws)  # the starter workspace catches mail in mail/

    files = {p.name: p.read_bytes() for p in ws.mail_dir.rglob("*.eml")}

    assert len(files) == 2
    for row in deliveries(ws):
        name = row.message_id.strip("<>").split("@")[0] + ".eml"
        assert unpack(row.message_zlib) == files[name]
