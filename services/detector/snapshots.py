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
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import orjson

PART_BYTES = 512 * 1024


class SnapshotError(ValueError):
    """The table holds no complete snapshot under the key."""


def _part(key: bytes, slot: int, index: int) -> bytes:
    return b"%s/%d/%d" % (key, slot, index)


def write(table: MutableMapping[bytes, bytes], key: bytes, pieces: Iterable[bytes]) -> None:
    """The JSON that ``pieces`` make as the snapshot under ``key``: its parts first, as
    they fill, then the manifest. The JSON is never whole in memory, compressed or not."""
    old = _manifest(table.get(key))
    generation = int(old["gen"]) + 1 if old else 0
    slot = generation % 2
    packer = zlib.compressobj(1)
    crc, count, pending = 0, 0, bytearray()

    def store(part: bytes) -> None:
        nonlocal crc, count
        table[_part(key, slot, count)] = part
        crc = zlib.crc32(part, crc)
        count += 1

    for piece in pieces:
        pending += packer.compress(piece)
        while len(pending) >= PART_BYTES:
            store(bytes(pending[:PART_BYTES]))
            del pending[:PART_BYTES]
    pending += packer.flush()
    for start in range(0, len(pending), PART_BYTES):
        store(bytes(pending[start : start + PART_BYTES]))
    manifest = {
        "gen": generation,
        "parts": count,
        "crc": crc,
        "z": "zlib",
    }
    table[key] = orjson.dumps(manifest)
    # this slot's parts beyond the new snapshot's: of a larger one two generations
    # ago, or of a write that failed midway (a slot's parts run from 0 without gaps)
    index = count
    while table.pop(_part(key, slot, index), None) is not None:
        index += 1


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
    """The snapshot under ``key`` whole (None: there is none), see ``pieces``."""
    found = pieces(table, key)
    return None if found is None else b"".join(found)


def pieces(table: MutableMapping[bytes, bytes], key: bytes) -> Iterator[bytes] | None:
    """The snapshot under ``key`` in pieces, decompressed as they are reached, so
    that it is never whole in memory (None: there is none); SnapshotError when the
    table holds one this version cannot read or whose parts are not all there."""
    raw = table.get(key)
    if raw is None:
        return None
    manifest = _manifest(raw)
    if manifest is None:
        return iter((raw,))  # a snapshot from before parts: the stage's JSON itself
    try:
        slot, count, crc = int(manifest["gen"]) % 2, int(manifest["parts"]), manifest["crc"]
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"a snapshot manifest under {key!r} without {exc}") from None
    parts = [table.get(_part(key, slot, i)) for i in range(count)]
    stored = [part for part in parts if part is not None]
    if len(stored) < count:
        raise SnapshotError(f"snapshot {key!r} misses parts")
    checked = 0
    for part in stored:
        checked = zlib.crc32(part, checked)
    if checked != crc:
        raise SnapshotError(f"snapshot {key!r}: its parts do not match its manifest")
    if manifest.get("z") != "zlib":
        return iter(stored)
    return _inflated(stored)


def _inflated(stored: list[bytes]) -> Iterator[bytes]:
    unpacker = zlib.decompressobj()
    for part in stored:
        rest = part
        while rest:
            yield unpacker.decompress(rest, PART_BYTES)
            rest = unpacker.unconsumed_tail
    yield unpacker.flush()
