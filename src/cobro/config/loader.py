"""Load ``cobro.yaml``; every problem is reported as ``file:line: field: problem``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cobro.config.schema import CobroConfig, ImportMapping
from cobro.errors import ConfigError, ConfigProblem

Path_ = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)


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


def parse_config(text: str, filename: str = "cobro.yaml") -> CobroConfig:
    """Validate configuration text; raise ``ConfigError`` listing every problem."""
    return _validated(CobroConfig, text, filename)


def _validated(model: type[_M], text: str, filename: str) -> _M:
    """``text`` parsed as YAML and validated as ``model``; problems as ``ConfigError``."""
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
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and (p.startswith("function") or p == "[key]"))
            )
            field = ".".join(str(p) for p in loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(filename, _line_for(loc, lines), field, msg))
        raise ConfigError(problems) from None


def load_config(path: Path) -> CobroConfig:
    """Read and validate the configuration file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    return parse_config(text, str(path))


def load_mapping(path: Path) -> ImportMapping:
    """Read and validate an import mapping file (``cobro import ... --map FILE``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot be read: {exc}")]) from None
    return _validated(ImportMapping, text, str(path))


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
