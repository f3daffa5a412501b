"""Load ``cobro.yaml``; every problem is reported as ``file:line: field: problem``.

The file is read as plain data only, within limits: UTF-8 text without control
characters, at most ``MAX_BYTES``, nested at most ``MAX_DEPTH`` levels, at most
``MAX_VALUES`` values once aliases are expanded (a "billion laughs" file is refused
after a few thousand steps), only the tags of plain data (no ``!!python/...``,
``!!binary``, ``!!set``), and only text, numbers, booleans or dates as keys.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from cobro.config.schema import CobroConfig, ImportMapping, ServerSettings
from cobro.errors import ConfigError, ConfigProblem

Path_ = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 100_000

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP, _SEQ = _YAML + "map", _YAML + "seq"
# What YAML itself refuses to read: C0 and C1 controls (tab and line breaks aside),
# surrogates, U+FFFE and U+FFFF.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


class DuplicateKey(Exception):
    def __init__(self, path: Path_, key: str, line: int) -> None:
        self.path, self.key, self.line = path, key, line


class _Refused(Exception):
    """A value that is not plain data within the limits; ``line`` and ``path`` say where."""

    def __init__(self, line: int | None, path: Path_, problem: str) -> None:
        self.line, self.path, self.problem = line, path, problem


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


class _Builder:
    """Builds plain Python data from YAML nodes, counting values and watching for cycles."""

    def __init__(self, lines: dict[Path_, int]) -> None:
        self.lines = lines
        self.values = 0
        self.open: set[int] = set()  # the collections being built, for recursive anchors
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(
                line, path, f"more than {MAX_VALUES} values once aliases are expanded; refused"
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.open:
            raise _Refused(line, path, "an alias refers to the value that contains it")
        expected = _MAP if isinstance(node, yaml.MappingNode) else _SEQ
        if node.tag != expected:
            raise _Refused(line, path, f"the tag {_tag(node.tag)} is not allowed (plain data only)")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(v, (*path, i)) for i, v in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "a mapping" if isinstance(key_node, yaml.MappingNode) else "a list"
                raise _Refused(key_line, path, f"{kind} cannot be used as a key")
            self._scalar(key_node, path)  # its tag and value must be valid too
            key = key_node.value
            if key in out:
                raise DuplicateKey(path, key, key_line)
            self.lines[(*path, key)] = key_line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        line = node.start_mark.line + 1
        if node.tag not in _SCALAR_TAGS:
            raise _Refused(line, path, f"the tag {_tag(node.tag)} is not allowed (plain data only)")
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception:  # ValueError, OverflowError, ConstructorError: a malformed value
            kind = {"timestamp": "date"}.get(kind := node.tag.removeprefix(_YAML), kind)
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "…"
            raise _Refused(line, path, f"{shown!r} is not a valid {kind}") from None


def _field(path: Sequence[object]) -> str:
    """``company.name``; a key that is not printable text is shown quoted (``'a\\nb'``)."""
    return ".".join(str(p) if str(p).isprintable() else repr(str(p)) for p in path)


# libyaml's parser when PyYAML was built with it (the wheels are): ten times faster than
# the pure-Python one, with the same events, nodes and marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; refused"


def _problem(filename: str, line: int | None, path: Path_, problem: str) -> ConfigError:
    return ConfigError([ConfigProblem(filename, line, _field(path), problem)])


def _check_text(text: str, filename: str) -> None:
    """Refuse control characters and oversized text before YAML sees them."""
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        code = ord(bad.group())
        name = _CONTROL_NAMES.get(code, "a control character")
        line = text.count("\n", 0, bad.start()) + 1
        raise _problem(
            filename, line, (), f"contains U+{code:04X} ({name}); cobro.yaml must be plain text"
        )
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _problem(filename, None, (), f"is {size} bytes; the limit is {MAX_BYTES}")


def _check_shape(text: str, filename: str) -> None:
    """Walk the YAML events (no recursion) and refuse a file nested too deeply."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _problem(
                    filename,
                    event.start_mark.line + 1 if event.start_mark else None,
                    (),
                    _TOO_DEEP,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str, filename: str) -> yaml.Node | None:
    _check_text(text, filename)
    try:
        _check_shape(text, filename)
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        if "nesting depth" in str(exc.problem):  # libyaml's own limit, before ours
            raise _problem(filename, line, (), _TOO_DEEP) from None
        raise _problem(filename, line, (), f"not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise _problem(filename, None, (), f"not valid YAML: {exc}") from None


def _data(text: str, filename: str, lines: dict[Path_, int]) -> Any:
    """Plain data from YAML text, or ``ConfigError`` naming the first problem."""
    root = _compose(text, filename)
    if root is None:
        raise _problem(filename, 1, (), "the file is empty")
    try:
        return _Builder(lines).build(root, ())
    except DuplicateKey as dup:
        raise _problem(
            filename, dup.line, (*dup.path, dup.key), "is given twice; keep one"
        ) from None
    except _Refused as exc:
        raise _problem(filename, exc.line, exc.path, exc.problem) from None


def _line_for(loc: tuple[str | int, ...], lines: dict[Path_, int]) -> int | None:
    path: Path_ = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _keys_at(path: Path_, root: type[BaseModel] = CobroConfig) -> list[str]:
    """The keys the schema accepts in the mapping at ``path`` (empty when not a model)."""
    tp: Any = root
    for part in path:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif origin is dict:
            tp = get_args(tp)[1]
        elif origin in (list, tuple):
            tp = get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unknown_keys(
    problems: list[tuple[Path_, str, str]], root: type[BaseModel] = CobroConfig
) -> list[tuple[Path_, str]]:
    """Problems with an unknown key reworded with the nearest valid key; a required key
    that was misspelt is then one problem (the misspelling), not two."""
    import difflib

    missing = {loc for loc, kind, _ in problems if kind == "missing"}
    suggested: set[Path_] = set()
    reworded: list[tuple[Path_, str]] = []
    for loc, kind, msg in problems:
        if kind != "extra_forbidden" or not loc:
            reworded.append((loc, msg))
            continue
        parent, key = loc[:-1], str(loc[-1])
        valid = _keys_at(parent, root)
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            suggested.add((*parent, close[0]))
            msg = f"unknown key; did you mean `{close[0]}`?"
        elif valid:
            msg = f"unknown key; the keys here are: {', '.join(sorted(valid))}"
        else:
            msg = "unknown key"
        reworded.append((loc, msg))
    return [(loc, msg) for loc, msg in reworded if not (loc in missing and loc in suggested)]


def parse_config(text: str, filename: str = "cobro.yaml") -> CobroConfig:
    """Validate configuration text; raise ``ConfigError`` listing every problem."""
    return _validated(CobroConfig, text, filename)


def _validated(model: type[_M], text: str, filename: str) -> _M:
    """``text`` read as plain YAML data (within limits) and validated as ``model``;
    problems as ``ConfigError``."""
    lines: dict[Path_, int] = {}
    data = _data(text, filename, lines)
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(filename, 1, "", "the top level must be a mapping")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found: list[tuple[Path_, str, str]] = []
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and (p.startswith("function") or p == "[key]"))
            )
            found.append((loc, err["type"], err["msg"].removeprefix("Value error, ")))
        problems = [
            ConfigProblem(filename, _line_for(loc, lines), _field(loc), msg)
            for loc, msg in _unknown_keys(found, model)
        ]
        raise ConfigError(problems) from None


def read_config_text(path: Path) -> str:
    """The text of a configuration file: at most ``MAX_BYTES`` of UTF-8."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    except OSError as exc:
        raise _problem(str(path), None, (), f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise _problem(str(path), None, (), f"is larger than {MAX_BYTES} bytes; refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _problem(
            str(path), line, (), "is not UTF-8 text; save it as UTF-8 (e.g. not Latin-1)"
        ) from None


def load_config(path: Path) -> CobroConfig:
    """Read and validate the configuration file at ``path``."""
    return parse_config(read_config_text(path), str(path))


def load_mapping(path: Path) -> ImportMapping:
    """Read and validate an import mapping file (``cobro import ... --map FILE``)."""
    return _validated(ImportMapping, read_config_text(path), str(path))


def read_server_file(path: Path) -> ServerSettings:
    """Read and validate a server root's ``cobro-server.yaml`` (it may be empty)."""
    text = read_config_text(path)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        return ServerSettings()
    return _validated(ServerSettings, text, str(path))


def field_lines(path: Path) -> dict[Path_, int]:
    """The line of every field of a (parseable) YAML file, by path."""
    try:
        return text_lines(read_config_text(path), str(path))
    except ConfigError:
        return {}


def text_lines(text: str, filename: str = "cobro.yaml") -> dict[Path_, int]:
    """The line of every field of (parseable) YAML text, by path."""
    lines: dict[Path_, int] = {}
    try:
        _data(text, filename, lines)
    except ConfigError:
        return {}
    return lines


def plain_data(text: str, filename: str = "cobro.yaml") -> dict[str, Any]:
    """YAML text as the plain data the schema validates (within the same limits);
    ``ConfigError`` when it is not readable or not a mapping."""
    data = _data(text, filename, {})
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(filename, 1, "", "the top level must be a mapping")])
    return data
