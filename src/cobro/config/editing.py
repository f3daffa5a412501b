"""Changing ``cobro.yaml`` from the dashboard, with the file staying the source of truth.

An edit is a function on the file's plain data (what the schema validates). It is applied
to the file read afresh, written back through ``roundtrip`` (comments, order and quoting
kept: only the lines of what changed differ), checked by the same code as ``cobro
check`` on the text about to be saved, and saved atomically (a temporary file beside it,
then a rename). The form carried the SHA-256 of the file it was shown from: if the file
has changed since (another user, an editor, ``git pull``), the edit is refused rather
than written over the other change.

A problem the file already had (say, no sender address yet) does not stop an edit of
something else; a problem the edit would bring is refused, worded and placed exactly as
``cobro check`` would say it of the saved file.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from time import monotonic
from typing import Any

from cobro.config.loader import parse_config, plain_data, read_config_text
from cobro.config.roundtrip import Document
from cobro.config.schema import CobroConfig
from cobro.errors import CobroError, ConfigError, ConfigProblem

CONFIG_FILE = "cobro.yaml"
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
# What ``cobro check`` found in a file already, by the file's digest: an edit is refused
# only for problems it brings. Kept a minute (templates, attachments and the environment
# it also looks at may change without the file changing).
_KNOWN: dict[tuple[Path, str], tuple[float, list[ConfigProblem]]] = {}
KNOWN_FOR_SECONDS = 60.0


class ConcurrentEdit(CobroError):
    """The file changed since the form was shown: nothing was written."""


class EditRefused(CobroError):
    """The edit would make the configuration invalid; ``problems`` say why, as ``cobro
    check`` would."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class ConfigFile:
    """``cobro.yaml`` as read now: its text and the SHA-256 of its bytes."""

    path: Path
    text: str
    digest: str

    def data(self) -> dict[str, Any]:
        """The file's plain data (``ConfigError`` when it is not readable YAML)."""
        return plain_data(self.text, str(self.path))


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_file(root: Path) -> ConfigFile:
    path = root / CONFIG_FILE
    text = read_config_text(path)
    return ConfigFile(path, text, digest_of(text))


@dataclass(frozen=True)
class Change:
    """One value changed: where (``subscriptions.admin.expired``, ``actions[statement]``),
    before and after (None: there was none, or there is none now)."""

    path: str
    old: Any
    new: Any

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "old": jsonable(self.old), "new": jsonable(self.new)}


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return value


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """A list of mappings each with a distinct ``key`` (actions, phases), by key."""
    if not items or not all(isinstance(i, dict) and "key" in i for i in items):
        return None
    keyed = {str(i["key"]): i for i in items}
    return keyed if len(keyed) == len(items) else None


def changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """What differs between two plain values, as precisely as the values allow."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            found += changes(old.get(key), new.get(key), where)
        return found
    if isinstance(old, list) and isinstance(new, list):
        before, after = _keyed(old), _keyed(new)
        if before is not None and after is not None:
            found = []
            for key in [*before, *(k for k in after if k not in before)]:
                found += changes(before.get(key), after.get(key), f"{path}[{key}]")
            return found
    if old == new and type(old) is type(new):
        return []
    return [Change(path, old, new)]


@dataclass(frozen=True)
class Saved:
    """An edit written: the configuration now in force, the file's new digest, what
    changed, and the problems the file still has from before (not brought by the edit)."""

    config: CobroConfig
    digest: str
    changes: list[Change]
    remaining: list[ConfigProblem]


def _problems(root: Path, text: str, digest: str) -> list[ConfigProblem]:
    from cobro.config.checks import check_workspace

    key = (root, digest)
    found = _KNOWN.get(key)
    if found is None or monotonic() - found[0] > KNOWN_FOR_SECONDS:
        if len(_KNOWN) > 64:
            _KNOWN.clear()
        found = _KNOWN[key] = (monotonic(), check_workspace(root, text))
    return found[1]


def known_problems(root: Path, found: ConfigFile) -> list[ConfigProblem]:
    """What ``cobro check`` says of the workspace with the file as read (kept by digest:
    checked once per version of the file)."""
    return _problems(root.resolve(), found.text, found.digest)


def _same_problem(p: ConfigProblem) -> tuple[str, str]:
    return (p.field, p.problem)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One edit of a workspace's file at a time: in this process (a lock) and between
    processes (``flock`` on the workspace directory, where the system has it)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(root, threading.Lock())
    with lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fd = os.open(root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: a reader sees the old file or the new one,
    never a part; the file keeps its permissions."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable, where it can be
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def edit_config(
    root: Path,
    expected_digest: str,
    edit: Callable[[dict[str, Any]], None],
    *,
    before_check: Callable[[], None] | None = None,
) -> Saved:
    """Apply ``edit`` (a function changing the file's plain data in place) to the
    workspace's ``cobro.yaml`` and save it, unless the file is no longer the one whose
    SHA-256 is ``expected_digest`` (``ConcurrentEdit``) or the result has problems the
    file did not have (``EditRefused``). ``before_check`` runs under the lock before
    the check (e.g. to put an uploaded attachment in place)."""
    root = root.resolve()
    with locked(root):
        current = read_file(root)
        if current.digest != expected_digest:
            raise ConcurrentEdit(
                f"{current.path} was changed since this page was opened; nothing was saved: "
                "reload the page to see the file as it is now"
            )
        data = current.data()
        wanted = copy.deepcopy(data)
        edit(wanted)
        found = changes(data, wanted)
        if not found:
            config = parse_config(current.text, str(current.path))
            return Saved(config, current.digest, [], [])
        document = Document(current.text)
        document.sync(wanted)
        text = document.text()
        if plain_data(text, str(current.path)) != wanted:  # pragma: no cover - a safeguard
            raise CobroError(f"{current.path}: the change could not be written faithfully")
        if before_check is not None:
            before_check()
        before = {_same_problem(p) for p in _problems(root, current.text, current.digest)}
        from cobro.config.checks import check_workspace

        after = check_workspace(root, text)
        _KNOWN[(root, digest_of(text))] = (monotonic(), after)
        brought = [p for p in after if _same_problem(p) not in before]
        if brought:
            raise EditRefused(brought)
        try:
            config = parse_config(text, str(current.path))
        except ConfigError as exc:  # pragma: no cover - the check above reports these
            raise EditRefused(list(exc.problems)) from None
        write_atomically(current.path, text)
        return Saved(config, digest_of(text), found, [p for p in after if p not in brought])
