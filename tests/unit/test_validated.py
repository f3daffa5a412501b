"""A cobro.yaml validated once is not validated again by the commands that do not read it,
until its bytes or the code that validated them change; a record is data, never trusted
beyond its digest."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cobro import validated
from cobro.errors import ConfigError
from cobro.store import tables as t
from cobro.workspace import IGNORED, Workspace, open_workspace


@pytest.fixture
def root(workspace: Workspace) -> Path:
    """A workspace made from the starter, opened once without the record, closed."""
    workspace.close()
    return workspace.root


def company_names(ws: Workspace) -> dict[str, str]:
    with ws.engine.connect() as conn:
        return {
            r.slug: r.name for r in conn.execute(select(t.companies.c.slug, t.companies.c.name))
        }


@pytest.fixture
def opening(root: Path) -> Iterator[Callable[[], Workspace]]:
    """Opens the workspace as the commands do (``recall``); each is closed at the end."""
    kept: list[Workspace] = []

    def _open() -> Workspace:
        kept.append(open_workspace(root, recall=True))
        return kept[-1]

    yield _open
    for ws in kept:
        ws.close()


def test_a_validated_file_is_recorded_and_then_not_validated_again(
    root: Path, opening: Callable[[], Workspace]
) -> None:
    assert not (root / validated.RECORD_FILE).exists()
    first = opening()
    assert first.loaded is not None  # validated now
    record = json.loads((root / validated.RECORD_FILE).read_text(encoding="utf-8"))
    assert record["company"] == {"id": "demo", "name": "Distribuciones Demo S.L."}

    again = opening()
    assert again.loaded is None  # the record says the same bytes are valid
    assert again.company_id == first.company_id
    # read, the configuration is the one validated, made then
    assert again.config == first.config
    assert again.loaded is again.config


def test_the_configuration_is_made_from_the_text_read_when_the_workspace_was_opened(
    root: Path, opening: Callable[[], Workspace]
) -> None:
    opening()
    ws = opening()
    cfg = root / "cobro.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("company:", "company: [", 1), "utf-8")
    assert ws.config.company.id == "demo"  # the file as it was, valid, not the one now


def test_a_changed_file_is_validated_again_and_its_problems_reported(
    root: Path, opening: Callable[[], Workspace]
) -> None:
    opening()
    cfg = root / "cobro.yaml"
    good = cfg.read_text(encoding="utf-8")
    cfg.write_text(good.replace("timezone: Europe/Madrid", "timezone: Europe/Nowhere"), "utf-8")
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Nowhere'"):
        opening()
    cfg.write_text(good.replace("name: Distribuciones Demo S.L.", "name: Demo Dos S.L."), "utf-8")
    ws = opening()
    assert ws.loaded is not None
    assert company_names(ws) == {"demo": "Demo Dos S.L."}
    assert opening().loaded is None  # recorded again


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        "[]",
        '{"digest": "0000", "company": {"id": "other", "name": "Other"}}',
        '{"company": {"id": "other", "name": "Other"}}',
    ],
)
def test_a_record_that_does_not_hold_the_file_s_digest_is_ignored(
    root: Path, opening: Callable[[], Workspace], record: str
) -> None:
    (root / validated.RECORD_FILE).write_text(record, encoding="utf-8")
    ws = opening()
    assert ws.loaded is not None
    assert company_names(ws) == {"demo": "Distribuciones Demo S.L."}


def test_a_record_of_the_right_digest_but_not_well_formed_is_ignored(
    root: Path, opening: Callable[[], Workspace]
) -> None:
    key = validated.digest((root / "cobro.yaml").read_bytes())
    for company in ({"id": 7, "name": "x"}, "demo", None):
        record = {"digest": key, "company": company}
        (root / validated.RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")
        assert opening().loaded is not None


def test_opening_without_recall_validates_and_writes_no_record(root: Path) -> None:
    ws = open_workspace(root)
    try:
        assert ws.loaded is not None
        assert not (root / validated.RECORD_FILE).exists()
    finally:
        ws.close()


def test_a_workspace_that_cannot_be_written_is_opened_all_the_same(
    root: Path, opening: Callable[[], Workspace]
) -> None:
    (root / validated.RECORD_FILE).mkdir()  # the record cannot replace a directory
    assert opening().loaded is not None
    assert opening().loaded is not None
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_the_digest_changes_with_the_bytes_and_with_the_code(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "schema.py"
    module.write_text("A = 1\n", encoding="utf-8")
    before = validated.code_fingerprint([code], ["json"])
    assert validated.code_fingerprint([code], ["json"]) == before
    os.utime(module, ns=(1, 1))
    after = validated.code_fingerprint([code], ["json"])
    assert after != before
    assert validated.digest(b"x", before) != validated.digest(b"x", after)
    assert validated.digest(b"x", before) != validated.digest(b"y", before)
    assert validated.digest(b"x", before) == validated.digest(b"x", before)


def test_the_record_stays_out_of_git() -> None:
    assert validated.RECORD_FILE in IGNORED
