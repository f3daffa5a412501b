"""A workspace's message templates changed from the dashboard: ``templates/NAME.LANG.j2``,
the workspace's own copy of a template in one language, used instead of Cobro's bundled
one (``cobro.render.templates``).

An edit is checked before anything is written: the workspace is checked by the same code
as ``cobro check`` with the new sources in place of the files (``check_workspace``'s
``sources``). What it says of the template's own uses (the phases, actions and notices
naming it) refuses the edit, and so does a problem the edit brings anywhere else (a
receipt's or statement's PDF using the layout); a problem the workspace already had
elsewhere does not. A template that no checked setting names (a scheduled action's
bundled default) is rendered with ``cobro check``'s sample instead, in both languages.

The form carried the SHA-256 of the template's files as it showed them: if they changed
since (another user, an editor, ``git pull``), nothing is written (``ConcurrentEdit``).
Edits of a workspace's files are made one at a time (the lock ``cobro.yaml``'s edits
take). Restoring the default removes the workspace's copies, checked the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from babel import Locale

from cobro.config.editing import Change, ConcurrentEdit, EditRefused, locked, write_atomically
from cobro.errors import ConfigError, ConfigProblem, TemplateError
from cobro.render.labels import LANGUAGES

TEMPLATES_DIR = "templates"
NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
MAX_SOURCE = 64 * 1024  # characters of one language's source


@dataclass(frozen=True)
class Source:
    """A template in one language: the text in use (the workspace's file, else Cobro's
    own, else empty: the template falls back to another language), whether it is the
    workspace's, and Cobro's own text when there is one."""

    language: str
    text: str
    overridden: bool
    packaged: str | None


@dataclass(frozen=True)
class TemplateFiles:
    name: str
    sources: tuple[Source, ...]
    digest: str

    @property
    def overridden(self) -> bool:
        return any(s.overridden for s in self.sources)

    @property
    def restorable(self) -> bool:
        """Whether removing the workspace's copies leaves Cobro's own in their place."""
        return any(s.overridden and s.packaged is not None for s in self.sources)


def filename(name: str, language: str) -> str:
    return f"{name}.{language}.j2"


def valid_name(name: str) -> bool:
    """A template's name: letters, digits, ``_`` and ``-`` (never a path)."""
    return NAME.fullmatch(name) is not None


def packaged(name: str, language: str) -> str | None:
    """Cobro's own source of ``name`` in ``language``, when it has one."""
    entry = resources.files("cobro") / "render" / "templates" / filename(name, language)
    return entry.read_text(encoding="utf-8") if entry.is_file() else None


def read_template(root: Path, name: str) -> TemplateFiles:
    """The template ``name``'s sources in every language (``ValueError`` for a name that
    is not one)."""
    if not valid_name(name):
        raise ValueError(f"not a template name: {name!r}")
    found = []
    own: list[str | None] = []
    for language in LANGUAGES:
        path = root / TEMPLATES_DIR / filename(name, language)
        text = path.read_text(encoding="utf-8") if path.is_file() else None
        bundled = packaged(name, language)
        own.append(text)
        shown = text if text is not None else (bundled or "")
        found.append(Source(language, shown, text is not None, bundled))
    digest = hashlib.sha256(json.dumps(own).encode("utf-8")).hexdigest()
    return TemplateFiles(name, tuple(found), digest)


def _sample_problems(root: Path, name: str, sources: Mapping[str, str]) -> list[ConfigProblem]:
    """The template rendered as ``cobro check`` renders the templates it checks (both
    languages, email, SMS line and staff copy, with its sample)."""
    from cobro.config.checks import _render_both, sample_context
    from cobro.config.loader import parse_config, read_config_text
    from cobro.render.templates import TemplateSet

    cfg_file = root / "cobro.yaml"
    try:
        config = parse_config(read_config_text(cfg_file), str(cfg_file))
    except ConfigError as exc:
        return list(exc.problems)
    user_dir = root / TEMPLATES_DIR
    templates = TemplateSet(
        user_dir if user_dir.is_dir() else None,
        Locale.parse(config.company.locale).language,
        overrides=sources,
    )
    problems = []
    for language in LANGUAGES:
        try:
            _render_both(templates, name, language, sample_context(config, language))
        except TemplateError as exc:
            where = root / TEMPLATES_DIR / filename(name, language)
            problems.append(ConfigProblem(str(where), None, "", str(exc)))
    return problems


def problems_of(
    root: Path, name: str, sources: Mapping[str, str], fields: Collection[str]
) -> list[ConfigProblem]:
    """What refuses the template ``name`` with ``sources`` (by file name) in place of its
    files: ``cobro check``'s problems at ``fields`` (where the configuration names the
    template) and those the sources bring elsewhere."""
    from cobro.config.checks import check_workspace

    root = root.resolve()
    after = check_workspace(root, sources=sources)
    mine = [p for p in after if p.field in fields]
    others = [p for p in after if p.field not in fields]
    if others:
        before = {(p.field, p.problem) for p in check_workspace(root)}
        mine += [p for p in others if (p.field, p.problem) not in before]
    if not fields:
        mine += _sample_problems(root, name, sources)
    return mine


def _normal(text: str) -> str:
    """A source as a form sends it, with the file's line ends."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def save_template(
    root: Path,
    name: str,
    expected_digest: str,
    texts: Mapping[str, str],
    fields: Collection[str],
) -> list[Change]:
    """Write ``texts`` (by language) as the workspace's copies of template ``name``, once
    checked; what changed (nothing for a text the same as the one in use, or the same
    as Cobro's own where the workspace has no copy). ``ConcurrentEdit``: the files are
    not the ones whose digest the form carried; ``EditRefused``: the check's reasons."""
    root = root.resolve()
    with locked(root):
        current = _unchanged(root, name, expected_digest, "saved")
        writes: dict[str, tuple[Source, str]] = {}
        for source in current.sources:
            if source.language not in texts:
                continue
            text = _normal(texts[source.language])
            if source.overridden:
                if text != source.text:
                    writes[source.language] = (source, text)
            elif text != (source.packaged or "") and (text.strip() or source.packaged):
                writes[source.language] = (source, text)
        if not writes:
            return []
        sources = {filename(name, lang): text for lang, (_, text) in writes.items()}
        refused = problems_of(root, name, sources, fields)
        if refused:
            raise EditRefused(refused)
        directory = root / TEMPLATES_DIR
        directory.mkdir(exist_ok=True)
        changes = []
        for lang, (source, text) in writes.items():
            write_atomically(directory / filename(name, lang), text)
            old = source.text if source.overridden else None
            changes.append(Change(f"{TEMPLATES_DIR}/{filename(name, lang)}", old, text))
        return changes


def _unchanged(root: Path, name: str, expected_digest: str, verb: str) -> TemplateFiles:
    """Template ``name`` as the form that carried ``expected_digest`` showed it, else
    ``ConcurrentEdit`` (nothing ``verb``)."""
    current = read_template(root, name)
    if current.digest != expected_digest:
        raise ConcurrentEdit(
            f"template {name} was changed since this page was opened; nothing was "
            f"{verb}: reload the page to see it as it is now"
        )
    return current


def restore_default(
    root: Path, name: str, expected_digest: str, fields: Collection[str]
) -> list[Change]:
    """Remove the workspace's copies of template ``name`` that Cobro has its own of,
    once the workspace is checked without them; what changed."""
    root = root.resolve()
    with locked(root):
        current = _unchanged(root, name, expected_digest, "removed")
        gone = [s for s in current.sources if s.overridden and s.packaged is not None]
        if not gone:
            return []
        sources = {filename(name, s.language): s.packaged or "" for s in gone}
        refused = problems_of(root, name, sources, fields)
        if refused:
            raise EditRefused(refused)
        changes = []
        for source in gone:
            path = root / TEMPLATES_DIR / filename(name, source.language)
            path.unlink(missing_ok=True)
            changes.append(Change(f"{TEMPLATES_DIR}/{path.name}", source.text, None))
        return changes
