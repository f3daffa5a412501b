"""The workspace's evidence key made by several processes or threads at once: every one
reads the same whole key, none a part of one."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from cobro.evidence.checkpoint import KEY_FILE, evidence_key, public_hex


def test_a_key_made_by_many_at_once_is_read_whole_and_the_same_by_all(tmp_path: Path) -> None:
    for trial in range(20):
        root = tmp_path / f"ws{trial}"
        root.mkdir()
        start = threading.Barrier(8)
        found: list[str] = []
        errors: list[BaseException] = []

        def make(
            root: Path, start: threading.Barrier, found: list[str], errors: list[BaseException]
        ) -> None:
            start.wait()
            try:
                key = evidence_key(root, create=True)
                assert key is not None
                found.append(public_hex(key))
            except BaseException as exc:  # each thread's failure is reported
                errors.append(exc)

        threads = [
            threading.Thread(target=make, args=(root, start, found, errors)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len(found) == 8 and len(set(found)) == 1
        assert stat.S_IMODE((root / KEY_FILE).stat().st_mode) == 0o600
        assert [p.name for p in root.iterdir()] == [KEY_FILE]  # no temporary file left
