"""A window with a million distinct users in one slice, through the real broker: its
partials stay small (users are sketches), stage two judges it, and no worker restarts."""

from __future__ import annotations

from datetime import timedelta

import orjson
from kafka import KafkaConsumer

from services.common.connection import KafkaConnection
from services.common.events import Topics, batches, partition_key
from services.common.kafka import ensure_topics, producer
from services.detector.engine.aggregate import Acc
from services.detector.engine.catalog import load_catalog
from services.detector.engine.slices import ALL_UP
from tests.factories import T0, event
from tests.integration.conftest import Stack
from tests.integration.test_backfill import metric_total
from tests.integration.test_end_to_end import judged_until

USERS = 1_000_000
MIB = 1 << 20
LEAF = {"region": "eu", "channel": "web", "platform": "ios"}


def activity(user: int, minute: float) -> bytes:
    at = T0 + timedelta(minutes=minute)
    return orjson.dumps(
        {
            "type": "activity",
            "event_id": f"e{user}",
            "ts": at.isoformat().replace("+00:00", "Z"),
            "user_id": f"u{user}",
            "session_id": f"s{user}",
            "action": "session_start",
            **LEAF,
        }
    )


def test_a_million_users_in_one_window_are_judged_in_partials_under_a_mebibyte(
    stack: Stack, bootstrap: str
) -> None:
    stack.env.update({"OPSWATCH_KAFKA_PARTITIONS": "1", "OPSWATCH_IDLE_TIMEOUT": "PT3S"})
    topics = Topics(stack.namespace)
    ensure_topics(KafkaConnection(bootstrap), topics, 1)
    detector = stack.start("detector", health=None)
    # the crowd in the first five minutes; then one user a minute for half an hour,
    # so that the watermark passes the crowd's window and the few after it
    values = [activity(u, 5 * u / USERS) for u in range(USERS)]
    values += [activity(USERS + m, 5 + m) for m in range(30)]
    key = partition_key(orjson.loads(values[0]))
    prod = producer(KafkaConnection(bootstrap), "crowd")
    try:
        # the other topics are heard from once, then idle: a backfill waits for a
        # topic it has never heard from
        for kind in ("order", "feedback"):
            one = event(kind, T0, **LEAF)
            prod.send(topics.events[kind], key=key, value=orjson.dumps(one))
        for batch in batches(values):
            prod.send(topics.events["activity"], key=key, value=batch)
        prod.flush()
    finally:
        prod.close()

    crowd_end = (T0 + timedelta(minutes=5)).timestamp()
    stack.wait(lambda: judged_until(detector.url) >= crowd_end, 420)
    assert metric_total(detector.url, "opswatch_detector_events_processed_total") == len(values) + 2
    assert detector.process.poll() is None, "the detector restarted"

    consumer = KafkaConsumer(
        topics.partials,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=8 * MIB,
        fetch_max_bytes=8 * MIB,
    )
    sizes, crowd, catalog = [], None, load_catalog()
    try:
        for record in consumer:
            sizes.append(len(record.value))
            msg = orjson.loads(record.value)
            if msg["k"] == "pb" and msg["w"] == int(T0.timestamp()) and ALL_UP in msg["a"]:
                crowd = Acc.from_json(msg["a"][ALL_UP], catalog)
    finally:
        consumer.close()
    assert max(sizes) < MIB, f"a partials record of {max(sizes):,} bytes"
    assert crowd is not None, "no all-up partial of the crowd's window"
    active = crowd.distinct[0].count()
    assert abs(active - USERS) <= 0.02 * USERS, f"{active:,.0f} active users counted"
