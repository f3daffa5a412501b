"""The key that signs evidence checkpoints: where it comes from, and what a signature binds."""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cobro.errors import EvidenceKeyError
from cobro.evidence.checkpoint import KEY_ENV, KEY_FILE, evidence_key, public_hex, sign

AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HEAD = "ab" * 32


def test_the_key_is_made_on_first_need_readable_by_its_owner_only(tmp_path: Path) -> None:
    assert evidence_key(tmp_path, create=False) is None

    key = evidence_key(tmp_path, create=True)

    assert key is not None
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    again = evidence_key(tmp_path, create=True)
    assert again is not None and public_hex(again) == public_hex(key)


def test_the_key_from_the_environment_wins_and_no_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = Ed25519PrivateKey.generate()
    pem = mine.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    monkeypatch.setenv(KEY_ENV, pem.decode())

    key = evidence_key(tmp_path, create=True)

    assert key is not None and public_hex(key) == public_hex(mine)
    assert not (tmp_path / KEY_FILE).exists()


def test_a_key_that_is_not_ed25519_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "not a key")

    with pytest.raises(EvidenceKeyError) as caught:
        evidence_key(tmp_path, create=True)

    assert str(caught.value).startswith(f"the environment variable {KEY_ENV}: not a PEM")
    assert "\n" not in str(caught.value)


def test_a_signature_binds_the_company_entry_head_and_instant() -> None:
    key = Ed25519PrivateKey.generate()
    point = sign(key, "demo", 42, HEAD, AT)

    assert point.signed_by(public_hex(key))
    assert not point.signed_by(public_hex(Ed25519PrivateKey.generate()))
    for changed in (
        replace(point, company="other"),
        replace(point, seq=41),
        replace(point, head="cd" * 32),
        replace(point, at=AT + timedelta(seconds=1)),
    ):
        assert not changed.signed_by(public_hex(key))
