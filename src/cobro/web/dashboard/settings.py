"""What the screens that change the configuration share: ``cobro.yaml`` read afresh with
the problems ``cobro check`` finds in it, an edit saved (``cobro.config.editing``), the
configuration the server runs with replaced by the one saved, and the change written to
the audit log.

Every such screen can be seen by every role; only an admin's form changes anything (a
collector's or a read-only user's is refused, 403, and nothing changes). A form carries
the SHA-256 of the file it was shown from: a file changed since (by another user, an
editor, ``git pull``) is not written over (409, the page shown again as the file is now).

**What the server picks up at once**: the saved file is read again, and the company's
configuration in this process is replaced (policies, segments, actions, notices,
branding, portal settings; the debtor pages kept rendered are dropped). Another
process (``cobro dispatch --watch``, a second ``cobro serve``) reads the file when it
starts; ``cobro run`` and ``cobro event post`` read it each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cobro.config.editing import (
    ConfigFile,
    Saved,
    edit_config,
    known_problems,
    read_file,
)
from cobro.engine.audit import record
from cobro.errors import ConfigError, ConfigProblem
from cobro.web.dashboard.session import Staff


@dataclass
class Current:
    """``cobro.yaml`` as it is now: its digest, plain data (None when it cannot be read)
    and what ``cobro check`` says of it."""

    file: ConfigFile | None
    data: dict[str, Any] | None
    problems: list[ConfigProblem] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.file.digest if self.file else ""


def current(who: Staff) -> Current:
    root = who.state.ws.root
    try:
        found = read_file(root)
        data = found.data()
    except ConfigError as exc:
        return Current(None, None, list(exc.problems))
    return Current(found, data, known_problems(root, found))


def text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("1", "on", "true", "yes")


def put(
    target: dict[str, Any], key: str, value: Any, default: Any = None, *, drop: Any = None
) -> None:
    """Set ``key`` in a mapping of the file: a value equal to the default is only written
    when the file already says it; ``drop`` (None, an empty text or list) removes the key."""
    if value is None or value == drop or value in ("", []):
        target.pop(key, None)
    elif value == default and key not in target:
        return
    else:
        target[key] = value


async def save(
    who: Staff,
    digest: str,
    edit: Callable[[dict[str, Any]], None],
    *,
    action: str,
    subject: str | None = None,
    before_check: Callable[[], None] | None = None,
) -> Saved:
    """Save an edit of the company's ``cobro.yaml`` (``ConcurrentEdit``, ``EditRefused``
    when it may not be); the server then runs with the configuration saved, and the
    audit log says who changed which values."""
    state = who.state

    def work() -> Saved:
        saved = edit_config(state.ws.root, digest, edit, before_check=before_check)
        if saved.changes:
            state.ws.config = saved.config
            audit_changes(who, action, saved.changes, subject)
        return saved

    return await run_in_threadpool(work)


def audit_changes(who: Staff, action: str, changes: list[Any], subject: str | None) -> None:
    """Record in the audit log who changed what in the configuration (``changes``: their
    ``as_json()``), and forget the pages rendered with the configuration before it."""
    state = who.state
    state.rendered.clear()
    with state.ws.engine.begin() as conn:
        record(
            conn,
            who.company_id,
            state.now(),
            who.session.user.email,
            who.role,
            action,
            [c.as_json() for c in changes],
            subject=subject,
        )
