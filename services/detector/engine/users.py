"""Distinct users as Theta sketches (Apache DataSketches).

A window's users in one slice are a Theta sketch of their hashed ids: exact while
they number at most 2**LG_K (16,384), and beyond that a sample whose count is
within 2% of the truth 99 times in 100 (relative standard error 1/sqrt(2**LG_K),
0.8%). Sketches merge by union, so roll-ups and the partials of several source
partitions add up as sets do; intersections and differences give returning and
lapsed users. However many users a window holds, a union (every partial is one)
keeps at most 2**LG_K hashes: 128 KiB serialised.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from datasketches import (
    compact_theta_sketch,
    theta_a_not_b,
    theta_intersection,
    theta_union,
    update_theta_sketch,
)

LG_K = 14


class Users:
    """The distinct users of a window and slice (or a set operation's result): users
    added here, and what merges and restores brought in."""

    __slots__ = ("_fixed", "_fresh")

    def __init__(self, sketch: compact_theta_sketch | None = None) -> None:
        # None when empty, as ``_fresh`` is until a user is added: so emptiness is cheap
        self._fixed = None if sketch is None or sketch.is_empty() else sketch
        self._fresh: update_theta_sketch | None = None

    def add(self, user: int) -> None:
        if self._fresh is None:
            self._fresh = update_theta_sketch(LG_K)
        self._fresh.update(user)

    def compact(self) -> compact_theta_sketch | None:
        fresh = self._fresh
        if fresh is not None:
            if self._fixed is None:
                return fresh.compact()
            both = theta_union(LG_K)
            both.update(self._fixed)
            both.update(fresh)
            self._fixed, self._fresh = both.get_result(), None
        return self._fixed

    def count(self) -> float:
        held = self._fresh if self._fixed is None else self.compact()
        return 0.0 if held is None else float(held.get_estimate())

    def __bool__(self) -> bool:
        return self._fixed is not None or self._fresh is not None

    def __eq__(self, other: object) -> bool:
        """The same sample of hashed users at the same sampling rate (in exact mode:
        the same users), however each was built."""
        return isinstance(other, Users) and self._held() == other._held()

    __hash__ = None  # type: ignore[assignment]  # mutable: not a dict key

    def _held(self) -> tuple[int, list[int]]:
        sketch = self.compact() if self else None
        return (0, []) if sketch is None else (sketch.theta64, sorted(sketch))

    def __repr__(self) -> str:
        return f"Users({self.count():g})"

    def merge(self, other: Users) -> None:
        if other:
            self._fixed = union([self, other]).compact() if self else other.compact()
            self._fresh = None

    def copy(self) -> Users:
        return Users(self.compact())

    def __and__(self, other: Users) -> Users:
        if not self or not other:
            return Users()
        both = theta_intersection()
        both.update(self.compact())
        both.update(other.compact())
        return Users(both.get_result())

    def __sub__(self, other: Users) -> Users:
        if not self or not other:
            return self.copy()
        return Users(theta_a_not_b().compute(self.compact(), other.compact()))

    def to_json(self) -> str:
        sketch = self.compact() if self else None
        return "" if sketch is None else base64.b64encode(sketch.serialize()).decode()

    @classmethod
    def from_json(cls, raw: str | list[Any]) -> Users:
        """A serialised sketch, or (as partials and snapshots held before sketches)
        a list of hashed user ids."""
        if isinstance(raw, list):
            users = cls()
            for user in raw:
                users.add(int(user))
            return users
        return cls(compact_theta_sketch.deserialize(base64.b64decode(raw)) if raw else None)


def union(parts: Iterable[Users]) -> Users:
    merged = theta_union(LG_K)
    empty = True
    for part in parts:
        if part:
            merged.update(part.compact())
            empty = False
    return Users() if empty else Users(merged.get_result())
