"""Signed checkpoints of the evidence chain's head, so that a removed tail is noticed.

After every pass that appends evidence, the head (last entry number and hash) is signed
with an Ed25519 key kept outside the database — ``COBRO_EVIDENCE_KEY`` (a PEM private
key) or the workspace file ``.cobro-evidence-key``, created on first need, readable by
its owner only — and stored twice: as a row of ``evidence_checkpoints`` and as a line of
the workspace file ``evidence/checkpoints.jsonl``. Deleting the last chain entries, or
those entries and the database checkpoints, leaves a signed checkpoint that names an
entry the chain no longer has.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Connection, Engine, func, select

from cobro.errors import EvidenceKeyError
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

KEY_ENV = "COBRO_EVIDENCE_KEY"
KEY_FILE = ".cobro-evidence-key"
CHECKPOINT_FILE = Path("evidence") / "checkpoints.jsonl"


def evidence_key(root: Path, *, create: bool) -> Ed25519PrivateKey | None:
    """The signing key: ``COBRO_EVIDENCE_KEY``, else the workspace key file (made when
    ``create`` and missing, mode 0600); None when there is none and ``create`` is false."""
    pem = os.environ.get(KEY_ENV)
    source = f"the environment variable {KEY_ENV}"
    if not pem:
        path = root / KEY_FILE
        source = str(path)
        if create and not path.exists():
            _write_new_key(path)
        try:
            pem = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise EvidenceKeyError(f"{path}: the evidence key cannot be read ({exc})") from None
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"{source}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceKeyError(f"{source}: the evidence key must be an Ed25519 key")
    return key


def _write_new_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole under a name of its own, then given its name in one step (a hard link,
    # which never replaces a key another process made first): a process reading the key
    # at the same moment finds either no file or the whole key, never a part of one.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: its key
            os.link(tmp, path)
    except OSError as exc:
        raise EvidenceKeyError(f"{path}: the evidence key cannot be created ({exc})") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def public_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


@dataclass(frozen=True)
class Checkpoint:
    """The chain of ``company`` had ``seq`` entries ending in ``head`` at ``at``."""

    company: str
    seq: int
    head: str
    at: datetime
    public_key: str  # hex of the raw Ed25519 public key
    signature: str  # hex

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.company, self.seq, self.head, self.at)

    def signed_by(self, public_key: str) -> bool:
        """Whether ``public_key`` made this signature over these very fields."""
        if public_key != self.public_key:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
                bytes.fromhex(self.signature), self.signed_bytes()
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "seq": self.seq,
            "head": self.head,
            "at": self.at.astimezone(UTC).isoformat(),
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """``ValueError`` when ``data`` is not a checkpoint."""
        try:
            at = datetime.fromisoformat(str(data["at"]))
            if at.tzinfo is None:
                raise ValueError("'at' has no time zone")
            return cls(
                str(data["company"]),
                int(data["seq"]),
                str(data["head"]),
                at,
                str(data["public_key"]),
                str(data["signature"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a checkpoint: {exc}") from None


def signed_bytes(company: str, seq: int, head: str, at: datetime) -> bytes:
    text = json.dumps(
        {"company": company, "seq": seq, "head": head, "at": at.astimezone(UTC).isoformat()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return text.encode()


def sign(key: Ed25519PrivateKey, company: str, seq: int, head: str, at: datetime) -> Checkpoint:
    signature = key.sign(signed_bytes(company, seq, head, at)).hex()
    return Checkpoint(company, seq, head, at, public_hex(key), signature)


def checkpoint_head(
    engine: Engine, company_id: int, company: str, root: Path, at: datetime
) -> Checkpoint | None:
    """Sign and store the chain's head unless it is already checkpointed; the new
    checkpoint, or None."""
    e, cp = t.evidence.c, t.evidence_checkpoints.c
    with engine.begin() as conn:
        head = conn.execute(
            select(e.seq, e.hash).where(e.company_id == company_id).order_by(e.seq.desc()).limit(1)
        ).first()
        if head is None:
            return None
        done = conn.execute(
            select(func.max(cp.seq)).where(cp.company_id == company_id)
        ).scalar_one()
        if done is not None and done >= head.seq:
            return None
        key = evidence_key(root, create=True)
        assert key is not None
        point = sign(key, company, int(head.seq), str(head.hash), at)
        stored = conn.execute(
            insert_ignoring(conn, t.evidence_checkpoints)
            .values(
                company_id=company_id,
                seq=point.seq,
                head=point.head,
                at=point.at,
                public_key=point.public_key,
                signature=point.signature,
            )
            .on_conflict_do_nothing()
            .returning(cp.id)
        ).first()
        if stored is None:
            return None  # another process checkpointed the same head
    _append_line(root / CHECKPOINT_FILE, point)
    return point


def _append_line(path: Path, point: Checkpoint) -> None:
    line = json.dumps(point.to_json(), sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line)  # one append per line: concurrent writers do not interleave
    except OSError as exc:
        raise EvidenceKeyError(
            f"{path}: the evidence checkpoint of entry {point.seq} cannot be written ({exc})"
        ) from None


@dataclass(frozen=True)
class StoredCheckpoints:
    in_database: list[Checkpoint]
    in_file: list[Checkpoint]
    unreadable: list[str]  # "checkpoints.jsonl:7: ..." for lines that are not checkpoints


def stored_checkpoints(
    conn: Connection, company_id: int, company: str, root: Path
) -> StoredCheckpoints:
    """The company's checkpoints, from the database and from the workspace file."""
    cp = t.evidence_checkpoints.c
    in_db = [
        Checkpoint(company, int(r.seq), r.head, r.at, r.public_key, r.signature)
        for r in conn.execute(
            select(cp.seq, cp.head, cp.at, cp.public_key, cp.signature)
            .where(cp.company_id == company_id)
            .order_by(cp.seq)
        )
    ]
    in_file: list[Checkpoint] = []
    unreadable: list[str] = []
    path = root / CHECKPOINT_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except (OSError, UnicodeDecodeError) as exc:
        unreadable.append(f"{path}: cannot be read ({exc})")
        lines = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            point = Checkpoint.from_json(json.loads(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            unreadable.append(f"{path}:{n}: {exc}")
            continue
        if point.company == company:
            in_file.append(point)
    return StoredCheckpoints(in_db, in_file, unreadable)
