"""The record of the last ``cobro.yaml`` a workspace's commands validated.

Validating ``cobro.yaml`` loads YAML, pydantic and Babel and builds the schema's models:
about a third of the start-up of a command such as ``cobro contacts list``, which reads
nothing of the configuration but the company's id and name. After a command has
validated the file, ``.cobro-validated`` records a digest of the file's bytes and of
the code that validated them, with the company's id and name. A later command that
finds the same digest knows the file is valid without validating it again: it opens the
workspace with the recorded id and name, and validates the text it read (the same
bytes) only when it first reads the configuration.

The record is JSON, read as data only: a record that is not readable, not well formed
or whose digest differs is ignored (the file is validated as usual). The digest covers
the file's bytes, the Python version, and the size and time of modification of every
module of Cobro's that the schema is made of and of the libraries it validates with, so
a changed file, an upgraded or edited Cobro or an upgraded library means a new
validation. Nothing here imports the configuration schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.machinery import PathFinder
from pathlib import Path

RECORD_FILE = ".cobro-validated"
# cobro.yaml's size limit (cobro.config.loader.MAX_BYTES): a longer file was never valid.
MAX_BYTES = 1024 * 1024
# Cobro's packages the schema of cobro.yaml is made of, and the libraries it validates
# with (time zones come from tzdata when it is installed).
PACKAGES = ("config", "domain", "intake")
LIBRARIES = ("pydantic", "pydantic_core", "babel", "email_validator", "idna", "yaml", "tzdata")


@dataclass(frozen=True)
class Company:
    """What opening a workspace reads of its configuration."""

    id: str
    name: str


def code_fingerprint(directories: Iterable[Path], modules: Iterable[str]) -> str:
    """Size and time of modification of each ``.py`` file of ``directories`` and of the
    file each top-level module of ``modules`` is loaded from (when it is installed)."""
    parts = [sys.version]
    for directory in directories:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith(".py"):
                    found = entry.stat()
                    parts.append(f"{entry.path} {found.st_size} {found.st_mtime_ns}")
    for name in modules:
        spec = PathFinder.find_spec(name)
        if spec is not None and spec.origin is not None:
            found = os.stat(spec.origin)
            parts.append(f"{spec.origin} {found.st_size} {found.st_mtime_ns}")
    return "\n".join(parts)


@cache
def _code() -> str:
    """This process's Cobro and libraries, as :func:`code_fingerprint` sees them."""
    here = Path(__file__).parent
    return code_fingerprint((here / p for p in PACKAGES), LIBRARIES)


def digest(data: bytes, code: str | None = None) -> str:
    """The digest of ``cobro.yaml``'s bytes as validated by ``code`` (this process's)."""
    h = hashlib.sha256(b"cobro.yaml validated\0")
    h.update((_code() if code is None else code).encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def read_limited(path: Path) -> bytes | None:
    """The bytes of ``path`` when it is a readable file of at most ``MAX_BYTES``."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_BYTES else None


def recalled(root: Path, key: str) -> Company | None:
    """The company of the record in ``root`` when its digest is ``key``; else None."""
    try:
        record = json.loads((root / RECORD_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("digest") != key:
        return None
    company = record.get("company")
    if not isinstance(company, dict):
        return None
    slug, name = company.get("id"), company.get("name")
    if not isinstance(slug, str) or not isinstance(name, str):
        return None
    return Company(slug, name)


def remember(root: Path, key: str, company: Company) -> None:
    """Record that the file of digest ``key`` is valid (nothing when ``root`` cannot be
    written: the next command validates the file again). The record is replaced whole:
    a command reading it meanwhile finds the old one or the new one."""
    text = json.dumps({"digest": key, "company": {"id": company.id, "name": company.name}})
    partial = root / f"{RECORD_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, root / RECORD_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
