"""Batch records: what ingest writes to the event topics, and how the detector reads them."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from aiokafka import ConsumerRecord
from kafka.partitioner.default import DefaultPartitioner

from services.common.config import OpswatchSettings
from services.common.events import BATCH_BYTES, batches, event_time, leaf_of, read_record
from services.common.kafka import slot
from services.detector.faust_app import written_at
from services.detector.stages import StageOne, StageTwo
from tests.factories import event, traffic


def test_a_batch_record_gives_its_valid_events_in_order_and_refuses_the_rest_by_place() -> None:
    good = [event("order"), event("activity"), event("feedback")]
    bad = {"type": "order", "event_id": "x", "ts": "yesterday", "user_id": "u"}
    record = orjson.dumps([good[0], bad, good[1], "nonsense", good[2]])
    events, refused = read_record(record)
    assert events == good
    assert [(r.index, r.error.field) for r in refused] == [(1, "ts"), (3, "")]
    assert orjson.loads(refused[0].raw) == bad  # the event's own bytes, to dead-letter alone


def test_a_single_event_record_and_a_record_that_is_not_json() -> None:
    one = event("order")
    assert read_record(orjson.dumps(one)) == ([one], [])
    events, refused = read_record(b'[{"type": "order"')
    assert events == [] and refused[0].raw == b'[{"type": "order"' and refused[0].index is None
    assert refused[0].error.reason == "json"
    events, refused = read_record(b"[]")
    assert events == [] and refused[0].raw == b"[]" and refused[0].error.reason == "schema"


def test_an_event_a_day_ahead_of_its_records_time_is_refused_as_ingest_refuses_it() -> None:
    """A producer's wrong clock (an event in year 9999) would move the watermark
    past every window to come: the detector refuses such an event, by the time its
    record was written, so any reader of the record refuses the same."""
    fine, far = event("order"), event("order", ts="9999-12-31T23:59:59Z")
    written = event_time(fine)
    events, refused = read_record(orjson.dumps([fine, far]), written)
    assert events == [fine]
    assert [(r.index, r.error.reason, r.error.field) for r in refused] == [(1, "future", "ts")]
    assert "ahead of the time its record was written" in str(refused[0].error)
    events, refused = read_record(orjson.dumps(far), written)
    assert events == [] and refused[0].raw == orjson.dumps(far)
    hours_ahead = event("order", ts="2026-03-02T12:00:00Z")
    assert read_record(orjson.dumps(hours_ahead), event_time(hours_ahead) - 3600)[0] == [
        hours_ahead
    ]
    assert read_record(orjson.dumps(far), -0.001) == ([far], [])  # a record without a time


def test_a_records_time_is_in_seconds_whichever_client_read_it() -> None:
    """A gap in the stream is read with a Kafka consumer of its own, whose records
    give milliseconds; Faust's messages give seconds. Both refuse the same event."""
    far = orjson.dumps(event("order", ts="9999-12-31T23:59:59Z"))
    now_ms = 1_780_000_000_000
    record = ConsumerRecord("t", 0, 5, now_ms, 0, b"k", far, None, 1, len(far), ())
    message = SimpleNamespace(timestamp=now_ms / 1000)
    assert written_at(record) == written_at(message) == now_ms / 1000
    assert read_record(far, written_at(record))[1][0].error.reason == "future"
    assert written_at(SimpleNamespace(timestamp=None)) is None


def test_batches_keep_order_and_stay_under_a_record_size() -> None:
    values = [orjson.dumps(event("activity", note="x" * 2000)) for _ in range(600)]
    out = list(batches(values))
    assert len(out) > 1 and all(len(b) <= BATCH_BYTES + 2 for b in out)
    assert [e for b in out for e in orjson.loads(b)] == [orjson.loads(v) for v in values]
    assert list(batches([])) == []


def test_slot_is_where_kafka_pythons_partitioner_puts_a_key() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 3, 4, 12):
        cluster = SimpleNamespace(
            topics=lambda: {"t"},
            partitions_for_topic=lambda _t, n=n: set(range(n)),
            available_partitions_for_topic=lambda _t, n=n: set(range(n)),
        )
        for key in (b"eu|web|ios", b"na|app|android", b"unknown|unknown|unknown", b"r7|c3|p1"):
            assert slot(key, n) == partitioner.partition("t", key, key, None, None, cluster)


def test_a_batch_through_stage_one_sends_what_one_event_at_a_time_sends() -> None:
    settings = OpswatchSettings()
    catalog, engine = settings.catalog(), settings.engine()
    events = list(traffic(hours=2, rate=30.0))
    one_by_one = StageOne(0, catalog, engine, 4, ("orders",))
    batched = StageOne(0, catalog, engine, 4, ("orders",))
    partials: dict[str, list[bytes]] = {"single": [], "batch": []}
    for e in events:
        out = one_by_one.on_event(e, event_time(e), leaf_of(e), "orders")
        partials["single"] += [o.value for o in out if o.value.startswith(b'{"k":"pb"')]
    for i in range(0, len(events), 700):
        out, refused = batched.on_events(events[i : i + 700], "orders")
        assert refused == []
        partials["batch"] += [o.value for o in out if o.value.startswith(b'{"k":"pb"')]
    assert partials["single"] and partials["single"] == partials["batch"]
    assert one_by_one.aggregator.snapshot() == batched.aggregator.snapshot()


def test_stage_two_takes_partials_in_batches_and_one_at_a_time_from_before() -> None:
    settings = OpswatchSettings()
    catalog, engine = settings.catalog(), settings.engine()
    one = StageOne(0, catalog, engine, 4, ("orders",))
    events = list(traffic(hours=1, rate=30.0))
    sent: list[tuple[int | None, bytes]] = []
    for i in range(0, len(events), 500):
        out, _ = one.on_events(events[i : i + 500], "orders")
        sent += [(o.partition, o.value) for o in out]
    batches_sent = [orjson.loads(v) for _, v in sent if orjson.loads(v)["k"] == "pb"]
    assert batches_sent
    first = batches_sent[0]
    q = next(p for p, v in sent if orjson.loads(v) == first)
    assert q is not None
    batched, single = StageTwo(q, catalog, engine, 1), StageTwo(q, catalog, engine, 1)
    batched.on_message(orjson.dumps(first))
    for key, acc in first["a"].items():
        assert slot(key.encode(), 4) == q  # each slice in the partition its key goes to
        single.on_message(orjson.dumps({"k": "p", "w": first["w"], "s": key, "src": 0, "a": acc}))
    assert batched.evaluator.snapshot() == single.evaluator.snapshot()
    batched.on_message(orjson.dumps(first))  # sent again after a restart: dropped
    assert batched.duplicates == len(first["a"])
