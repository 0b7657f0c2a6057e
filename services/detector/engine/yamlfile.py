"""Reading the YAML files a user writes (the metric catalog, the calendar, the alerting
config, the simulator's incidents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, what: str, error: type[ValueError]) -> tuple[str, Any]:
    """The file's text and its parsed content; ``error`` naming the path (and the line
    of a YAML error or of bytes that are not UTF-8) in one line when it cannot be read,
    decoded or parsed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lines = data.count(b"\n", 0, exc.start)
        raise error(f"{path} line {lines + 1}: the {what} is not UTF-8 text") from None
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
        why = ", ".join(str(part) for part in parts if part) or " ".join(str(exc).split())
        raise error(f"{path}{line}: not valid YAML: {why}") from None


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
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
