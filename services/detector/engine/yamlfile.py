"""Reading the YAML files a user writes (the metric catalog, the calendar, the alerting
config, the simulator's incidents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[int | str, ...]


def read_yaml(path: Path, what: str, error: type[ValueError]) -> tuple[str, Any]:
    """The file's text and its parsed content; ``error`` naming the path (and the line
    of a YAML error, of bytes that are not UTF-8 or of a key given twice) in one line
    when it cannot be read, decoded or parsed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lines = data.count(b"\n", 0, exc.start)
        raise error(f"{path} line {lines + 1}: the {what} is not UTF-8 text") from None
    loader = yaml.SafeLoader(text)  # parsed once: the nodes for the check, then the content
    try:
        node = loader.get_single_node()
        twice = _twice(node, ())  # before construction, which merges `<<` keys in place
        content = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
        why = ", ".join(str(part) for part in parts if part) or " ".join(str(exc).split())
        raise error(f"{path}{line}: not valid YAML: {why}") from None
    finally:
        loader.dispose()
    if twice is not None:
        where, line_no, first = twice
        raise error(
            f"{path} line {line_no}: {where}: given twice (first at line {first}):"
            " only one can be meant"
        )
    return text, content


def _twice(
    node: yaml.Node | None, loc: tuple[str, ...], seen: set[int] | None = None
) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping (YAML keeps the last silently): its
    place, its line and the line of its first. A node an alias repeats is walked once."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if (found := _twice(item, (*loc, str(i)), seen)) is not None:
                return found
    elif isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            name = (key.tag, str(key.value))  # 1 and "1" are two keys
            if name in lines:
                return ".".join((*loc, name[1])), key.start_mark.line + 1, lines[name]
            lines[name] = key.start_mark.line + 1
            if (found := _twice(value, (*loc, name[1]), seen)) is not None:
                return found
    return None


def first_error(exc: ValidationError) -> tuple[Loc, str]:
    """A validation's first error: where it is (keys and list indices, empty for a
    check across fields) and its message, without pydantic's "Value error, "."""
    first = exc.errors()[0]
    return tuple(first["loc"]), str(first["msg"]).removeprefix("Value error, ")


def located(path: Path, line: int | None, loc: Loc, message: str) -> str:
    """``FILE line N: a.b.c: message``: where in a file a check refused it (no line when
    it cannot be told, ``(top level)`` for a check of the whole file)."""
    at = f" line {line}" if line else ""
    return f"{path}{at}: {'.'.join(map(str, loc)) or '(top level)'}: {message}"


def line_of(text: str, loc: Loc) -> int | None:
    """Best-effort line of the deepest node named in ``loc`` (mapping keys, list indices)."""
    node = yaml.compose(text)
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
