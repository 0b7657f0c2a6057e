"""Stage snapshots in parts: each record stays under a broker's limit, and a worker
dying mid-write leaves the last complete snapshot readable."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.common.events import event_time, leaf_of
from services.detector import snapshots
from services.detector.engine.aggregate import Acc
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings, Evaluator
from services.detector.engine.members import decode, encode
from services.detector.snapshots import PART_BYTES, SnapshotError
from services.detector.stages import StageOne, StageTwo
from tests.factories import traffic

CATALOG = load_catalog()
SETTINGS = EngineSettings()


def test_a_snapshot_larger_than_one_record_is_written_in_parts_and_read_back() -> None:
    table: dict[bytes, bytes] = {}
    blob = os.urandom(PART_BYTES * 5 + 17)
    snapshots.write(table, b"3", [blob])
    assert snapshots.read(table, b"3") == blob
    assert max(len(v) for v in table.values()) <= PART_BYTES
    assert len(table) == 7  # six parts and the manifest


def test_a_snapshot_is_kept_compressed_and_one_from_before_compression_is_read() -> None:
    table: dict[bytes, bytes] = {}
    states = orjson.dumps({f"region=r{i}": {"hours": [0.0] * 168} for i in range(2_000)})
    snapshots.write(table, b"2", [states])
    assert snapshots.read(table, b"2") == states
    assert sum(len(v) for v in table.values()) < len(states) / 20
    # a worker of the version before wrote its parts as they were
    plain = {
        b"5/0/0": states[:PART_BYTES],
        b"5/0/1": states[PART_BYTES:],
        b"5": orjson.dumps({"gen": 0, "parts": 2, "crc": zlib.crc32(states), "other": 0}),
    }
    assert len(states) > PART_BYTES
    assert snapshots.read(plain, b"5") == states


def test_no_snapshot_is_none_and_an_empty_one_is_empty() -> None:
    table: dict[bytes, bytes] = {}
    assert snapshots.read(table, b"0") is None
    snapshots.write(table, b"0", [b""])
    assert snapshots.read(table, b"0") == b""


def test_a_write_cut_short_before_its_manifest_leaves_the_last_snapshot() -> None:
    table: dict[bytes, bytes] = {}
    first, second = os.urandom(PART_BYTES * 2), os.urandom(PART_BYTES * 3)
    snapshots.write(table, b"1", [first])
    before = dict(table)
    snapshots.write(table, b"1", [second])
    # the worker died after writing the new parts, before the manifest
    torn = {**table, b"1": before[b"1"]}
    assert snapshots.read(torn, b"1") == first
    assert snapshots.read(table, b"1") == second


def test_a_write_that_fails_midway_leaves_the_last_snapshot_and_no_parts_behind() -> None:
    table: dict[bytes, bytes] = {}
    snapshots.write(table, b"6", [b"small"])

    def failing() -> Iterator[bytes]:
        yield os.urandom(PART_BYTES * 4)
        raise ValueError("a state that cannot be written")

    with pytest.raises(ValueError):
        snapshots.write(table, b"6", failing())
    assert snapshots.read(table, b"6") == b"small"
    assert len(table) > 3  # the failed write's parts
    for blob in (b"one", b"two"):
        snapshots.write(table, b"6", [blob])
        assert snapshots.read(table, b"6") == blob
    assert len(table) == 3  # the manifest and one part in each slot


def test_parts_that_do_not_match_their_manifest_are_refused() -> None:
    table: dict[bytes, bytes] = {}
    snapshots.write(table, b"2", [os.urandom(PART_BYTES + 1)])
    table[b"2/0/1"] = b"something else"
    with pytest.raises(SnapshotError, match="do not match"):
        snapshots.read(table, b"2")
    del table[b"2/0/1"]
    with pytest.raises(SnapshotError, match="misses parts"):
        snapshots.read(table, b"2")


def test_a_snapshot_from_before_parts_is_read_as_it_is_and_then_replaced() -> None:
    old = orjson.dumps({"agg": {}, "marked": None, "pos": {"t": 41}})
    table = {b"0": old}
    assert snapshots.read(table, b"0") == old  # an upgrade keeps the stage's state
    snapshots.write(table, b"0", [b"new"])
    assert snapshots.read(table, b"0") == b"new"


def test_parts_a_smaller_snapshot_no_longer_needs_are_deleted() -> None:
    table: dict[bytes, bytes] = {}
    big, small = os.urandom(PART_BYTES * 4), os.urandom(10)
    for blob in (big, big, small, small, small):
        snapshots.write(table, b"5", [blob])
        assert snapshots.read(table, b"5") == blob
    assert len(table) == 3  # the manifest and one part in each slot


def test_the_detector_state_is_written_a_slice_at_a_time_and_restores_whole() -> None:
    engine = Engine(CATALOG, SETTINGS)
    for e in traffic(2, rate=100):
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    evaluator = engine.evaluator
    assert len(evaluator.slices) > 50
    pieces = list(encode(evaluator.members()))
    written = b"".join(pieces)
    assert orjson.loads(written) == evaluator.snapshot()
    # no piece holds more than one slice's state: the whole is never in memory at once
    largest = max(len(orjson.dumps(evaluator.slice_snapshot(k))) for k in evaluator.slices)
    assert max(map(len, pieces)) <= largest
    table: dict[bytes, bytes] = {}
    snapshots.write(table, b"4", iter(pieces))
    stored = snapshots.read(table, b"4")
    assert stored == written
    again = Engine(CATALOG, SETTINGS)
    again.evaluator.restore(orjson.loads(stored))
    assert again.evaluator.snapshot() == evaluator.snapshot()


def _judged_day() -> Evaluator:
    """The evaluator of an engine that judged a day of traffic."""
    engine = Engine(CATALOG, SETTINGS)
    for e in traffic(1, rate=100):
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    return engine.evaluator


def test_stage_two_restores_a_slice_at_a_time_from_pieces_cut_anywhere() -> None:
    evaluator = _judged_day()
    stage = StageTwo(0, CATALOG, SETTINGS, 1)
    stage.evaluator = evaluator
    table: dict[bytes, bytes] = {}
    snapshots.write(table, b"7", stage.snapshot())
    # each slice's state is handed over on its own, as its line is read
    handed: dict[str, object] = {}

    def take(path: tuple[str, ...], key: str, value: object) -> bool:
        if path == ("ev", "slices"):
            handed[key] = value
        return False

    found = snapshots.pieces(table, b"7")
    assert found is not None
    decoded = decode(found, take)
    assert handed == {k: evaluator.slice_snapshot(k) for k in evaluator.slices}
    assert decoded["ev"] == evaluator.snapshot()
    written = b"".join(stage.snapshot())
    for size in (1, 7, 4096):  # pieces cut inside lines, keys and numbers
        again = StageTwo(0, CATALOG, SETTINGS, 1)
        again.restore(written[i : i + size] for i in range(0, len(written), size))
        assert again.evaluator.snapshot() == evaluator.snapshot()
        assert again.positions.last == stage.positions.last


def test_a_stage_two_snapshot_written_in_one_line_still_restores() -> None:
    evaluator = _judged_day()
    older = orjson.dumps({"ev": evaluator.snapshot(), "pos": {"p": 3}, "recv": {}})
    again = StageTwo(0, CATALOG, SETTINGS, 1)
    again.restore([older])
    assert again.evaluator.snapshot() == evaluator.snapshot()
    assert again.positions.last == {"p": 3}


@pytest.mark.parametrize("torn", [b'{\n"ev":{\n"pos":1', b'{\n"a":1\n}\n"b":2', b'{\n"a":'])
def test_a_torn_or_overlong_document_is_an_error_not_a_value(torn: bytes) -> None:
    with pytest.raises(ValueError):
        decode([torn])


def test_a_stage_one_snapshot_and_partials_of_the_version_before_a_carriers_count_restore(
    tmp_path: Path,
) -> None:
    """A mean of an optional field counts the events that carry it in a slot after every
    other; the version before had none, and counted them in the slot it shares with
    the count of feedback: what it wrote is read with that count in the new slot."""
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "metrics:\n  feedback:\n    kind: count\n    measure: {type: feedback}\n"
        "  avg_nps:\n    kind: mean\n    measure: {type: feedback, field: nps}\n"
    )
    catalog = load_catalog(path)
    # the version before took whole only the feedback that had nps
    events = [
        {"type": "feedback", "event_id": f"f{i}", "ts": f"2026-05-04T10:0{i}:00Z"}
        | {"user_id": "u", "rating": 4, "nps": i}
        for i in range(8)
    ]
    stage = StageOne(0, catalog, SETTINGS, 1)
    stage.on_events(events, "feedback")
    windows = stage.aggregator.windows
    assert all(len(acc.counts) == 4 for leaves in windows.values() for acc in leaves.values())
    before = decode(stage.snapshot())
    for leaves in before["agg"]["windows"].values():
        for _, acc in leaves:
            acc["c"] = acc["c"][:3]  # count, sum and sum of squares of nps: no fourth slot
    again = StageOne(0, catalog, SETTINGS, 1)
    again.restore(encode(before))
    assert again.aggregator.windows == windows
    # a partial in flight from a worker of the version before
    start = min(windows)
    partial = windows[start][("unknown", "unknown", "unknown")]
    older = {"c": partial.counts[:3], "d": [u.to_json() for u in partial.distinct]}
    two = StageTwo(0, catalog, SETTINGS, 1)
    two.on_message(orjson.dumps({"k": "pb", "w": start, "src": 0, "a": {"all-up": older}}))
    assert two.evaluator.pending[start]["all-up"].counts == partial.counts


def test_counts_of_another_catalogs_length_are_refused_not_misread(tmp_path: Path) -> None:
    """Counts are kept by slot: counts neither as long as this catalog's slots nor as
    the version before laid them out were written with another catalog."""
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "metrics:\n  feedback:\n    kind: count\n    measure: {type: feedback}\n"
        "  avg_nps:\n    kind: mean\n    measure: {type: feedback, field: nps}\n"
    )
    written = {"c": [8.0, 28.0, 140.0, 8.0], "d": []}
    assert Acc.from_json(written, load_catalog(path)).counts == written["c"]
    path.write_text("metrics:\n  feedback:\n    kind: count\n    measure: {type: feedback}\n")
    with pytest.raises(ValueError, match="written with another catalog"):
        Acc.from_json(written, load_catalog(path))
