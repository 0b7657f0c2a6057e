"""A JSON object written a member at a time.

A stage with tens of thousands of slices snapshots to a JSON document of over a
hundred megabytes, and the Python objects it is made from take several times
that: built whole, they doubled a worker's memory for the moment of every
snapshot. ``Members`` stands for an object whose members are made only as
``encode`` reaches them, so a snapshot is in memory one slice at a time;
``whole`` makes the plain dictionary of the same JSON, for a caller that wants
the value itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Members:
    """A JSON object: ``pairs()`` gives its members, each made when it is reached.
    A value may itself be ``Members``."""

    pairs: Callable[[], Iterable[tuple[str, Any]]]


def encode(value: Any) -> Iterator[bytes]:
    """The JSON of ``value`` in pieces, which joined equal ``orjson.dumps(whole(value))``."""
    if not isinstance(value, Members):
        yield orjson.dumps(value)
        return
    yield b"{"
    for i, (key, member) in enumerate(value.pairs()):
        if i:
            yield b","
        yield orjson.dumps(key)
        yield b":"
        yield from encode(member)
    yield b"}"


def whole(value: Any) -> Any:
    """``value`` with every ``Members`` in it made a dictionary."""
    if isinstance(value, Members):
        return {key: whole(member) for key, member in value.pairs()}
    return value
