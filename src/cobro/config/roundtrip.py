"""``cobro.yaml`` rewritten in place: its comments, key order, quoting and indentation kept.

The file is read with ruamel.yaml's round-trip mode, which keeps every comment attached to
the node it follows. ``sync`` then brings the document to new plain data with the least
change: a value that did not change keeps its node (and its quotes and comments), a
changed scalar is replaced where it stands, a new key goes at the end of its mapping, a
removed entry takes its line and nothing else.

ruamel.yaml keeps the comment lines that follow an entry with the entry (for the last
entry of a block, that is the comment introducing the next top-level section). Adding
after such an entry or removing it would then move or drop those lines, so ``sync``
carries them: they stay after whatever is last, or after the entry before the one
removed.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from itertools import pairwise
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
)
from ruamel.yaml.tokens import CommentToken

Container = CommentedMap | CommentedSeq
_KEY_LINE = re.compile(r"^(?P<indent> *)(?:- +)?[^\s#][^#]*:\s*(?:#.*)?$")
_STR = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as ruamel.yaml's ``indent`` takes them: how far a
    nested mapping is indented, and where a block sequence's dash stands, in ``text``."""
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    maps: Counter[int] = Counter()
    offsets: Counter[int] = Counter()
    for parent, child in pairwise(lines):
        if not _KEY_LINE.match(parent) or parent.rstrip().endswith(("|", ">", "|-", ">-")):
            continue
        base = _indent_of(parent)
        stripped = parent.lstrip()
        if stripped.startswith("- "):  # a key of a sequence's entry: "  - key: ..."
            base += 2 + _indent_of(stripped[2:])
        deeper = _indent_of(child) - base
        if child.lstrip().startswith("- ") and deeper >= 0:
            offsets[deeper] += 1
        elif deeper > 0:
            maps[deeper] += 1
    mapping = maps.most_common(1)[0][0] if maps else 2
    offset = offsets.most_common(1)[0][0] if offsets else 2
    return mapping, offset + 2, offset


def _yaml(indent: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never fold a long line the file did not fold
    mapping, sequence, offset = indent
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


class Document:
    """A YAML text loaded for editing; ``text()`` writes it back."""

    def __init__(self, text: str) -> None:
        guessed = guess_indent(text)
        candidates = [guessed, (2, 4, 2), (2, 2, 0), (4, 6, 2), (4, 4, 0)]
        self.yaml = _yaml(guessed)
        self.root: CommentedMap = self.yaml.load(text)
        # The indentation that writes the unchanged file back as it was, if one does.
        for indent in dict.fromkeys(candidates):
            attempt = _yaml(indent)
            root = attempt.load(text)
            if _dump(attempt, root) == text:
                self.yaml, self.root = attempt, root
                break

    def text(self) -> str:
        return _dump(self.yaml, self.root)

    def sync(self, data: dict[str, Any]) -> None:
        """Make the document hold ``data`` (plain mappings, lists and scalars)."""
        left = _sync_map(self.root, data)
        if left:  # nothing is left at all: keep the lines anyway
            self.root.yaml_set_start_comment(left)


def _dump(y: YAML, root: Any) -> str:
    out = io.StringIO()
    y.dump(root, out)
    return out.getvalue()


# ------------------------------------------------------------------ plain data <-> nodes


def plain(node: Any) -> Any:
    """A node as plain data (mappings, lists, str, int, float, bool, dates)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _is_text(value: str) -> bool:
    """Whether PyYAML (what ``cobro.yaml`` is read with) reads ``value`` unquoted as text."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag == _STR


def node_of(value: Any, *, flow: bool | None = None) -> Any:
    """Plain data as nodes: text PyYAML would read as something else is quoted, text of
    several lines is a literal block, a list of scalars is written ``[a, b]``."""
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = node_of(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq(node_of(v) for v in value)
        scalars = all(not isinstance(v, dict | list) for v in value)
        if flow if flow is not None else scalars:
            seq.fa.set_flow_style()
        else:
            seq.fa.set_block_style()
        return seq
    if isinstance(value, str):
        if "\n" in value.rstrip("\n"):
            return LiteralScalarString(value)
        if not _is_text(value) or value != value.strip() or not value:
            return DoubleQuotedScalarString(value)
    return value


# ------------------------------------------------------------------ comments that follow


def _slot(container: Container) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def _is_block(node: Any) -> bool:
    return (
        isinstance(node, CommentedMap | CommentedSeq) and len(node) > 0 and not node.fa.flow_style()
    )


def _last(container: Container) -> Any:
    return next(reversed(container)) if isinstance(container, CommentedMap) else len(container) - 1


def _holder(container: Container, key: Any) -> tuple[Container, Any]:
    """Where the comment lines following entry ``key`` of ``container`` are kept: with the
    deepest last entry of its value, when that value is a block."""
    value = container[key]
    if _is_block(value):
        return _holder(value, _last(value))
    return container, key


def _token(container: Container, key: Any) -> CommentToken | None:
    entry = container.ca.items.get(key)
    if not entry:
        return None
    found = entry[_slot(container)]
    return found if isinstance(found, CommentToken) else None


def _set_token(container: Container, key: Any, token: CommentToken | None) -> None:
    entry = container.ca.items.get(key)
    if entry is None:
        if token is None:
            return
        entry = container.ca.items[key] = [None, None, None, None]
    entry[_slot(container)] = token
    if all(part is None for part in entry):
        del container.ca.items[key]


def _take_following(container: Container, key: Any) -> str:
    """The whole comment lines after entry ``key`` (not a comment on its own line),
    removed from it."""
    holder, at = _holder(container, key)
    token = _token(holder, at)
    if token is None:
        return ""
    value = token.value
    if isinstance(holder[at], LiteralScalarString | FoldedScalarString):
        # After a block of text every comment is on a line of its own, at its column.
        _set_token(holder, at, None)
        return " " * token.column + value
    own, _, rest = value.partition("\n")
    _set_token(holder, at, CommentToken(own + "\n", token.start_mark) if own.strip() else None)
    return rest


def _give_following(container: Container, key: Any, lines: str) -> None:
    """Put comment lines after entry ``key``."""
    if not lines:
        return
    holder, at = _holder(container, key)
    token = _token(holder, at)
    if isinstance(holder[at], LiteralScalarString | FoldedScalarString):
        if token is not None:
            token.value += lines
            return
        first = lines.lstrip(" ")
        _set_token(holder, at, CommentToken(first, CommentMark(len(lines) - len(first))))
        return
    if token is not None:
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + lines
    else:
        _set_token(holder, at, CommentToken("\n" + lines, CommentMark(0)))


def _add(container: Container, key: Any, value: Any) -> None:
    """Append an entry (``key`` ignored for a sequence): the lines that followed the
    old last entry now follow the new one."""
    moved = _take_following(container, _last(container)) if len(container) else ""
    if isinstance(container, CommentedMap):
        container[key] = value
    else:
        container.append(value)
    _give_following(container, _last(container), moved)


def _remove(container: Container, key: Any) -> str:
    """Remove an entry; the comment lines that followed it follow the entry before it
    (or come before the next one). What could not be placed (the container is now empty)
    is returned."""
    keys = (
        list(container.keys())
        if isinstance(container, CommentedMap)
        else list(range(len(container)))
    )
    index = keys.index(key)
    moved = _take_following(container, key)
    del container[key]
    if not moved:
        return ""
    if index > 0:
        _give_following(container, keys[index - 1], moved)
        return ""
    if len(container):
        before = container.ca.comment
        tokens = [
            CommentToken(line.lstrip(" ") + "\n", CommentMark(_indent_of(line)))
            for line in moved.splitlines()
        ]
        if before is None:
            container.ca.comment = [None, tokens]
        else:
            before[1] = (before[1] or []) + tokens
        return ""
    return moved


# ------------------------------------------------------------------ sync


def _ident(value: Any) -> str:
    if isinstance(value, dict) and "key" in value:
        return "key:" + json.dumps(value["key"], default=str)
    return "value:" + json.dumps(value, default=str, sort_keys=True)


def _same(node: Any, value: Any) -> bool:
    old = plain(node)
    return type(old) is type(value) and old == value


def _sync_value(container: Container, key: Any, value: Any) -> None:
    node = container[key]
    if _same(node, value):
        return
    if isinstance(node, CommentedMap) and isinstance(value, dict) and value:
        _give_following(container, key, _sync_map(node, value))
        return
    if isinstance(node, CommentedSeq) and isinstance(value, list) and value:
        if not node.fa.flow_style() and _sync_seq(node, value):
            return
        moved = _take_following(container, key)
        container[key] = node_of(value, flow=True if node.fa.flow_style() else None)
        _give_following(container, key, moved)
        return
    moved = _take_following(container, key)
    container[key] = node_of(value)
    _give_following(container, key, moved)


def _sync_map(node: CommentedMap, data: dict[str, Any]) -> str:
    """Bring a mapping to ``data``; the comment lines that followed it when it is left
    with nothing in it (the caller puts them after it)."""
    left = ""
    for key in [k for k in node if str(k) not in data]:
        left += _remove(node, key)
    for key, value in data.items():
        if key in node:
            _sync_value(node, key, value)
        else:
            _add(node, key, node_of(value))
            left = _place(node, left)
    return left


def _place(node: Container, left: str) -> str:
    if left and len(node):
        _give_following(node, _last(node), left)
        return ""
    return left


def _sync_seq(node: CommentedSeq, data: list[Any]) -> bool:
    """Bring a block sequence to ``data`` entry by entry (entries with a ``key`` are
    matched by it); False when entries changed places (the caller writes it anew)."""
    old = [_ident(plain(v)) for v in node]
    new = [_ident(v) for v in data]
    if len(set(old)) != len(old) or len(set(new)) != len(new):
        return False
    if len(old) == len(new) and all(
        o == n or (o not in new and n not in old) for o, n in zip(old, new, strict=True)
    ):  # entries changed where they stand (a key renamed too)
        for index, value in enumerate(data):
            _sync_value(node, index, value)
        return True
    if [i for i in old if i in new] != [i for i in new if i in old]:
        return False
    left = ""
    for index in reversed(range(len(node))):
        if old[index] not in new:
            left += _remove(node, index)
    for index, value in enumerate(data):
        if index < len(node) and _ident(plain(node[index])) == new[index]:
            _sync_value(node, index, value)
        elif index >= len(node):
            _add(node, None, node_of(value))
            left = _place(node, left)
        else:
            node.insert(index, node_of(value))
    return not left
