"""Slices: a leaf is one (region, channel, platform); roll-ups replace dimensions by '*'.

A slice is keyed by a canonical string, ``region=eu,channel=web`` (dimensions in
the fixed order region, channel, platform; rolled-up dimensions left out), and
``*`` for all-up. The key is what Kafka partitions roll-up partials by and what
alert fingerprints hash, so it must never change for a given slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from itertools import product

DIMENSIONS: tuple[str, ...] = ("region", "channel", "platform")
ALL_UP = "*"

Leaf = tuple[str, str, str]


def slice_key(values: Mapping[str, str]) -> str:
    parts = [f"{dim}={values[dim]}" for dim in DIMENSIONS if dim in values]
    return ",".join(parts) or ALL_UP


def slice_of(event: Mapping[str, object]) -> str:
    """The key of the slice an event's own dimensions name (one it leaves out is
    rolled up): where a metric event's series lives."""
    return slice_key({dim: str(event[dim]) for dim in DIMENSIONS if event.get(dim)})


def parse_slice_key(key: str) -> dict[str, str]:
    if key == ALL_UP:
        return {}
    out: dict[str, str] = {}
    for part in key.split(","):
        dim, _, value = part.partition("=")
        out[dim] = value
    return out


@lru_cache(maxsize=65536)
def ancestors(leaf: Leaf) -> tuple[str, ...]:
    """Keys of every slice a leaf feeds: itself, pairs, single dimensions, all-up."""
    keys = []
    for mask in product((True, False), repeat=len(DIMENSIONS)):
        values = {dim: v for dim, v, keep in zip(DIMENSIONS, leaf, mask, strict=True) if keep}
        keys.append(slice_key(values))
    return tuple(keys)
