"""The evidence pack of one debtor, as JSON and as PDF: everything recorded about them,
and a JSON file a third party checks with the procedure of docs/evidence.md alone."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pypdf import PdfReader
from sqlalchemy import select, update

from cobro.evidence.chain import EvidenceEntry, append
from cobro.store import tables as t
from cobro.workspace import Workspace

from .answered import PHONE, PROMISED_ON, REASON, SCANNER, answered, cobro
from .support import deliveries

# --------------------------------------------------------------------------- the checker
# Written from docs/evidence.md ("Checking a JSON pack without Cobro"): hashlib, json and
# an Ed25519 implementation, nothing of Cobro's.


class PackDoesNotHold(Exception):
    pass


def check_pack(pack: dict[str, Any], public_key_hex: str) -> int:
    """Check ``pack`` against the company's published Ed25519 public key; the number of
    entries covered by the signed checkpoint. Raises PackDoesNotHold."""

    def sha256(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def fail(why: str) -> None:
        raise PackDoesNotHold(why)

    debtor = pack["debtor"]["id"]
    chain: dict[int, dict[str, Any]] = {}
    for item in pack["entries"] + pack["links"]:
        if item["seq"] in chain:
            fail(f"entry {item['seq']} is in the pack twice")
        chain[item["seq"]] = item
    seqs = sorted(chain)
    if seqs != list(range(seqs[0], seqs[-1] + 1)):
        fail("the pack's entries do not follow each other: one is missing")
    first = chain[seqs[0]]
    if "canonical" not in first:
        fail("the pack does not start at one of the debtor's entries")
    prev = first["prev_hash"]
    for seq in seqs:
        item = chain[seq]
        if "canonical" in item:
            body = json.loads(item["canonical"])
            if body["seq"] != seq or body["customer_id"] != debtor:
                fail(f"entry {seq} is not the debtor's entry {seq}")
            if item["prev_hash"] != prev:
                fail(f"entry {seq} does not follow entry {seq - 1}")
            who, digest = debtor, sha256(item["canonical"])
        else:
            if item["debtor"] == debtor:
                fail(f"entry {seq} is the debtor's but its content is left out")
            who, digest = item["debtor"], item["digest"]
        link = sha256(f"{prev} {'-' if who is None else who} {digest}")
        if link != item["hash"]:
            fail(f"entry {seq}: its hash is not sha256(previous hash, debtor, digest)")
        prev = link
    point = pack["checkpoint"]
    if point is None or point["seq"] not in chain:
        fail("no signed checkpoint within the pack")
    if chain[point["seq"]]["hash"] != point["head"]:
        fail(f"entry {point['seq']} is not the one the checkpoint signed")
    signed = json.dumps(
        {k: point[k] for k in ("at", "company", "head", "seq")},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if point["public_key"] != public_key_hex:
        fail("the checkpoint is signed by another key")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(point["signature"]), signed
        )
    except InvalidSignature:
        fail("the checkpoint's signature is not valid")
    entries = {e["seq"]: json.loads(e["canonical"]) for e in pack["entries"]}
    for claim in pack["claims"]:
        for delivery in claim["deliveries"]:
            message = delivery["message"]
            if message is None:
                continue
            data = base64.b64decode(message["base64"])
            recorded = entries[delivery["entry"]]["payload"]["message_sha256"]
            if hashlib.sha256(data).hexdigest() != recorded:
                fail(f"the message of delivery {delivery['id']} is not the one sent")
    return int(point["seq"])


def public_key(ws: Workspace) -> str:
    key = serialization.load_pem_private_key((ws.root / ".cobro-evidence-key").read_bytes(), None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


# --------------------------------------------------------------------------- helpers


def docs_snippet() -> dict[str, Any]:
    """The Python snippet of docs/evidence.md, run as written."""
    doc = (Path(__file__).parents[2] / "docs" / "evidence.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    names: dict[str, Any] = {}
    exec(code, names)
    return names


def export_json(ws: Workspace, debtor: str = "C1") -> dict[str, Any]:
    out = ws.root / f"pack-{debtor}.json"
    proc = cobro(ws, "evidence", "export", debtor, "--out", str(out), ok=True)
    assert "evidence holds" in proc.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def pdf_text(path: Path) -> str:
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    return "\n".join(page.extract_text() for page in reader.pages)


# --------------------------------------------------------------------------- tests


def test_the_json_pack_holds_the_debtors_whole_record(ws: Workspace) -> None:
    a = answered(ws)

    pack = export_json(ws)

    assert pack["format"] == "cobro-evidence-pack/1"
    assert pack["debtor"]["external_id"] == "C1" and pack["debtor"]["id"] == a.c1
    assert pack["verify"]["ok"] is True
    kinds = [json.loads(e["canonical"])["kind"] for e in pack["entries"]]
    assert kinds == [
        "delivery",
        "claim.sent",
        "claim.opened",
        "claim.read",
        "dispute.opened",
        "promise.made",
    ]
    assert {link["debtor"] for link in pack["links"]} == {a.c2}  # C2's entries: no content
    assert not any("canonical" in link for link in pack["links"])
    assert "Dos" not in json.dumps(pack["links"])
    (claim,) = pack["claims"]
    (delivery,) = claim["deliveries"]
    (row,) = [r for r in deliveries(ws) if r.outbox_id == a.claim]
    kept = base64.b64decode(delivery["message"]["base64"])
    caught = {p.read_bytes() for p in ws.mail_dir.rglob("*.eml")}
    assert kept in caught  # the message exactly as handed over
    assert delivery["message"]["text"] == kept.decode()
    assert delivery["message"]["sha256"] == row.message_sha256
    assert "F-1" in delivery["message"]["text"] and "F-2" in delivery["message"]["text"]
    (opened,) = pack["opens"]
    (read,) = pack["reads"]
    assert (opened["ip"], opened["user_agent"]) == (SCANNER.ip, SCANNER.user_agent)
    assert (read["ip"], read["user_agent"]) == (PHONE.ip, PHONE.user_agent)
    assert read["claim"] == a.claim and read["entry"] == pack["entries"][3]["seq"]
    (dispute,) = pack["disputes"]
    assert (dispute["item"], dispute["reason"], dispute["status"]) == ("F-2", REASON, "open")
    assert base64.b64decode(dispute["attachment"]["base64"]) == b"%PDF-1.4 note 77"
    (promise,) = pack["promises"]
    assert promise["promised_on"] == PROMISED_ON.isoformat()
    assert promise["items"] == [{"number": "F-1", "currency": "EUR", "balance": "100.00"}]
    (payment,) = pack["payments"]
    assert (payment["external_id"], payment["amount"], payment["item"]) == ("P-1", "100.00", "F-1")
    # The export signed the head: the answers come after the run's checkpoint.
    assert pack["checkpoint"]["seq"] == pack["chain"]["entries"] == pack["entries"][-1]["seq"] + 1
    assert check_pack(pack, public_key(ws)) == pack["checkpoint"]["seq"]
    point, signed = docs_snippet()["check"](pack)  # the docs' own snippet agrees
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key(ws))).verify(
        bytes.fromhex(point["signature"]), signed
    )


def test_an_independent_check_of_the_json_pack_fails_once_it_is_tampered_with(
    ws: Workspace,
) -> None:
    answered(ws)
    pack = export_json(ws)
    key = public_key(ws)
    check_pack(pack, key)

    def tampered(change: Any) -> dict[str, Any]:
        copied = copy.deepcopy(pack)
        change(copied)
        return copied

    def edit_read(p: dict[str, Any]) -> None:
        entry = p["entries"][3]
        entry["canonical"] = entry["canonical"].replace(PHONE.ip, "10.9.9.9")

    def remove_dispute(p: dict[str, Any]) -> None:
        del p["entries"][4]

    def hide_dispute(debtor: int) -> Any:
        """Turn the dispute into a link, as if it were another debtor's entry."""

        def change(p: dict[str, Any]) -> None:
            entry = p["entries"].pop(4)
            digest = hashlib.sha256(entry["canonical"].encode()).hexdigest()
            text = f"{entry['prev_hash']} {debtor} {digest}"
            link = hashlib.sha256(text.encode()).hexdigest()
            p["links"].append(
                {"seq": entry["seq"], "debtor": debtor, "digest": digest, "hash": link}
            )

        return change

    def swap_entries(p: dict[str, Any]) -> None:
        a, b = p["entries"][2], p["entries"][3]
        a["seq"], b["seq"] = b["seq"], a["seq"]

    def replace_message(p: dict[str, Any]) -> None:
        delivery = p["claims"][0]["deliveries"][0]
        forged = base64.b64decode(delivery["message"]["base64"]).replace(b"F-2", b"F-9")
        delivery["message"]["base64"] = base64.b64encode(forged).decode()

    def resign(p: dict[str, Any]) -> None:
        p["checkpoint"]["at"] = "2030-01-01T00:00:00+00:00"

    cases = {
        edit_read: "hash",
        remove_dispute: "missing",
        hide_dispute(pack["debtor"]["id"]): "left out",
        hide_dispute(pack["debtor"]["id"] + 100): "entry 9: its hash",  # the next link
        swap_entries: "not the debtor's entry",
        replace_message: "not the one sent",
        resign: "signature",
    }
    for change, why in cases.items():
        with pytest.raises(PackDoesNotHold, match=why):
            check_pack(tampered(change), key)


def test_the_pdf_pack_shows_the_claim_as_sent_the_open_the_read_the_dispute_and_the_promise(
    ws: Workspace,
) -> None:
    a = answered(ws)
    broken_at = datetime(2025, 3, 17, 8, 0, tzinfo=UTC)
    with ws.engine.begin() as conn:
        append(
            conn,
            ws.company_id,
            [EvidenceEntry("promise.broken", f"promise:{a.promise}", a.c1, broken_at, {})],
        )
        conn.execute(
            update(t.promises)
            .where(t.promises.c.id == a.promise)
            .values(status="broken", settled_at=broken_at)
        )
    out = ws.root / "pack-C1.pdf"

    proc = cobro(ws, "evidence", "export", "C1", "--out", str(out), ok=True)

    assert "evidence holds" in proc.stdout
    assert out.read_bytes().startswith(b"%PDF-")
    text = pdf_text(out)
    flat = "".join(text.split())  # lines break anywhere in long values
    pack = export_json(ws)
    assert "Prueba de la gestión de cobro" in text  # the company's language (es_ES)
    assert "Uno Distribuciones S.L." in text and "C1" in text
    assert "La prueba es íntegra" in text
    subject = pack["claims"][0]["deliveries"][0]["message"]["text"]
    assert "Subject:" in subject
    assert "F-1" in text and "F-2" in text and "ap@one.example" in text
    assert "Enlace abierto" in text and "Lectura confirmada por el deudor" in text
    for client in (SCANNER, PHONE):
        assert client.ip in text
        assert client.user_agent is not None
        assert "".join(client.user_agent.split()) in flat
    assert "".join(REASON.split()) in flat  # escaped in HTML, shown as written
    assert "Promesa de pago" in text and PROMISED_ON.isoformat() in text
    assert "Promesa cerrada: broken" in text
    assert "P-1" in text  # the payment
    assert "Dos Logística" not in text  # nothing of the other debtor
    for entry in pack["entries"]:
        assert entry["hash"] in flat


def test_a_tampered_database_exports_a_pack_that_says_so_and_signs_nothing(
    ws: Workspace,
) -> None:
    a = answered(ws)
    with ws.engine.begin() as conn:
        conn.execute(
            update(t.claim_views).where(t.claim_views.c.id == a.read).values(ip="10.0.0.1")
        )
        before = conn.execute(select(t.evidence_checkpoints.c.seq)).scalars().all()
    out = ws.root / "pack.json"

    proc = cobro(ws, "evidence", "export", "--customer", "C1", "--out", str(out))

    assert proc.returncode == 1
    assert "evidence does NOT hold" in proc.stdout
    pack = json.loads(out.read_text())
    assert pack["verify"]["ok"] is False
    (problem,) = pack["verify"]["records"]
    assert (problem["table"], problem["id"], problem["field"]) == ("claim_views", a.read, "ip")
    with ws.engine.connect() as conn:
        after = conn.execute(select(t.evidence_checkpoints.c.seq)).scalars().all()
    assert after == before  # no checkpoint signed over records that do not hold


def test_the_directory_form_takes_the_debtor_as_argument_or_option(ws: Workspace) -> None:
    answered(ws)

    for args in (["C1"], ["--customer", "C1"]):
        out = ws.root / f"dir-{len(args)}"
        cobro(ws, "evidence", "export", *args, "--out", str(out), ok=True)
        names = sorted(p.name for p in out.iterdir())
        assert names == [
            "checkpoint.json",
            "entries.json",
            "history.json",
            "messages",
            "pack.json",
            "verify.json",
        ]
        assert len(json.loads((out / "entries.json").read_text())) == 6


def test_export_refuses_bad_arguments_in_one_line(ws: Workspace) -> None:
    answered(ws)
    cases = [
        (["NOPE", "--out", "x.json"], "no debtor 'NOPE'"),
        (["C1", "--customer", "C2", "--out", "x.json"], "name different debtors"),
        (["C1"], "--out"),
        (["--out", "x.json"], "name the debtor"),
        (["C1", "--out", str(ws.root / "missing" / "x.pdf")], "missing/x.pdf"),
    ]
    for args, message in cases:
        proc = cobro(ws, "evidence", "export", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
