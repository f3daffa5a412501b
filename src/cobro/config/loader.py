"""Load ``cobro.yaml``; every problem is reported as ``file:line: field: problem``."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from cobro.config.schema import CobroConfig
from cobro.errors import ConfigError, ConfigProblem

Path_ = tuple[str | int, ...]


class DuplicateKey(Exception):
    def __init__(self, path: Path_, key: str, line: int) -> None:
        self.path, self.key, self.line = path, key, line


def _to_python(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    """Build plain Python data from a YAML node, recording the line of every path."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                raise DuplicateKey(path, key, key_node.start_mark.line + 1)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines) for i, v in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


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


def _keys_at(path: Path_) -> list[str]:
    """The keys the schema accepts in the mapping at ``path`` (empty when not a model)."""
    tp: Any = CobroConfig
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


def _unknown_keys(problems: list[tuple[Path_, str, str]]) -> list[tuple[Path_, str]]:
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
        valid = _keys_at(parent)
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
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(
            [ConfigProblem(filename, line, "", f"not valid YAML: {exc.problem}")]
        ) from None
    if root is None:
        raise ConfigError([ConfigProblem(filename, 1, "", "the file is empty")])
    lines: dict[Path_, int] = {}
    try:
        data = _to_python(root, (), lines)
    except DuplicateKey as dup:
        field = ".".join(str(p) for p in (*dup.path, dup.key))
        raise ConfigError(
            [ConfigProblem(filename, dup.line, field, "is given twice; keep one")]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(filename, 1, "", "the top level must be a mapping")])
    try:
        return CobroConfig.model_validate(data)
    except ValidationError as exc:
        found: list[tuple[Path_, str, str]] = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function"))
            )
            found.append((loc, err["type"], err["msg"].removeprefix("Value error, ")))
        problems = [
            ConfigProblem(filename, _line_for(loc, lines), ".".join(str(p) for p in loc), msg)
            for loc, msg in _unknown_keys(found)
        ]
        raise ConfigError(problems) from None


def load_config(path: Path) -> CobroConfig:
    """Read and validate the configuration file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    return parse_config(text, str(path))


def field_lines(path: Path) -> dict[Path_, int]:
    """The line of every field of a (parseable) YAML file, by path."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[Path_, int] = {}
    if root is not None:
        try:
            _to_python(root, (), lines)
        except DuplicateKey:
            return {}
    return lines
