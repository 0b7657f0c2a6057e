"""Poison records on the event topics: the detector writes each one, bytes intact,
to the dead-letter topic with why and where from, and goes on with the rest."""

from __future__ import annotations

import httpx
import orjson
from kafka import KafkaProducer

from services.common.events import Topics
from tests.factories import event
from tests.integration.conftest import Stack
from tests.integration.test_end_to_end import processed
from tests.integration.test_ingest import consume


def test_poison_records_are_dead_lettered_with_their_origin(stack: Stack, bootstrap: str) -> None:
    detector = stack.start("detector", health=None)
    topics = Topics(stack.namespace)
    poison = [b"{not json", orjson.dumps({"type": "order", "event_id": "p-1"})]
    good = [orjson.dumps(event("order")), orjson.dumps(event("order"))]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in [good[0], *poison, good[1]]:
        producer.send(topics.events["order"], key=b"eu|web|ios", value=value, partition=0)
    producer.flush()
    producer.close()
    stack.wait(lambda: processed(detector.url) >= 2, 120)
    dead = consume(bootstrap, topics.deadletter, 2)
    assert [r.value for r in dead] == poison
    headers = [dict(r.headers) for r in dead]
    assert [h["reason"] for h in headers] == [b"json", b"schema"]
    assert headers[1]["field"] == b"ts" and headers[1]["exception"] == b"EventError"
    assert {h["topic"] for h in headers} == {topics.events["order"].encode()}
    assert [h["offset"] for h in headers] == [b"1", b"2"]
    assert all(h["source"] == b"detector" and h["partition"] == b"0" for h in headers)
    text = httpx.get(detector.url + "/metrics", timeout=5).text
    assert 'opswatch_detector_deadlettered_total{reason="json"} 1.0' in text
