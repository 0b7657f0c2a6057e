"""A request resumed after its first attempt died (the shared Idempotency-Keys of
OPSWATCH_INGEST_IDEMPOTENCY=database) against the real broker: the records the first
attempt produced are found by their header and only the others are produced."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import orjson
from kafka import KafkaProducer

from services.common.connection import KafkaConnection
from services.common.events import Topics, partition_key
from services.common.kafka import ensure_topics
from services.ingest.sink import MARK, KafkaSink, Record
from tests.chaos.harness import read_all
from tests.factories import event, stored


def stored_ids(bootstrap: str, topics: Topics) -> Counter[str]:
    return Counter(
        e["event_id"]
        for name in topics.events.values()
        for r in read_all(bootstrap, name)
        for e in stored(r.value)
    )


def request(topics: Topics) -> tuple[list[dict[str, Any]], list[Record]]:
    regions = ("eu", "na", "apac", "latam")
    events = [
        event(kind, region=regions[i % 4], channel=("web", "app")[i % 2])
        for i in range(600)
        for kind in ("order", "activity")
    ]
    records = [Record(topics.events[e["type"]], partition_key(e), orjson.dumps(e)) for e in events]
    return events, records


def test_a_resumed_request_produces_only_what_its_first_attempt_did_not(bootstrap: str) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    ensure_topics(KafkaConnection(bootstrap), topics, 4)
    events, records = request(topics)
    sink = KafkaSink(KafkaConnection(bootstrap))
    parts = sink._parts(records)
    assert len(parts) >= 4
    began = time.time()
    # the first attempt got every other record out before its replica died
    first = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for n, (topic, partition, value, _) in enumerate(parts):
        if n % 2 == 0:
            first.send(
                topic, value=value, partition=partition, headers=[(MARK, f"k-1#{n}".encode())]
            )
    first.flush()
    first.close()
    sink.send(records, key="k-1", resume_since=began)
    assert stored_ids(bootstrap, topics) == Counter(e["event_id"] for e in events)
    sink.send(records, key="k-1", resume_since=began)  # all of it there already
    sink.close()
    assert stored_ids(bootstrap, topics) == Counter(e["event_id"] for e in events)
