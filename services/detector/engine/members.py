"""A JSON object written and read a member at a time.

A stage with tens of thousands of slices snapshots to a JSON document of over a
hundred megabytes, and the Python objects it is made from take several times
that: built whole, they doubled a worker's memory for the moment of every
snapshot, and parsed whole at a restore they left the worker holding the freed
objects' memory for good (its allocator keeps a block while anything else lives
in it). ``Members`` stands for an object whose members are made only as
``encode`` reaches them; ``encode`` starts each member of such an object on a
line of its own, so that ``decode`` can read the document a line at a time and
hand each member to the caller as it comes (a restore builds a slice's state
from it and lets it go). ``whole`` makes the plain dictionary of the same JSON,
for a caller that wants the value itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

# A member of a ``Members`` object that ``decode`` hands over: the path of keys to
# the object it is in, its key and its value; True when the caller took it (it is
# then left out of the document ``decode`` returns)
Take = Callable[[tuple[str, ...], str, Any], bool]


@dataclass(frozen=True)
class Members:
    """A JSON object: ``pairs()`` gives its members, each made when it is reached.
    A value may itself be ``Members``."""

    pairs: Callable[[], Iterable[tuple[str, Any]]]


def encode(value: Any) -> Iterator[bytes]:
    """The JSON of ``value`` in pieces, which joined parse to ``whole(value)``: each
    member of a ``Members`` object on a line of its own (a plain value's JSON holds
    no line break), and the object's closing brace on the next."""
    if not isinstance(value, Members):
        yield orjson.dumps(value)
        return
    yield b"{"
    for i, (key, member) in enumerate(value.pairs()):
        yield b",\n" if i else b"\n"
        yield orjson.dumps(key)
        yield b":"
        yield from encode(member)
    yield b"\n}"


def whole(value: Any) -> Any:
    """``value`` with every ``Members`` in it made a dictionary."""
    if isinstance(value, Members):
        return {key: whole(member) for key, member in value.pairs()}
    return value


def lines(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The lines that ``pieces`` make joined, without their line breaks."""
    held: list[bytes] = []
    for piece in pieces:
        *done, last = piece.split(b"\n")
        if done:
            yield b"".join([*held, done[0]])
            yield from done[1:]
            held = []
        held.append(last)
    yield b"".join(held)


def decode(pieces: Iterable[bytes], take: Take | None = None) -> Any:
    """The value of the JSON that ``pieces`` make, read a member at a time when
    ``encode`` wrote it from ``Members``; each member that is no ``Members`` itself
    goes to ``take`` first, and is left out when ``take`` keeps it. JSON written
    whole (by ``encode`` of a plain value, or before members had lines) is parsed
    whole."""
    read = lines(pieces)
    first = next(read)
    if first != b"{":
        return orjson.loads(b"".join([first, *read]))
    root: dict[str, Any] = {}
    stack: list[tuple[tuple[str, ...], dict[str, Any]]] = [((), root)]
    for text in read:
        if not stack:
            raise ValueError("JSON after the end of its object")
        line = text.removesuffix(b",")
        path, into = stack[-1]
        if line == b"}":
            stack.pop()
        elif line.endswith(b"{"):  # '"key":{', a member that is Members itself
            key = orjson.loads(line[:-2])
            into[key] = {}
            stack.append(((*path, key), into[key]))
        else:
            ((key, value),) = orjson.loads(b"{%s}" % line).items()
            if take is None or not take(path, key, value):
                into[key] = value
    if stack:
        raise ValueError("the JSON ends inside an object")
    return root
