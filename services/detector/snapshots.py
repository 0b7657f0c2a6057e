"""Stage snapshots in a Faust table, in parts small enough for one Kafka record.

A stage with thousands of slices snapshots to megabytes, more than a broker
takes in one record (1 MB by default), so a snapshot is written as parts under
keys of their own and then a manifest under the stage's key, all to the same
changelog partition, in that order. Parts alternate between two slots by
generation: a worker that dies while writing parts has touched only the slot
the current manifest does not point to, so the last complete snapshot stays
readable. A manifest whose parts do not add up (their checksum) is an
unreadable snapshot. A snapshot from before parts (the stage's JSON itself,
without a manifest) is read as it is, so an upgrade keeps the stages' state.

Parts hold the snapshot compressed (zlib at its fastest level: a stage's JSON
of mostly fresh states shrinks some thirty times, in a twentieth of the time
the JSON took to write), so the table a worker keeps in memory, both slots of
it, and the changelog stay small. A manifest without ``z`` (from before
compression) has its parts read as they are.
"""

from __future__ import annotations

import zlib
from collections.abc import MutableMapping
from typing import Any

import orjson

PART_BYTES = 512 * 1024


class SnapshotError(ValueError):
    """The table holds no complete snapshot under the key."""


def _part(key: bytes, slot: int, index: int) -> bytes:
    return b"%s/%d/%d" % (key, slot, index)


def write(table: MutableMapping[bytes, bytes], key: bytes, blob: bytes) -> None:
    """``blob`` as the snapshot under ``key``: its parts first, then the manifest."""
    old = _manifest(table.get(key))
    generation = int(old["gen"]) + 1 if old else 0
    slot = generation % 2
    stored = zlib.compress(blob, 1)
    parts = [stored[i : i + PART_BYTES] for i in range(0, len(stored), PART_BYTES)]
    for index, part in enumerate(parts):
        table[_part(key, slot, index)] = part
    manifest = {
        "gen": generation,
        "parts": len(parts),
        "crc": zlib.crc32(stored),
        "z": "zlib",
        "other": int(old["parts"]) if old else 0,  # the other slot's parts
    }
    table[key] = orjson.dumps(manifest)
    # this slot's parts of two generations ago that the new snapshot did not reuse
    for index in range(len(parts), int(old.get("other", 0)) if old else 0):
        table.pop(_part(key, slot, index), None)


def _manifest(raw: bytes | None) -> dict[str, Any] | None:
    """The manifest stored under a key (None: none, or a snapshot from before parts)."""
    if raw is None:
        return None
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return manifest if isinstance(manifest, dict) and "gen" in manifest else None


def read(table: MutableMapping[bytes, bytes], key: bytes) -> bytes | None:
    """The snapshot under ``key`` (None: there is none); SnapshotError when the table
    holds one this version cannot read or whose parts are not all there."""
    raw = table.get(key)
    if raw is None:
        return None
    manifest = _manifest(raw)
    if manifest is None:
        return raw  # a snapshot from before parts: the stage's JSON itself
    try:
        slot, count, crc = int(manifest["gen"]) % 2, int(manifest["parts"]), manifest["crc"]
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"a snapshot manifest under {key!r} without {exc}") from None
    parts = [table.get(_part(key, slot, i)) for i in range(count)]
    if any(part is None for part in parts):
        raise SnapshotError(f"snapshot {key!r} misses parts")
    stored = b"".join(part for part in parts if part is not None)
    if zlib.crc32(stored) != crc:
        raise SnapshotError(f"snapshot {key!r}: its parts do not match its manifest")
    return zlib.decompress(stored) if manifest.get("z") == "zlib" else stored
